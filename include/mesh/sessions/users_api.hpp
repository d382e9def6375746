#pragma once
// GET /v1/users/{id}/sessions for the gateway: the user's open streaming sessions across every
// stream replica, read from the session locks in Redis.
#include <boost/json/object.hpp>

#include "mesh/http/router.hpp"
#include "mesh/sessions/locks.hpp"

namespace mesh::sessions {

// The JSON of one session: {"profile_id","node","since"} (since in RFC 3339, UTC, ms).
boost::json::object to_json(const SessionInfo& session);

class UserSessionsApi {
 public:
  // `locks` must outlive this object (a SessionLocks over the gateway's Redis client).
  explicit UserSessionsApi(SessionLocks& locks) : locks_(locks) {}

  // GET /v1/users/{id}/sessions -> 200 [{"profile_id","node","since"}]: 401 without a caller,
  // 400 for an id that is not a UUID, 403 unless the caller is that user or role "admin",
  // 503 with Retry-After when Redis is unavailable.
  void add_routes(http::Router& router);

 private:
  Task<http::Response> list(http::Request& request);

  SessionLocks& locks_;
};

}  // namespace mesh::sessions
