#pragma once
// The public API of the gateway role: accounts and the task pipeline's front door.
#include <future>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/asio/thread_pool.hpp>

#include "mesh/auth/jwt.hpp"
#include "mesh/auth/password.hpp"
#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/redis/client.hpp"
#include "mesh/roles/profiles.hpp"

namespace mesh::roles {

struct GatewayDeps {
  const config::Config& config;
  pg::Pool& pg;
  redis::Client& redis;
  kafka::Producer& producer;
  asio::thread_pool& cpu;
  prometheus::Registry& registry;
  // The caller's open streaming sessions, for /v1/users/me/overview; empty: reported partial.
  SessionLister sessions = {};
};

class GatewayApi {
 public:
  explicit GatewayApi(GatewayDeps deps);

  // Adds every /v1 route to `router`. Routes that need a caller rely on the authentication
  // middleware (authenticator()) installed on the router.
  void add_routes(http::Router& router);

  // Verifies the gateway's own HS256 tokens (and, with add_external, others).
  const auth::JwtCodec& jwt() const { return jwt_; }

 private:
  using Handler = http::Handler;
  Handler authenticated(Task<http::Response> (GatewayApi::*handler)(http::Request&));

  Task<http::Response> register_user(http::Request& request);
  Task<http::Response> login(http::Request& request);
  Task<http::Response> submit_task(http::Request& request);
  Task<http::Response> get_task(http::Request& request);
  Task<http::Response> list_tasks(http::Request& request);
  // The answer to a repeated Idempotency-Key, from what Redis holds for it.
  http::Response replay(std::string_view stored, std::string_view fingerprint) const;

  GatewayDeps deps_;
  auth::JwtCodec jwt_;
  auth::PasswordParams password_params_;
  // Verified when a login names no user, so timing does not tell.
  std::shared_future<std::string> dummy_hash_;
  prometheus::Counter& tasks_accepted_;
  prometheus::Counter& tasks_rejected_unavailable_;
  prometheus::Counter& pending_cache_errors_;
  ProfilesApi profiles_;
};

}  // namespace mesh::roles
