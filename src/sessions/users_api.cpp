#include "mesh/sessions/users_api.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/policy/authenticate.hpp"

namespace mesh::sessions {

boost::json::object to_json(const SessionInfo& session) {
  boost::json::object object;
  object.emplace("profile_id", session.profile_id);
  object.emplace("node", session.node);
  object.emplace("since", core::rfc3339_ms(session.since_ms));
  return object;
}

void UserSessionsApi::add_routes(http::Router& router) {
  router.add("GET", "/v1/users/{id}/sessions",
             policy::require_user([this](http::Request& request) { return list(request); }));
}

Task<http::Response> UserSessionsApi::list(http::Request& request) {
  const std::string user_id(request.param("id"));
  if (!core::is_uuid(user_id)) {
    co_return http::problem(400, "the user id must be a canonical UUID");
  }
  const auto& caller = *request.principal;
  if (caller.user_id != user_id && caller.role != "admin") {
    co_return http::problem(403, "only the user themselves or an admin may list their sessions");
  }
  const auto sessions = co_await locks_.list(user_id);
  if (!sessions) {
    auto response = http::problem(503, "session locks are unavailable; retry later");
    response.set_header("Retry-After", "2");
    co_return response;
  }
  boost::json::array body;
  for (const auto& session : *sessions) body.push_back(to_json(session));
  co_return http::Response::json(200, body);
}

}  // namespace mesh::sessions
