#pragma once
#include <stdexcept>

#include <sodium.h>

namespace mesh::auth::detail {

// libsodium must be initialized before its first use; a function-local static makes the
// one call thread-safe however many threads hash passwords or verify tokens first.
inline void init_sodium() {
  static const bool initialized = sodium_init() >= 0;
  if (!initialized) throw std::runtime_error("auth: libsodium failed to initialize");
}

}  // namespace mesh::auth::detail
