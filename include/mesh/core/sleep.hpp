#pragma once
// A timer wait for coroutines: backoff between retries, simulated work.
#include <chrono>

#include "mesh/core/asio.hpp"

namespace mesh::core {

// Suspends the calling coroutine for `duration` on its own executor.
Task<void> sleep_for(std::chrono::milliseconds duration);

}  // namespace mesh::core
