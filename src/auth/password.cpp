#include "mesh/auth/password.hpp"

#include <array>
#include <optional>
#include <stdexcept>

#include <sodium.h>

#include "sodium_init.hpp"

namespace mesh::auth {
namespace {

using EncodedHash = std::array<char, crypto_pwhash_STRBYTES>;

// libsodium reads encoded hashes as C strings; an embedded NUL would make it check a prefix.
std::optional<EncodedHash> to_c_string(std::string_view stored_hash) {
  if (stored_hash.size() >= crypto_pwhash_STRBYTES ||
      stored_hash.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  EncodedHash encoded{};
  stored_hash.copy(encoded.data(), stored_hash.size());
  return encoded;
}

}  // namespace

std::string hash_password(std::string_view password, const PasswordParams& params) {
  detail::init_sodium();
  EncodedHash encoded{};
  if (crypto_pwhash_str_alg(encoded.data(), password.data(), password.size(), params.ops_limit,
                            params.mem_limit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("auth: argon2id hashing failed (ops_limit " +
                             std::to_string(params.ops_limit) + ", mem_limit " +
                             std::to_string(params.mem_limit) + ")");
  }
  return encoded.data();
}

bool verify_password(std::string_view stored_hash, std::string_view password) {
  detail::init_sodium();
  const auto encoded = to_c_string(stored_hash);
  return encoded &&
         crypto_pwhash_str_verify(encoded->data(), password.data(), password.size()) == 0;
}

bool needs_rehash(std::string_view stored_hash, const PasswordParams& params) {
  detail::init_sodium();
  const auto encoded = to_c_string(stored_hash);
  // Nonzero covers both answers we must act on: other parameters (1) and unparsable (-1).
  return !encoded || crypto_pwhash_argon2id_str_needs_rehash(encoded->data(), params.ops_limit,
                                                             params.mem_limit) != 0;
}

}  // namespace mesh::auth
