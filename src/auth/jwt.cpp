#include "mesh/auth/jwt.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <sodium.h>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/auth/base64url.hpp"
#include "sodium_init.hpp"

namespace mesh::auth {
namespace {

using boost::system::error_code;
using Mac = std::array<unsigned char, crypto_auth_hmacsha256_BYTES>;

constexpr std::size_t kMinSecretSize = 32;
// Every decoded segment shares one stack buffer; base64 turns 4 characters into at most 3 bytes.
constexpr std::size_t kMaxDecodedSize = JwtCodec::max_token_size / 4 * 3;

enum class JsonKind : unsigned char { absent, string, integer, other };

struct Member {
  JsonKind kind = JsonKind::absent;
  std::string text;          // when kind == string
  std::int64_t integer = 0;  // when kind == integer
};

// A basic_parser handler that keeps the top-level members named in `names` and checks what
// every JWT segment must be: one JSON object with no repeated member name. Repeats are refused
// because JSON parsers disagree on which one wins, which would let a token mean two things.
template <std::size_t N>
class MemberReader {
 public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  explicit MemberReader(const std::array<std::string_view, N>& names) : names_(names) {}

  std::array<Member, N>& members() { return members_; }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code& ec) {
    std::sort(other_names_.begin(), other_names_.end());
    if (std::adjacent_find(other_names_.begin(), other_names_.end()) != other_names_.end()) {
      return fail(ec);
    }
    return true;
  }

  bool on_object_begin(error_code&) {
    ++depth_;
    return true;
  }
  bool on_object_end(std::size_t, error_code&) {
    --depth_;
    return true;
  }
  bool on_array_begin(error_code& ec) {
    if (!inside_root(ec)) return false;
    ++depth_;
    return true;
  }
  bool on_array_end(std::size_t, error_code&) {
    --depth_;
    return true;
  }

  bool on_key_part(boost::json::string_view part, std::size_t, error_code&) {
    if (depth_ == 1) key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(boost::json::string_view part, std::size_t, error_code& ec) {
    if (depth_ != 1) return true;
    key_.append(part.data(), part.size());
    const auto known = std::find(names_.begin(), names_.end(), key_);
    if (known == names_.end()) {
      current_ = nullptr;
      other_names_.push_back(std::move(key_));
    } else {
      current_ = &members_[known - names_.begin()];
      if (current_->kind != JsonKind::absent) return fail(ec);
      current_->kind = JsonKind::other;
    }
    key_.clear();
    return true;
  }

  bool on_string_part(boost::json::string_view part, std::size_t, error_code& ec) {
    if (!inside_root(ec)) return false;
    if (current_value()) current_->text.append(part.data(), part.size());
    return true;
  }
  bool on_string(boost::json::string_view part, std::size_t, error_code& ec) {
    if (!inside_root(ec)) return false;
    if (current_value()) {
      current_->text.append(part.data(), part.size());
      current_->kind = JsonKind::string;
    }
    return true;
  }

  bool on_number_part(boost::json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t value, boost::json::string_view, error_code& ec) {
    if (!inside_root(ec)) return false;
    if (current_value()) {
      current_->kind = JsonKind::integer;
      current_->integer = value;
    }
    return true;
  }
  bool on_uint64(std::uint64_t value, boost::json::string_view text, error_code& ec) {
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return inside_root(ec);
    }
    return on_int64(static_cast<std::int64_t>(value), text, ec);
  }
  bool on_double(double, boost::json::string_view, error_code& ec) { return inside_root(ec); }
  bool on_bool(bool, error_code& ec) { return inside_root(ec); }
  bool on_null(error_code& ec) { return inside_root(ec); }

  bool on_comment_part(boost::json::string_view, error_code&) { return true; }
  bool on_comment(boost::json::string_view, error_code&) { return true; }

 private:
  static bool fail(error_code& ec) {
    ec = boost::json::error::syntax;
    return false;
  }

  // Only an object may be the whole document: arrays and scalars must sit inside it.
  bool inside_root(error_code& ec) const { return depth_ != 0 || fail(ec); }

  // Inside the root object every value event at depth 1 belongs to the member just named.
  bool current_value() const { return depth_ == 1 && current_ != nullptr; }

  const std::array<std::string_view, N>& names_;
  std::array<Member, N> members_;
  std::vector<std::string> other_names_;
  std::string key_;
  Member* current_ = nullptr;
  std::size_t depth_ = 0;
};

template <std::size_t N>
std::optional<std::array<Member, N>> read_members(std::string_view json,
                                                  const std::array<std::string_view, N>& names) {
  boost::json::basic_parser<MemberReader<N>> parser(boost::json::parse_options{}, names);
  error_code ec;
  const std::size_t consumed = parser.write_some(false, json.data(), json.size(), ec);
  if (ec || !parser.done() || consumed != json.size()) return std::nullopt;
  return std::move(parser.handler().members());
}

enum HeaderField : std::size_t { kAlg, kTyp, kCrit };
constexpr std::array<std::string_view, 3> kHeaderNames{"alg", "typ", "crit"};

enum ClaimField : std::size_t { kSub, kName, kRole, kIss, kIat, kExp, kNbf };
constexpr std::array<std::string_view, 7> kClaimNames{"sub", "name", "role", "iss",
                                                      "iat", "exp",  "nbf"};

bool absent_or(const Member& member, JsonKind kind) {
  return member.kind == JsonKind::absent || member.kind == kind;
}

bool is_string(const Member& member, std::string_view value) {
  return member.kind == JsonKind::string && member.text == value;
}

bool is_plain_hs256(const std::array<Member, 3>& header) {
  return is_string(header[kAlg], "HS256") &&
         (header[kTyp].kind == JsonKind::absent || is_string(header[kTyp], "JWT")) &&
         header[kCrit].kind == JsonKind::absent;
}

bool well_typed(const std::array<Member, 7>& claims) {
  return claims[kSub].kind == JsonKind::string && absent_or(claims[kName], JsonKind::string) &&
         absent_or(claims[kRole], JsonKind::string) && absent_or(claims[kIss], JsonKind::string) &&
         claims[kIat].kind == JsonKind::integer && claims[kExp].kind == JsonKind::integer &&
         absent_or(claims[kNbf], JsonKind::integer);
}

Mac hmac_sha256(std::string_view key, std::string_view message) {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()),
                              key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size());
  Mac mac;
  crypto_auth_hmacsha256_final(&state, mac.data());
  return mac;
}

std::string_view as_chars(const Mac& mac) {
  return {reinterpret_cast<const char*>(mac.data()), mac.size()};
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::floor<std::chrono::seconds>(time.time_since_epoch()).count();
}

}  // namespace

std::string_view to_string(JwtError error) {
  switch (error) {
    case JwtError::malformed:
      return "malformed";
    case JwtError::unsupported_algorithm:
      return "unsupported_algorithm";
    case JwtError::bad_signature:
      return "bad_signature";
    case JwtError::expired:
      return "expired";
    case JwtError::not_yet_valid:
      return "not_yet_valid";
    case JwtError::wrong_issuer:
      return "wrong_issuer";
  }
  return "unknown";
}

JwtCodec::JwtCodec(std::string secret, std::string issuer, std::chrono::seconds ttl)
    : secret_(std::move(secret)), issuer_(std::move(issuer)), ttl_(ttl) {
  if (secret_.size() < kMinSecretSize) {
    throw std::invalid_argument("auth: the JWT secret must be at least 32 bytes, got " +
                                std::to_string(secret_.size()));
  }
  if (ttl_ <= std::chrono::seconds::zero()) {
    throw std::invalid_argument("auth: the JWT ttl must be positive");
  }
  detail::init_sodium();
}

std::string JwtCodec::issue(std::string_view subject, std::string_view username,
                            std::string_view role,
                            std::chrono::system_clock::time_point now) const {
  static const std::string encoded_header = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  const std::int64_t issued_at = unix_seconds(now);
  const boost::json::object payload{{"sub", subject},   {"name", username},
                                    {"role", role},     {"iss", issuer_},
                                    {"iat", issued_at}, {"exp", issued_at + ttl_.count()}};
  std::string token = encoded_header;
  token += '.';
  token += base64url_encode(boost::json::serialize(payload));
  token += '.' + base64url_encode(as_chars(hmac_sha256(secret_, token)));
  return token;
}

JwtCodec::Verified JwtCodec::verify(std::string_view token,
                                    std::chrono::system_clock::time_point now) const {
  const auto reject = [](JwtError error) { return Verified{std::nullopt, error}; };
  if (token.size() > max_token_size) return reject(JwtError::malformed);

  const std::size_t header_end = token.find('.');
  const std::size_t payload_end = token.find('.', header_end + 1);
  if (header_end == std::string_view::npos || payload_end == std::string_view::npos ||
      token.find('.', payload_end + 1) != std::string_view::npos) {
    return reject(JwtError::malformed);
  }
  const std::string_view signing_input = token.substr(0, payload_end);

  std::array<char, kMaxDecodedSize> buffer;
  std::span<char> free_space(buffer);
  const auto decode = [&free_space](std::string_view text) {
    auto bytes = base64url_decode(text, free_space);
    if (bytes) free_space = free_space.subspan(bytes->size());
    return bytes;
  };
  const auto header_json = decode(token.substr(0, header_end));
  const auto payload_json = decode(token.substr(header_end + 1, payload_end - header_end - 1));
  const auto signature = decode(token.substr(payload_end + 1));
  if (!header_json || !payload_json || !signature) return reject(JwtError::malformed);

  const auto header = read_members(*header_json, kHeaderNames);
  if (!header) return reject(JwtError::malformed);
  if (!is_plain_hs256(*header)) return reject(JwtError::unsupported_algorithm);

  const Mac expected = hmac_sha256(secret_, signing_input);
  if (signature->size() != expected.size() ||
      sodium_memcmp(signature->data(), expected.data(), expected.size()) != 0) {
    return reject(JwtError::bad_signature);
  }

  auto claims = read_members(*payload_json, kClaimNames);
  if (!claims || !well_typed(*claims)) return reject(JwtError::malformed);
  auto& members = *claims;
  if (members[kIss].kind == JsonKind::absent || members[kIss].text != issuer_) {
    return reject(JwtError::wrong_issuer);
  }
  const std::int64_t now_seconds = unix_seconds(now);
  if (now_seconds >= members[kExp].integer) return reject(JwtError::expired);
  if (members[kNbf].kind == JsonKind::integer && now_seconds < members[kNbf].integer) {
    return reject(JwtError::not_yet_valid);
  }
  return Verified{
      Claims{std::move(members[kSub].text), std::move(members[kName].text),
             std::move(members[kRole].text), members[kIat].integer, members[kExp].integer},
      {}};
}

}  // namespace mesh::auth
