#pragma once
// `mesh healthcheck [URL]`: the container image's HEALTHCHECK. The runtime image has no shell
// and no curl, so the binary probes itself: GET URL (default http://127.0.0.1:<port>/readyz,
// the port taken from MESH_LISTEN, else 8080) within --timeout-ms, exit 0 on a 200 answer and 1
// otherwise, with the reason on stderr.
#include <string>
#include <string_view>
#include <vector>

namespace mesh::roles {

// args as main() got them, args[1] == "healthcheck". Returns the process exit code.
int run_healthcheck(const std::vector<std::string>& args);

// The default probe URL for a --listen value ("0.0.0.0:8080", "[::]:9000", ":8081"): loopback,
// same port, /readyz. An unparsable value gives port 8080.
std::string default_probe_url(std::string_view listen);

}  // namespace mesh::roles
