#pragma once
// Runs CPU-heavy work (password hashing, task execution) on a thread pool so io threads stay
// responsive, and resumes the awaiting coroutine on its own executor.
#include <type_traits>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/asio.hpp"

namespace mesh::core {

// GCC 12 destroys a lambda temporary with non-trivial captures twice when it appears inside a
// co_await expression. So callers name their lambda and move it in, and the lambda below is
// named before the co_await too.
template <class F>
Task<std::invoke_result_t<F&>> offload(asio::thread_pool& pool, F fn) {
  using Result = std::invoke_result_t<F&>;
  auto job = [work = std::move(fn)]() mutable -> Task<Result> { co_return work(); };
  // co_spawn keeps the callable alive until it finishes and completes on the caller's
  // executor; an exception thrown by `fn` is rethrown here.
  co_return co_await asio::co_spawn(pool, std::move(job), asio::use_awaitable);
}

}  // namespace mesh::core
