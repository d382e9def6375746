#pragma once
// Unpadded base64url (RFC 4648 section 5), the encoding of every JWT segment.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mesh::auth {

std::string base64url_encode(std::string_view bytes);

// Decodes `text` into the front of `out` and returns the decoded bytes as a view of `out`.
// Returns nullopt unless `text` is the one canonical unpadded base64url spelling of some bytes
// (no '=', '+', '/', whitespace, or stray bits in the last character), or when `out` is too
// small. Accepting a single spelling keeps a signed token from having look-alike variants.
std::optional<std::string_view> base64url_decode(std::string_view text,
                                                 std::span<char> out) noexcept;

}  // namespace mesh::auth
