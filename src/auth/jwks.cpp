#include "mesh/auth/jwks.hpp"

#include <array>
#include <stdexcept>
#include <utility>

#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "mesh/auth/base64url.hpp"
#include "openssl_handles.hpp"

namespace mesh::auth {
namespace {

constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;
constexpr std::size_t kMaxExponentSize = 8;
constexpr std::size_t kP256CoordinateSize = 32;

// Why one entry of "keys" is unusable; caught per entry, so the rest of the set still loads.
struct Unusable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const boost::json::string* string_member(const boost::json::object& jwk, std::string_view name) {
  const auto* value = jwk.if_contains(name);
  if (value == nullptr) return nullptr;
  if (!value->is_string()) throw Unusable("\"" + std::string(name) + "\" is not a string");
  return &value->get_string();
}

std::string required_bytes(const boost::json::object& jwk, std::string_view name) {
  const auto* text = string_member(jwk, name);
  if (text == nullptr) throw Unusable("\"" + std::string(name) + "\" is missing");
  std::string bytes(text->size() / 4 * 3 + 3, '\0');
  const auto decoded =
      base64url_decode(std::string_view(text->data(), text->size()), std::span<char>(bytes));
  if (!decoded || decoded->empty()) {
    throw Unusable("\"" + std::string(name) + "\" is not unpadded base64url");
  }
  bytes.resize(decoded->size());
  return bytes;
}

detail::Bignum to_bignum(std::string_view big_endian) {
  detail::Bignum number(BN_bin2bn(reinterpret_cast<const unsigned char*>(big_endian.data()),
                                  static_cast<int>(big_endian.size()), nullptr));
  if (!number) throw std::runtime_error("jwks: BN_bin2bn failed");
  return number;
}

// Builds a public key of `type` ("RSA", "EC") from parameters and checks it the way OpenSSL
// checks a peer's key: the modulus and exponent are sane, the point lies on the curve.
std::shared_ptr<evp_pkey_st> public_key(const char* type, const detail::ParamBuilder& builder) {
  const detail::Params params(OSSL_PARAM_BLD_to_param(builder.get()));
  if (!params) throw std::runtime_error("jwks: OSSL_PARAM_BLD_to_param failed");
  const detail::PkeyContext context(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!context) throw std::runtime_error(std::string("jwks: no OpenSSL support for ") + type);
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata_init(context.get()) != 1 ||
      EVP_PKEY_fromdata(context.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    throw Unusable("OpenSSL refuses the key's parameters");
  }
  std::shared_ptr<evp_pkey_st> key(raw, EVP_PKEY_free);
  const detail::PkeyContext check(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check) throw std::runtime_error("jwks: EVP_PKEY_CTX_new_from_pkey failed");
  if (EVP_PKEY_public_check(check.get()) != 1) throw Unusable("the public key check fails");
  return key;
}

std::shared_ptr<evp_pkey_st> rsa_key(const boost::json::object& jwk) {
  std::string modulus = required_bytes(jwk, "n");
  const std::string exponent = required_bytes(jwk, "e");
  const auto leading_zeros = modulus.find_first_not_of('\0');
  modulus.erase(0, leading_zeros == std::string::npos ? modulus.size() : leading_zeros);
  const auto n = to_bignum(modulus);
  const int bits = BN_num_bits(n.get());
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    throw Unusable("RSA modulus of " + std::to_string(bits) + " bits (" +
                   std::to_string(kMinRsaBits) + " to " + std::to_string(kMaxRsaBits) +
                   " accepted)");
  }
  if (exponent.size() > kMaxExponentSize) throw Unusable("RSA exponent too large");
  const auto e = to_bignum(exponent);
  if (!BN_is_odd(e.get()) || BN_is_one(e.get())) throw Unusable("RSA exponent not odd and > 1");

  const detail::ParamBuilder builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    throw std::runtime_error("jwks: cannot build RSA parameters");
  }
  return public_key("RSA", builder);
}

std::shared_ptr<evp_pkey_st> p256_key(const boost::json::object& jwk) {
  const std::string x = required_bytes(jwk, "x");
  const std::string y = required_bytes(jwk, "y");
  if (x.size() != kP256CoordinateSize || y.size() != kP256CoordinateSize) {
    throw Unusable("P-256 coordinates must be 32 bytes each");
  }
  // SEC 1 uncompressed point: 0x04 || x || y.
  const std::string point = '\x04' + x + y;
  static constexpr std::string_view kGroup = SN_X9_62_prime256v1;
  const detail::ParamBuilder builder(OSSL_PARAM_BLD_new());
  if (!builder ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, kGroup.data(),
                                      kGroup.size()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    throw std::runtime_error("jwks: cannot build EC parameters");
  }
  return public_key("EC", builder);
}

// Requires the optional member `name` to be absent or equal to `expected`.
void require_absent_or(const boost::json::object& jwk, std::string_view name,
                       std::string_view expected) {
  const auto* value = string_member(jwk, name);
  if (value != nullptr && *value != expected) {
    throw Unusable("\"" + std::string(name) + "\" is \"" + std::string(*value) + "\", not \"" +
                   std::string(expected) + "\"");
  }
}

Jwk read_key(const boost::json::object& jwk) {
  const auto* kty = string_member(jwk, "kty");
  if (kty == nullptr) throw Unusable("\"kty\" is missing");
  const auto* kid = string_member(jwk, "kid");
  require_absent_or(jwk, "use", "sig");
  Jwk key{kid ? std::string(*kid) : std::string(), SigningAlg::rs256, nullptr};
  if (*kty == "RSA") {
    require_absent_or(jwk, "alg", "RS256");
    key.key = rsa_key(jwk);
  } else if (*kty == "EC") {
    require_absent_or(jwk, "crv", "P-256");
    if (string_member(jwk, "crv") == nullptr) throw Unusable("\"crv\" is missing");
    require_absent_or(jwk, "alg", "ES256");
    key.alg = SigningAlg::es256;
    key.key = p256_key(jwk);
  } else {
    throw Unusable("unsupported kty \"" + std::string(*kty) + "\"");
  }
  return key;
}

std::string describe_entry(std::size_t index, const boost::json::value& entry) {
  std::string name = "keys[" + std::to_string(index) + "]";
  if (const auto* object = entry.if_object()) {
    if (const auto* kid = object->if_contains("kid"); kid && kid->is_string()) {
      name += " (kid \"" + std::string(kid->get_string()) + "\")";
    }
  }
  return name;
}

}  // namespace

std::string_view to_string(SigningAlg alg) {
  switch (alg) {
    case SigningAlg::rs256:
      return "RS256";
    case SigningAlg::es256:
      return "ES256";
  }
  return "unknown";
}

std::shared_ptr<const KeySet> KeySet::parse(std::string_view document) {
  if (document.size() > max_document_size) {
    throw std::invalid_argument("JWKS of " + std::to_string(document.size()) +
                                " bytes, above the limit of " + std::to_string(max_document_size));
  }
  boost::system::error_code ec;
  const boost::json::value root = boost::json::parse(document, ec);
  if (ec) throw std::invalid_argument("JWKS is not JSON: " + ec.message());
  const auto* object = root.if_object();
  const auto* keys = object ? object->if_contains("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    throw std::invalid_argument("JWKS is not an object with a \"keys\" array");
  }
  const auto& entries = keys->get_array();
  if (entries.size() > max_keys) {
    throw std::invalid_argument("JWKS has " + std::to_string(entries.size()) +
                                " keys, above the limit of " + std::to_string(max_keys));
  }
  auto set = std::make_shared<KeySet>();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    try {
      const auto* jwk = entries[i].if_object();
      if (jwk == nullptr) throw Unusable("not an object");
      set->keys_.push_back(read_key(*jwk));
    } catch (const Unusable& unusable) {
      set->skipped_.push_back(describe_entry(i, entries[i]) + ": " + unusable.what());
    }
  }
  if (set->keys_.empty()) {
    std::string reason = "JWKS has no usable RS256 or ES256 signing key";
    for (const auto& skipped : set->skipped_) reason += "; " + skipped;
    throw std::invalid_argument(reason);
  }
  return set;
}

}  // namespace mesh::auth
