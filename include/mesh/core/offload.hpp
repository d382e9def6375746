#pragma once
// Runs CPU-heavy work (password hashing, task execution) on a thread pool so io threads stay
// responsive, and resumes the awaiting coroutine on its own executor.
#include <exception>
#include <type_traits>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mesh/core/asio.hpp"

namespace mesh::core {

template <class F>
Task<std::invoke_result_t<F>> offload(asio::thread_pool& pool, F fn) {
  using R = std::invoke_result_t<F>;
  static_assert(std::is_default_constructible_v<R>, "offload needs a default-constructible result");
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                          void(std::exception_ptr, R)>(
      [&pool](auto handler, F work) {
        asio::post(pool, [handler = std::move(handler), work = std::move(work)]() mutable {
          std::exception_ptr error;
          R result{};
          try {
            result = work();
          } catch (...) {
            error = std::current_exception();
          }
          auto executor = asio::get_associated_executor(handler);
          asio::dispatch(executor, [handler = std::move(handler), error,
                                    result = std::move(result)]() mutable {
            std::move(handler)(error, std::move(result));
          });
        });
      },
      asio::use_awaitable, std::move(fn));
}

}  // namespace mesh::core
