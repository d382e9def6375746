#pragma once
// Password hashing with argon2id. Every function here costs tens of milliseconds of CPU and
// megabytes of memory by design: call them from a thread pool, never from an I/O thread.
#include <cstddef>
#include <string>
#include <string_view>

namespace mesh::auth {

// OWASP's argon2id minimum: 19 MiB of memory, two passes.
struct PasswordParams {
  unsigned long long ops_limit = 2;
  std::size_t mem_limit = 19 * 1024 * 1024;
};

// An encoded "$argon2id$v=19$m=...,t=...,p=1$salt$hash" string with a fresh random salt.
// Throws std::runtime_error when the parameters are out of range or memory runs out.
std::string hash_password(std::string_view password, const PasswordParams& params = {});

// False for a wrong password and for anything that is not an encoded argon2 hash.
bool verify_password(std::string_view stored_hash, std::string_view password);

// True when `stored_hash` was not made by argon2id with exactly `params` (or is malformed), so
// the caller should replace it with hash_password() after the next successful verify.
bool needs_rehash(std::string_view stored_hash, const PasswordParams& params);

}  // namespace mesh::auth
