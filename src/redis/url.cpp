#include <charconv>
#include <climits>
#include <stdexcept>
#include <string>

#include "mesh/redis/client.hpp"

namespace mesh::redis {
namespace {

[[noreturn]] void reject(const std::string& why) {
  throw std::invalid_argument("redis URL: " + why +
                              " (expected redis://[[user]:password@]host[:port][/db])");
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Credentials may hold ':', '@' or '/' only percent-encoded.
std::string percent_decode(std::string_view text, const char* what) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    const int high = i + 2 < text.size() ? hex_digit(text[i + 1]) : -1;
    const int low = high >= 0 ? hex_digit(text[i + 2]) : -1;
    if (low < 0) reject(std::string("bad percent-encoding in the ") + what);
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

// A whole decimal number in [min, max]; no sign, no spaces, no trailing text.
bool parse_number(std::string_view text, int min, int max, int& out) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return false;
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  if (value < min || value > max) return false;
  out = value;
  return true;
}

}  // namespace

Options parse_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) {
    if (url.substr(0, 9) == "rediss://") reject("TLS (rediss://) is not supported");
    reject("the scheme must be redis://");
  }
  std::string_view rest = url.substr(scheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    reject("query parameters and fragments are not supported");
  }

  Options options;
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && !parse_number(db, 0, INT_MAX, options.db)) {
      reject("the database must be a number from 0 to " + std::to_string(INT_MAX));
    }
  }

  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) reject("credentials must be [user]:password");
    options.username = percent_decode(userinfo.substr(0, colon), "user name");
    options.password = percent_decode(userinfo.substr(colon + 1), "password");
    if (options.password.empty()) reject("the password is empty");
    authority = authority.substr(at + 1);
  }

  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) reject("unterminated IPv6 address");
    options.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') reject("unexpected text after the IPv6 address");
    if (!after.empty()) port = after.substr(1);
    if (after == ":") reject("the port is empty");
  } else {
    const auto colon = authority.find(':');
    options.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) reject("the port is empty");
    }
  }
  if (options.host.empty()) reject("the host is empty");
  if (!port.empty() && !parse_number(port, 1, 65535, options.port)) {
    reject("the port must be a number from 1 to 65535");
  }
  return options;
}

}  // namespace mesh::redis
