#pragma once
// SHA-1 as lowercase hex: the name Redis gives a script, computed here so that a Script knows
// its EVALSHA name without a round trip (hiredis has no hash functions).
#include <string>
#include <string_view>

namespace mesh::redis::detail {

std::string sha1_hex(std::string_view data);

}  // namespace mesh::redis::detail
