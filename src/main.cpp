// mesh: one binary, every role. main only parses the configuration and starts the roles.
#include <iostream>
#include <string>
#include <vector>

#include "mesh/config/config.hpp"
#include "mesh/roles/app.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  auto parsed = mesh::config::parse(args);
  std::cout << parsed.output;
  std::cerr << parsed.error;
  if (!parsed.config) return parsed.exit_code;
  return mesh::roles::run(*parsed.config);
}
