#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "mesh/metrics/metrics.hpp"
#include "mesh/roles/app.hpp"

namespace mesh::roles {

void add_admin_routes(http::Router& router, core::Health& health, prometheus::Registry& registry) {
  router.add("GET", "/healthz", [](http::Request&) -> Task<http::Response> {
    co_return http::Response::text(200, R"({"status":"ok"})", "application/json");
  });
  router.add("GET", "/readyz", [&health](http::Request&) -> Task<http::Response> {
    const auto readiness = health.readiness();
    boost::json::array failing;
    for (const auto& name : readiness.failing) failing.emplace_back(name);
    co_return http::Response::json(
        readiness.ready ? 200 : 503,
        boost::json::object{{"status", readiness.ready ? "ready" : "not ready"},
                            {"failing", std::move(failing)}});
  });
  router.add("GET", "/metrics", [&registry](http::Request&) -> Task<http::Response> {
    co_return http::Response::text(200, metrics::render(registry),
                                   "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace mesh::roles
