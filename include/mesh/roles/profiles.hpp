#pragma once
// Profiles (seed 003): named groups of users, many to many, each with a watchlist of market
// products; a member opens the profile's streaming session on the stream role. Also the
// caller's own account (/v1/users/me) and the overview that aggregates profiles, open sessions
// and task counts in parallel, each source under its own deadline.
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_set>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/json/array.hpp>

#include "mesh/config/config.hpp"
#include "mesh/core/asio.hpp"
#include "mesh/http/router.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::roles {

// The caller's open streaming sessions as a JSON array; nullopt when the session store is
// unavailable. Injected so the gateway does not depend on how sessions are stored.
using SessionLister = std::function<Task<std::optional<boost::json::array>>(std::string user_id)>;

class ProfilesApi {
 public:
  ProfilesApi(const config::Config& config, pg::Pool& pg, SessionLister sessions,
              prometheus::Registry& registry);

  // GET /v1/users/me, GET /v1/users/me/overview, GET /v1/users/{id}/profiles,
  // POST /v1/profiles, GET /v1/profiles/{id}, POST /v1/profiles/{id}/members,
  // DELETE /v1/profiles/{id}/members/{user_id}. Every route needs a caller.
  void add_routes(http::Router& router);

  // Whether `user_id` is a member of `profile_id` (both canonical UUIDs).
  static Task<bool> is_member(pg::Pool& pg, const std::string& profile_id,
                              const std::string& user_id);

 private:
  Task<http::Response> me(http::Request& request);
  Task<http::Response> overview(http::Request& request);
  Task<http::Response> user_profiles(http::Request& request);
  Task<http::Response> create(http::Request& request);
  Task<http::Response> get(http::Request& request);
  Task<http::Response> add_member(http::Request& request);
  Task<http::Response> remove_member(http::Request& request);

  const config::Config& config_;
  pg::Pool& pg_;
  SessionLister sessions_;
  prometheus::Family<prometheus::Counter>& overview_partial_;
};

}  // namespace mesh::roles

namespace mesh::roles {

// Gives a user authenticated by an external identity provider (OIDC) a row in `users` the
// first time it is seen, so profiles and memberships can name it. External ids are UUIDs of
// version 8 (auth::external_user_id), mesh's own are version 7, so only the former are
// provisioned. The row has no usable password hash: such users cannot log in with a password.
// Remembers the ids it provisioned (bounded) to skip the round trip afterwards.
class ExternalUsers {
 public:
  explicit ExternalUsers(pg::Pool& pg) : pg_(pg) {}
  http::Middleware middleware();

 private:
  Task<void> provision(const http::Principal& principal);

  pg::Pool& pg_;
  std::mutex mutex_;
  std::unordered_set<std::string> known_;
};

}  // namespace mesh::roles
