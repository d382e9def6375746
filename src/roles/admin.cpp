#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "mesh/metrics/metrics.hpp"
#include "mesh/roles/app.hpp"

namespace mesh::roles {

namespace {

// Readiness as Prometheus sees it. /readyz is evaluated by every probe (kubelet, compose
// healthcheck, load balancer) and by each scrape; a change between two evaluations counts as
// one transition, so a flapping dependency shows as a rising counter even between scrapes.
class ReadinessMetrics {
 public:
  explicit ReadinessMetrics(prometheus::Registry& registry)
      : ready_(prometheus::BuildGauge()
                   .Name("mesh_ready")
                   .Help("1 while /readyz answers 200, 0 otherwise (as last evaluated)")
                   .Register(registry)
                   .Add({})),
        changes_(prometheus::BuildCounter()
                     .Name("mesh_readiness_changes_total")
                     .Help("Transitions of /readyz between ready and not ready")
                     .Register(registry)
                     .Add({})) {}

  void observe(bool ready) {
    const int now = ready ? 1 : 0;
    const int before = last_.exchange(now);
    if (before != -1 && before != now) changes_.Increment();
    ready_.Set(now);
  }

 private:
  prometheus::Gauge& ready_;
  prometheus::Counter& changes_;
  std::atomic<int> last_{-1};  // -1: never evaluated
};

}  // namespace

void add_admin_routes(http::Router& router, core::Health& health, prometheus::Registry& registry,
                      std::string_view role) {
  prometheus::BuildGauge()
      .Name("mesh_build_info")
      .Help("Always 1; the labels name the version and the role of this process")
      .Register(registry)
      .Add({{"version", MESH_VERSION}, {"role", std::string(role)}})
      .Set(1);
  auto readiness_metrics = std::make_shared<ReadinessMetrics>(registry);

  router.add("GET", "/healthz", [](http::Request&) -> Task<http::Response> {
    co_return http::Response::text(200, R"({"status":"ok"})", "application/json");
  });
  router.add("GET", "/readyz",
             [&health, readiness_metrics](http::Request&) -> Task<http::Response> {
               const auto readiness = health.readiness();
               readiness_metrics->observe(readiness.ready);
               boost::json::array failing;
               for (const auto& name : readiness.failing) failing.emplace_back(name);
               co_return http::Response::json(
                   readiness.ready ? 200 : 503,
                   boost::json::object{{"status", readiness.ready ? "ready" : "not ready"},
                                       {"failing", std::move(failing)}});
             });
  router.add("GET", "/metrics",
             [&registry, &health, readiness_metrics](http::Request&) -> Task<http::Response> {
               readiness_metrics->observe(health.readiness().ready);
               co_return http::Response::text(200, metrics::render(registry),
                                              "text/plain; version=0.0.4; charset=utf-8");
             });
}

}  // namespace mesh::roles
