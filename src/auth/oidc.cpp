#include "mesh/auth/oidc.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <boost/json/basic_parser_impl.hpp>

#include "mesh/auth/base64url.hpp"
#include "openssl_handles.hpp"

namespace mesh::auth {
namespace {

using boost::system::error_code;

constexpr std::size_t kMaxDecodedSize = OidcVerifier::max_token_size / 4 * 3;
constexpr std::size_t kEs256SignatureSize = 64;

enum class JsonKind : unsigned char { absent, string, integer, strings, other };

struct Member {
  JsonKind kind = JsonKind::absent;
  std::string text;                  // when kind == string
  std::int64_t integer = 0;          // when kind == integer
  std::vector<std::string> strings;  // when kind == strings: an array of strings only
};

// A basic_parser handler keeping the top-level members named in `names` of one JSON object,
// with no repeated member name anywhere at the top level (parsers disagree on which repeat
// wins, which would let one signed token mean two things). Values of the named members are
// kept when they are a string, an integer or an array of strings ("aud").
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
    if (depth_ > 0) value_is(JsonKind::other);
    ++depth_;
    return true;
  }
  bool on_object_end(std::size_t, error_code&) {
    --depth_;
    return true;
  }
  bool on_array_begin(error_code& ec) {
    if (!inside_root(ec)) return false;
    value_is(depth_ == 1 ? JsonKind::strings : JsonKind::other);
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
    text_.append(part.data(), part.size());
    return true;
  }
  bool on_string(boost::json::string_view part, std::size_t, error_code& ec) {
    if (!inside_root(ec)) return false;
    text_.append(part.data(), part.size());
    if (current_ != nullptr && depth_ == 1) {
      current_->kind = JsonKind::string;
      current_->text = std::move(text_);
    } else if (current_ != nullptr && depth_ == 2 && current_->kind == JsonKind::strings) {
      current_->strings.push_back(std::move(text_));
    }
    text_.clear();
    return true;
  }

  bool on_number_part(boost::json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t value, boost::json::string_view, error_code& ec) {
    if (!inside_root(ec)) return false;
    if (current_ != nullptr && depth_ == 1) {
      current_->kind = JsonKind::integer;
      current_->integer = value;
    } else {
      value_is(JsonKind::other);
    }
    return true;
  }
  bool on_uint64(std::uint64_t value, boost::json::string_view text, error_code& ec) {
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return scalar(ec);
    }
    return on_int64(static_cast<std::int64_t>(value), text, ec);
  }
  bool on_double(double, boost::json::string_view, error_code& ec) { return scalar(ec); }
  bool on_bool(bool, error_code& ec) { return scalar(ec); }
  bool on_null(error_code& ec) { return scalar(ec); }

  bool on_comment_part(boost::json::string_view, error_code&) { return true; }
  bool on_comment(boost::json::string_view, error_code&) { return true; }

 private:
  static bool fail(error_code& ec) {
    ec = boost::json::error::syntax;
    return false;
  }

  // Only an object may be the whole document: arrays and scalars must sit inside it.
  bool inside_root(error_code& ec) const { return depth_ != 0 || fail(ec); }

  // A value of a kind the readers never accept: an object member, or a non-string inside an
  // array, spoils the named member it belongs to.
  void value_is(JsonKind kind) {
    if (current_ == nullptr) return;
    if (depth_ == 1 || current_->kind == JsonKind::strings) current_->kind = kind;
  }

  bool scalar(error_code& ec) {
    if (!inside_root(ec)) return false;
    value_is(JsonKind::other);
    return true;
  }

  const std::array<std::string_view, N>& names_;
  std::array<Member, N> members_;
  std::vector<std::string> other_names_;
  std::string key_;
  std::string text_;
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

enum HeaderField : std::size_t { kAlg, kKid, kTyp, kCrit };
constexpr std::array<std::string_view, 4> kHeaderNames{"alg", "kid", "typ", "crit"};

enum ClaimField : std::size_t { kIss, kSub, kAud, kExp, kNbf, kIat, kPreferredUsername, kEmail };
constexpr std::array<std::string_view, 8> kClaimNames{
    "iss", "sub", "aud", "exp", "nbf", "iat", "preferred_username", "email"};

bool absent_or(const Member& member, JsonKind kind) {
  return member.kind == JsonKind::absent || member.kind == kind;
}

bool is_string(const Member& member, std::string_view value) {
  return member.kind == JsonKind::string && member.text == value;
}

std::optional<SigningAlg> pinned_alg(const std::array<Member, 4>& header) {
  const bool plain_jwt = header[kTyp].kind == JsonKind::absent || is_string(header[kTyp], "JWT") ||
                         is_string(header[kTyp], "at+jwt") ||
                         is_string(header[kTyp], "application/at+jwt");
  if (!plain_jwt || header[kCrit].kind != JsonKind::absent) return std::nullopt;
  if (is_string(header[kAlg], "RS256")) return SigningAlg::rs256;
  if (is_string(header[kAlg], "ES256")) return SigningAlg::es256;
  return std::nullopt;
}

bool well_typed(const std::array<Member, 8>& claims) {
  const auto& aud = claims[kAud];
  return claims[kSub].kind == JsonKind::string && !claims[kSub].text.empty() &&
         claims[kExp].kind == JsonKind::integer && absent_or(claims[kIss], JsonKind::string) &&
         (aud.kind == JsonKind::absent || aud.kind == JsonKind::string ||
          aud.kind == JsonKind::strings) &&
         absent_or(claims[kNbf], JsonKind::integer) && absent_or(claims[kIat], JsonKind::integer) &&
         absent_or(claims[kPreferredUsername], JsonKind::string) &&
         absent_or(claims[kEmail], JsonKind::string);
}

bool has_audience(const Member& aud, std::string_view audience) {
  if (aud.kind == JsonKind::string) return aud.text == audience;
  return std::find(aud.strings.begin(), aud.strings.end(), audience) != aud.strings.end();
}

// JOSE carries an ES256 signature as r || s (32 bytes each); OpenSSL verifies DER.
std::optional<std::vector<unsigned char>> es256_der(std::string_view signature) {
  if (signature.size() != kEs256SignatureSize) return std::nullopt;
  const auto* bytes = reinterpret_cast<const unsigned char*>(signature.data());
  detail::EcdsaSignature sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(bytes, kEs256SignatureSize / 2, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + kEs256SignatureSize / 2, kEs256SignatureSize / 2, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  const int size = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (size <= 0) return std::nullopt;
  std::vector<unsigned char> der(static_cast<std::size_t>(size));
  unsigned char* out = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &out) != size) return std::nullopt;
  return der;
}

bool signature_valid(const Jwk& key, std::string_view signing_input, std::string_view signature) {
  std::optional<std::vector<unsigned char>> der;
  const unsigned char* sig = reinterpret_cast<const unsigned char*>(signature.data());
  std::size_t sig_size = signature.size();
  if (key.alg == SigningAlg::es256) {
    der = es256_der(signature);
    if (!der) return false;
    sig = der->data();
    sig_size = der->size();
  } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.key.get()))) {
    return false;
  }
  detail::DigestContext context(EVP_MD_CTX_new());
  EVP_PKEY_CTX* key_context = nullptr;
  bool valid = context &&
               EVP_DigestVerifyInit(context.get(), &key_context, EVP_sha256(), nullptr,
                                    key.key.get()) == 1 &&
               (key.alg != SigningAlg::rs256 ||
                EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PADDING) == 1) &&
               EVP_DigestVerify(context.get(), sig, sig_size,
                                reinterpret_cast<const unsigned char*>(signing_input.data()),
                                signing_input.size()) == 1;
  // A failed verification leaves entries on this thread's error queue; they mean nothing here.
  if (!valid) ERR_clear_error();
  return valid;
}

std::int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::floor<std::chrono::seconds>(time.time_since_epoch()).count();
}

}  // namespace

std::string_view to_string(OidcError error) {
  switch (error) {
    case OidcError::malformed:
      return "malformed";
    case OidcError::unsupported_algorithm:
      return "unsupported_algorithm";
    case OidcError::unknown_key:
      return "unknown_key";
    case OidcError::key_mismatch:
      return "key_mismatch";
    case OidcError::bad_signature:
      return "bad_signature";
    case OidcError::wrong_issuer:
      return "wrong_issuer";
    case OidcError::wrong_audience:
      return "wrong_audience";
    case OidcError::expired:
      return "expired";
    case OidcError::not_yet_valid:
      return "not_yet_valid";
  }
  return "unknown";
}

std::string external_user_id(std::string_view issuer, std::string_view subject) {
  std::string input(issuer);
  input += '\n';
  input += subject;
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("auth: SHA-256 failed");
  }
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x80);
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string uuid;
  uuid.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) uuid += '-';
    uuid += kHex[digest[i] >> 4];
    uuid += kHex[digest[i] & 0x0f];
  }
  return uuid;
}

OidcVerifier::OidcVerifier(OidcOptions options) : options_(std::move(options)) {
  if (options_.issuer.empty() || options_.audience.empty()) {
    throw std::invalid_argument("auth: OIDC needs an issuer and an audience");
  }
  if (options_.leeway < std::chrono::seconds::zero()) {
    throw std::invalid_argument("auth: the OIDC leeway must not be negative");
  }
}

void OidcVerifier::set_keys(std::shared_ptr<const KeySet> keys) { keys_.store(std::move(keys)); }

std::shared_ptr<const KeySet> OidcVerifier::keys() const { return keys_.load(); }

void OidcVerifier::on_unknown_key(std::function<void()> hook) {
  unknown_key_hook_.store(hook ? std::make_shared<const std::function<void()>>(std::move(hook))
                               : nullptr);
}

OidcVerifier::Verified OidcVerifier::verify(std::string_view token,
                                            std::chrono::system_clock::time_point now) const {
  const auto reject = [](OidcError error) { return Verified{std::nullopt, error}; };
  if (token.size() > max_token_size) return reject(OidcError::malformed);

  const std::size_t header_end = token.find('.');
  const std::size_t payload_end = token.find('.', header_end + 1);
  if (header_end == std::string_view::npos || payload_end == std::string_view::npos ||
      token.find('.', payload_end + 1) != std::string_view::npos) {
    return reject(OidcError::malformed);
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
  if (!header_json || !payload_json || !signature) return reject(OidcError::malformed);

  const auto header = read_members(*header_json, kHeaderNames);
  if (!header || !absent_or((*header)[kKid], JsonKind::string)) {
    return reject(OidcError::malformed);
  }
  const auto alg = pinned_alg(*header);
  if (!alg) return reject(OidcError::unsupported_algorithm);

  static const std::vector<Jwk> kNoKeys;
  const auto keys = keys_.load();
  const auto& available = keys ? keys->keys() : kNoKeys;
  const Jwk* key = nullptr;
  bool kid_known = false;
  std::size_t candidates = 0;
  const bool has_kid = (*header)[kKid].kind == JsonKind::string;
  for (const auto& jwk : available) {
    if (has_kid && jwk.kid != (*header)[kKid].text) continue;
    kid_known = true;
    if (jwk.alg != *alg) continue;
    ++candidates;
    if (key == nullptr) key = &jwk;
  }
  // Without a kid, the key must be unambiguous; with one, the first key of the right type wins.
  if (key == nullptr || (!has_kid && candidates != 1)) {
    if (has_kid && kid_known) return reject(OidcError::key_mismatch);
    if (const auto hook = unknown_key_hook_.load()) (*hook)();
    return reject(OidcError::unknown_key);
  }
  if (!signature_valid(*key, signing_input, *signature)) return reject(OidcError::bad_signature);

  auto claims = read_members(*payload_json, kClaimNames);
  if (!claims || !well_typed(*claims)) return reject(OidcError::malformed);
  auto& members = *claims;
  if (!is_string(members[kIss], options_.issuer)) return reject(OidcError::wrong_issuer);
  if (!has_audience(members[kAud], options_.audience)) return reject(OidcError::wrong_audience);
  const std::int64_t now_seconds = unix_seconds(now);
  const std::int64_t leeway = options_.leeway.count();
  if (now_seconds - leeway >= members[kExp].integer) return reject(OidcError::expired);
  for (const auto field : {kNbf, kIat}) {
    if (members[field].kind == JsonKind::integer && members[field].integer > now_seconds &&
        members[field].integer - now_seconds > leeway) {
      return reject(OidcError::not_yet_valid);
    }
  }
  std::string display_name = !members[kPreferredUsername].text.empty()
                                 ? std::move(members[kPreferredUsername].text)
                             : !members[kEmail].text.empty() ? std::move(members[kEmail].text)
                                                             : members[kSub].text;
  return Verified{
      OidcClaims{std::move(members[kSub].text), std::move(display_name), members[kExp].integer},
      {}};
}

http::Principal OidcVerifier::principal(const OidcClaims& claims) const {
  return http::Principal{external_user_id(options_.issuer, claims.subject), claims.display_name,
                         "user"};
}

std::function<std::optional<http::Principal>(std::string_view,
                                             std::chrono::system_clock::time_point, std::string&)>
OidcVerifier::as_external_verifier() const {
  return [this](std::string_view token, std::chrono::system_clock::time_point now,
                std::string& error) -> std::optional<http::Principal> {
    const auto verified = verify(token, now);
    if (!verified.claims) {
      error = to_string(verified.error);
      return std::nullopt;
    }
    return principal(*verified.claims);
  };
}

}  // namespace mesh::auth
