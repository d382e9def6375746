#pragma once
// Test keys and tokens for the OIDC tests: keys generated at run time with OpenSSL, their JWKS
// entries, and tokens signed independently of mesh's verifier. Header-only, so the policy tests
// can share it.
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/auth/base64url.hpp"

namespace mesh::testing::oidc {

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("openssl test helper: ") + what);
}

struct TestKey {
  std::shared_ptr<EVP_PKEY> pkey;
  bool rsa = true;
  std::string kid;
};

inline TestKey rsa_key(std::string kid, unsigned bits = 2048) {
  EVP_PKEY* raw = EVP_RSA_gen(bits);
  check(raw != nullptr, "EVP_RSA_gen");
  return {std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free), true, std::move(kid)};
}

inline TestKey ec_key(std::string kid) {
  EVP_PKEY* raw = EVP_EC_gen("P-256");
  check(raw != nullptr, "EVP_EC_gen");
  return {std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free), false, std::move(kid)};
}

inline std::string big_endian(const EVP_PKEY* pkey, const char* name, int size = 0) {
  BIGNUM* number = nullptr;
  check(EVP_PKEY_get_bn_param(pkey, name, &number) == 1, name);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> holder(number, BN_free);
  std::string bytes(size > 0 ? size : BN_num_bytes(number), '\0');
  check(BN_bn2binpad(number, reinterpret_cast<unsigned char*>(bytes.data()),
                     static_cast<int>(bytes.size())) > 0,
        "BN_bn2binpad");
  return bytes;
}

// The key's public JWK; `extra` members are added (or override) as given.
inline boost::json::object jwk(const TestKey& key, boost::json::object extra = {}) {
  boost::json::object entry;
  if (key.rsa) {
    entry["kty"] = "RSA";
    entry["n"] = auth::base64url_encode(big_endian(key.pkey.get(), OSSL_PKEY_PARAM_RSA_N));
    entry["e"] = auth::base64url_encode(big_endian(key.pkey.get(), OSSL_PKEY_PARAM_RSA_E));
  } else {
    entry["kty"] = "EC";
    entry["crv"] = "P-256";
    entry["x"] = auth::base64url_encode(big_endian(key.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32));
    entry["y"] = auth::base64url_encode(big_endian(key.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32));
  }
  if (!key.kid.empty()) entry["kid"] = key.kid;
  entry["use"] = "sig";
  for (const auto& member : extra) entry[member.key()] = member.value();
  return entry;
}

inline std::string jwks(const std::vector<boost::json::value>& entries) {
  boost::json::array keys(entries.begin(), entries.end());
  return boost::json::serialize(boost::json::object{{"keys", std::move(keys)}});
}

inline std::string jwks(const std::vector<TestKey>& keys) {
  std::vector<boost::json::value> entries;
  for (const auto& key : keys) entries.emplace_back(jwk(key));
  return jwks(entries);
}

// RS256 (PKCS#1 v1.5) or ES256 (JOSE r || s) signature of `input`.
inline std::string sign(const TestKey& key, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  EVP_MD_CTX_free);
  check(context &&
            EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) == 1,
        "EVP_DigestSignInit");
  std::size_t size = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(input.data());
  check(EVP_DigestSign(context.get(), nullptr, &size, data, input.size()) == 1, "sign size");
  std::string signature(size, '\0');
  check(EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                       data, input.size()) == 1,
        "EVP_DigestSign");
  signature.resize(size);
  if (key.rsa) return signature;
  const auto* der = reinterpret_cast<const unsigned char*>(signature.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> parsed(
      d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size())), ECDSA_SIG_free);
  check(parsed != nullptr, "d2i_ECDSA_SIG");
  std::string jose(64, '\0');
  check(BN_bn2binpad(ECDSA_SIG_get0_r(parsed.get()), reinterpret_cast<unsigned char*>(&jose[0]),
                     32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(parsed.get()),
                         reinterpret_cast<unsigned char*>(&jose[32]), 32) == 32,
        "BN_bn2binpad");
  return jose;
}

inline std::string signing_input(std::string_view header, std::string_view payload) {
  return auth::base64url_encode(header) + '.' + auth::base64url_encode(payload);
}

// A token with exactly this header and payload JSON, signed by `key`.
inline std::string token(const TestKey& key, std::string_view header, std::string_view payload) {
  const std::string input = signing_input(header, payload);
  return input + '.' + auth::base64url_encode(sign(key, input));
}

// The usual header for `key`: {"alg":"RS256"|"ES256","typ":"JWT","kid":...}.
inline std::string header_for(const TestKey& key) {
  boost::json::object header{{"alg", key.rsa ? "RS256" : "ES256"}, {"typ", "JWT"}};
  if (!key.kid.empty()) header["kid"] = key.kid;
  return boost::json::serialize(header);
}

inline std::string token(const TestKey& key, std::string_view payload) {
  return token(key, header_for(key), payload);
}

// HS256 with an arbitrary secret: the algorithm confusion attack keys it with a public key.
inline std::string hs256_token(std::string_view secret, std::string_view header,
                               std::string_view payload) {
  const std::string input = signing_input(header, payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  check(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
             &size) != nullptr,
        "HMAC");
  return input + '.' +
         auth::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), size));
}

// The public key in PEM, as a confused verifier would use it as an HMAC secret.
inline std::string public_pem(const TestKey& key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  check(bio && PEM_write_bio_PUBKEY(bio.get(), key.pkey.get()) == 1, "PEM_write_bio_PUBKEY");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

}  // namespace mesh::testing::oidc

namespace mesh::testing::oidc {

// A self-signed certificate for 127.0.0.1 (an IP subjectAltName) and its key, in PEM.
struct TestCertificate {
  std::string certificate_pem;
  std::string key_pem;
};

inline TestCertificate self_signed_for_loopback() {
  const TestKey key = ec_key("");
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  check(cert && X509_set_version(cert.get(), 2) == 1 &&
            ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600) != nullptr &&
            X509_set_pubkey(cert.get(), key.pkey.get()) == 1,
        "X509 fields");
  X509_NAME* name = X509_get_subject_name(cert.get());
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1,
                                   0) == 1 &&
            X509_set_issuer_name(cert.get(), name) == 1,
        "X509 name");
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert.get(), cert.get(), nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)> san(
      X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name, "IP:127.0.0.1"),
      X509_EXTENSION_free);
  check(san && X509_add_ext(cert.get(), san.get(), -1) == 1, "subjectAltName");
  check(X509_sign(cert.get(), key.pkey.get(), EVP_sha256()) > 0, "X509_sign");

  const auto pem = [](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    check(bio && write(bio.get()) == 1, "PEM write");
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
  };
  return {pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()); }), pem([&](BIO* bio) {
            return PEM_write_bio_PrivateKey(bio, key.pkey.get(), nullptr, nullptr, 0, nullptr,
                                            nullptr);
          })};
}

}  // namespace mesh::testing::oidc
