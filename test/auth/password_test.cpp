#include "mesh/auth/password.hpp"

#include <array>
#include <stdexcept>
#include <string>

#include <sodium.h>
#include <catch2/catch.hpp>

using namespace mesh::auth;

namespace {

// The cheapest parameters libsodium allows, so the tests stay fast; the algorithm is the same.
const PasswordParams kFast{crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};

}  // namespace

TEST_CASE("a hashed password verifies and a wrong one does not") {
  const std::string hash = hash_password("correct horse battery staple", kFast);
  CHECK(verify_password(hash, "correct horse battery staple"));
  CHECK_FALSE(verify_password(hash, "correct horse battery stapl"));
  CHECK_FALSE(verify_password(hash, "Correct horse battery staple"));
  CHECK_FALSE(verify_password(hash, ""));
}

TEST_CASE("hashes are argon2id with the requested parameters") {
  const std::string hash = hash_password("secret", kFast);
  CHECK(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
}

TEST_CASE("the default parameters are OWASP's argon2id m=19 MiB, t=2") {
  const std::string hash = hash_password("secret");
  CHECK(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
  CHECK(verify_password(hash, "secret"));
  CHECK_FALSE(needs_rehash(hash, PasswordParams{}));
}

TEST_CASE("two hashes of one password differ because each has its own salt") {
  const std::string first = hash_password("secret", kFast);
  const std::string second = hash_password("secret", kFast);
  CHECK(first != second);
  CHECK(verify_password(first, "secret"));
  CHECK(verify_password(second, "secret"));
}

TEST_CASE("passwords are compared byte for byte, embedded NULs included") {
  const std::string password("pass\0word", 9);
  const std::string hash = hash_password(password, kFast);
  CHECK(verify_password(hash, password));
  CHECK_FALSE(verify_password(hash, "pass"));
  CHECK(verify_password(hash_password("", kFast), ""));
}

TEST_CASE("malformed stored hashes never verify") {
  const std::string hash = hash_password("secret", kFast);
  CHECK_FALSE(verify_password("", "secret"));
  CHECK_FALSE(verify_password("secret", "secret"));
  CHECK_FALSE(verify_password("$argon2id$", "secret"));
  CHECK_FALSE(verify_password(hash.substr(0, hash.size() - 4), "secret"));
  CHECK_FALSE(verify_password(hash + std::string(200, 'A'), "secret"));
  CHECK_FALSE(verify_password(hash + std::string(1, '\0') + "junk", "secret"));
  CHECK_FALSE(verify_password(std::string(1000, '$'), "secret"));
}

TEST_CASE("needs_rehash flags other parameters and unparsable hashes") {
  const std::string hash = hash_password("secret", kFast);
  CHECK_FALSE(needs_rehash(hash, kFast));
  CHECK(needs_rehash(hash, PasswordParams{}));
  CHECK(needs_rehash(hash, PasswordParams{kFast.ops_limit + 1, kFast.mem_limit}));
  CHECK(needs_rehash("", kFast));
  CHECK(needs_rehash("not a hash", kFast));
}

TEST_CASE("hashing with parameters below libsodium's minimum throws") {
  CHECK_THROWS_AS(hash_password("secret", PasswordParams{0, crypto_pwhash_MEMLIMIT_MIN}),
                  std::runtime_error);
  CHECK_THROWS_AS(hash_password("secret", PasswordParams{crypto_pwhash_OPSLIMIT_MIN, 1024}),
                  std::runtime_error);
}

TEST_CASE("an older argon2i hash still verifies but asks to be replaced") {
  std::array<char, crypto_pwhash_STRBYTES> encoded{};
  REQUIRE(crypto_pwhash_str_alg(encoded.data(), "secret", 6, crypto_pwhash_argon2i_OPSLIMIT_MIN,
                                crypto_pwhash_argon2i_MEMLIMIT_MIN,
                                crypto_pwhash_ALG_ARGON2I13) == 0);
  const std::string hash = encoded.data();
  REQUIRE(hash.starts_with("$argon2i$"));
  CHECK(verify_password(hash, "secret"));
  CHECK(needs_rehash(hash, PasswordParams{crypto_pwhash_argon2i_OPSLIMIT_MIN,
                                          crypto_pwhash_argon2i_MEMLIMIT_MIN}));
}
