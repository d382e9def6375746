#pragma once
// `mesh seed --users N --profiles M`: test data like seed 003's helper. Creates random users
// (one shared, printed password) and profiles with overlapping memberships, then prints JSON
// with the (user, profile) pairs to try, each with a bearer token and the session URL when
// the JWT secret is available.
#include <string>
#include <vector>

namespace mesh::roles {

// args as main() got them, args[1] == "seed". Returns the process exit code.
int run_seed(const std::vector<std::string>& args);

}  // namespace mesh::roles
