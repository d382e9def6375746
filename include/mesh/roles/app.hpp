#pragma once
#include "mesh/config/config.hpp"
#include "mesh/core/health.hpp"
#include "mesh/http/router.hpp"

#include <prometheus/registry.h>

namespace mesh::roles {

// /healthz, /readyz and /metrics, served by every role.
void add_admin_routes(http::Router& router, core::Health& health, prometheus::Registry& registry);

// Runs the configured role(s) until SIGTERM/SIGINT; returns the process exit code.
int run(const config::Config& config);

}  // namespace mesh::roles
