#include "mesh/auth/base64url.hpp"

#include <array>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

using mesh::auth::base64url_decode;
using mesh::auth::base64url_encode;

namespace {

std::optional<std::string> decode(std::string_view text) {
  std::array<char, 512> buffer;
  const auto bytes = base64url_decode(text, buffer);
  if (!bytes) return std::nullopt;
  return std::string(*bytes);
}

}  // namespace

TEST_CASE("base64url encodes the RFC 4648 vectors without padding") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fooba") == "Zm9vYmE");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
}

TEST_CASE("base64url uses '-' and '_' where base64 uses '+' and '/'") {
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(decode("-_8") == "\xfb\xff");
}

TEST_CASE("base64url round-trips every byte value at every length remainder") {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  for (std::size_t size : {std::size_t{254}, std::size_t{255}, std::size_t{256}}) {
    const std::string input = bytes.substr(0, size);
    CHECK(decode(base64url_encode(input)) == input);
  }
}

TEST_CASE("base64url rejects everything but the canonical unpadded spelling") {
  CHECK(decode("Zg") == "f");
  CHECK_FALSE(decode("Zg=="));
  CHECK_FALSE(decode("Zm9v="));
  CHECK_FALSE(decode("+_8"));
  CHECK_FALSE(decode("-/8"));
  CHECK_FALSE(decode("Zm9 v"));
  CHECK_FALSE(decode("Zm9v\n"));
  CHECK_FALSE(decode("Zm9vY"));  // a length that no byte string encodes to
  CHECK_FALSE(decode("Zh"));     // "f" with a stray low bit set
  CHECK_FALSE(decode("Zm9"));    // "fo" with stray low bits set
  CHECK_FALSE(decode(std::string_view("Zm\0v", 4)));
}

TEST_CASE("base64url refuses to decode into a buffer that is too small") {
  std::array<char, 2> buffer;
  CHECK_FALSE(base64url_decode("Zm9v", buffer));
  const auto bytes = base64url_decode("Zm8", buffer);
  REQUIRE(bytes);
  CHECK(*bytes == "fo");
  CHECK(bytes->data() == buffer.data());
}
