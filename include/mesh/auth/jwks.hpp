#pragma once
// JSON Web Key Sets (RFC 7517) of an OIDC provider: the public keys that sign its tokens. Only
// what mesh verifies is kept: RSA keys of at least 2048 bits (RS256) and EC P-256 keys (ES256).
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace mesh::auth {

// The token algorithms mesh accepts from an external issuer; a key serves exactly one of them.
enum class SigningAlg { rs256, es256 };

// "RS256" or "ES256".
std::string_view to_string(SigningAlg alg);

struct Jwk {
  std::string kid;  // empty when the key has none
  // From kty and crv: RSA -> RS256, EC P-256 -> ES256. A key whose own "alg" names anything
  // else is skipped, so this is also the only algorithm the key's owner allowed.
  SigningAlg alg;
  std::shared_ptr<evp_pkey_st> key;
};

class KeySet {
 public:
  static constexpr std::size_t max_document_size = 1024 * 1024;
  static constexpr std::size_t max_keys = 100;

  // Parses a JWKS document {"keys":[...]}. Entries mesh cannot use are skipped with a reason
  // (see skipped()): an unknown kty or crv, "use" other than "sig", an "alg" the key type cannot
  // serve, an RSA modulus under 2048 bits, members that do not decode, a point not on the curve.
  // Throws std::invalid_argument with the reason when the document is over max_document_size,
  // not JSON, not an object with a "keys" array of at most max_keys entries, or has no usable key.
  static std::shared_ptr<const KeySet> parse(std::string_view document);

  const std::vector<Jwk>& keys() const { return keys_; }
  // One line per skipped entry: "keys[3] (kid \"x\"): RSA modulus of 1024 bits ...".
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  std::vector<Jwk> keys_;
  std::vector<std::string> skipped_;
};

}  // namespace mesh::auth
