#pragma once
// Shared vocabulary for asynchronous code: every module writes coroutines as Task<T>.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

namespace mesh {
namespace asio = boost::asio;
using boost::system::error_code;

template <class T = void>
using Task = asio::awaitable<T>;
}  // namespace mesh
