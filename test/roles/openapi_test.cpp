// docs/openapi.yaml and the served routes agree both ways: every route the whole app
// (--role=all) registers is documented with its method, and every documented operation is
// served. The document's structure is checked by scripts/check-openapi.py (ctest openapi_lint).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "app_fixture.hpp"

using namespace mesh::roles::test;

namespace {

// (METHOD, path) pairs under `paths:`. The document keeps paths at two spaces of indentation
// and methods at four, which is what this reader relies on (and the lint checks the rest).
std::set<std::pair<std::string, std::string>> documented_operations() {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "../../docs/openapi.yaml";
  std::ifstream file(path);
  REQUIRE(file.good());
  std::set<std::pair<std::string, std::string>> operations;
  const std::regex path_line(R"(^  (/[^:\s]*):\s*$)");
  const std::regex method_line(R"(^    (get|put|post|delete|patch|head|options):)");
  bool in_paths = false;
  std::string current;
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line[0] != ' ' && line[0] != '#') in_paths = line.rfind("paths:", 0) == 0;
    if (!in_paths) continue;
    std::smatch match;
    if (std::regex_match(line, match, path_line)) {
      current = match[1];
    } else if (std::regex_search(line, match, method_line) && !current.empty()) {
      std::string method = match[1];
      for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      operations.emplace(method, current);
    }
  }
  return operations;
}

}  // namespace

TEST_CASE("openapi: every served route is documented and every documented route is served") {
  AppFixture app;
  std::set<std::pair<std::string, std::string>> served;
  for (const auto& route : app.app().routes().routes()) served.insert(route);
  const auto documented = documented_operations();
  REQUIRE(documented.size() > 20);
  for (const auto& [method, path] : served) {
    INFO("served but not documented: " << method << " " << path);
    CHECK(documented.count({method, path}) == 1);
  }
  for (const auto& [method, path] : documented) {
    INFO("documented but not served: " << method << " " << path);
    CHECK(served.count({method, path}) == 1);
  }
}
