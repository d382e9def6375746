#include "mesh/auth/base64url.hpp"

#include <array>
#include <cstdint>

namespace mesh::auth {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::uint8_t kInvalid = 0xff;

constexpr std::array<std::uint8_t, 256> kSextets = [] {
  std::array<std::uint8_t, 256> table{};
  table.fill(kInvalid);
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}();

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string text;
  text.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t group = static_cast<unsigned char>(bytes[i]) << 16 |
                                static_cast<unsigned char>(bytes[i + 1]) << 8 |
                                static_cast<unsigned char>(bytes[i + 2]);
    text += kAlphabet[group >> 18];
    text += kAlphabet[group >> 12 & 0x3f];
    text += kAlphabet[group >> 6 & 0x3f];
    text += kAlphabet[group & 0x3f];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t group = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) group |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    text += kAlphabet[group >> 18];
    text += kAlphabet[group >> 12 & 0x3f];
    if (rest == 2) text += kAlphabet[group >> 6 & 0x3f];
  }
  return text;
}

std::optional<std::string_view> base64url_decode(std::string_view text,
                                                 std::span<char> out) noexcept {
  const std::size_t rest = text.size() % 4;
  if (rest == 1) return std::nullopt;
  const std::size_t size = text.size() / 4 * 3 + (rest == 0 ? 0 : rest - 1);
  if (size > out.size()) return std::nullopt;

  std::uint32_t bits = 0;
  int pending = 0;
  std::size_t written = 0;
  for (const char c : text) {
    const std::uint8_t sextet = kSextets[static_cast<unsigned char>(c)];
    if (sextet == kInvalid) return std::nullopt;
    bits = (bits << 6 | sextet) & 0xffffff;
    pending += 6;
    if (pending >= 8) {
      pending -= 8;
      out[written++] = static_cast<char>(bits >> pending & 0xff);
    }
  }
  // The low bits of a partial last character encode nothing; only zeros are canonical.
  if ((bits & ((1u << pending) - 1)) != 0) return std::nullopt;
  return std::string_view(out.data(), written);
}

}  // namespace mesh::auth
