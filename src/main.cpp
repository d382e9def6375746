// mesh: one binary, every role. main only parses the configuration and starts the roles.
#include <iostream>
#include <string>
#include <vector>

#include "mesh/config/config.hpp"
#include "mesh/roles/app.hpp"
#include "mesh/roles/healthcheck.hpp"
#include "mesh/roles/seed.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  if (args.size() > 1 && args[1] == "seed") return mesh::roles::run_seed(args);
  if (args.size() > 1 && args[1] == "healthcheck") return mesh::roles::run_healthcheck(args);
  auto parsed = mesh::config::parse(args);
  std::cout << parsed.output;
  std::cerr << parsed.error;
  if (!parsed.config) return parsed.exit_code;
  return mesh::roles::run(*parsed.config);
}
