#pragma once
// A blocking HTTP/1.1 client and a raw-bytes exchange for tests, plus a thread that runs an
// io_context in the background while the test thread acts as the client.
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/value.hpp>

namespace mesh::testing {

struct HttpReply {
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  std::string body;

  std::optional<std::string> header(std::string_view name) const;
  boost::json::value json() const;  // throws if the body is not JSON
};

struct HttpCall {
  std::string method = "GET";
  std::string target = "/";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{10'000};
};

// One request on a fresh connection to 127.0.0.1:port. Throws on transport errors.
HttpReply http(unsigned short port, const HttpCall& call);

// Convenience: JSON body with Content-Type and an optional bearer token.
HttpReply http_json(unsigned short port, std::string method, std::string target,
                    const std::string& body, const std::string& token = {},
                    std::vector<std::pair<std::string, std::string>> headers = {});

// Writes `bytes` to 127.0.0.1:port and returns everything read until the server closes the
// connection or `timeout` passes (then `timed_out` is set). With `close_send`, the sending side
// is shut down after the write, so the server sees end of stream.
struct RawReply {
  std::string bytes;
  bool timed_out = false;
};
RawReply raw_exchange(unsigned short port, const std::string& bytes,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10),
                      bool close_send = false);

// Runs an io_context on a background thread until destroyed.
class IoThread {
 public:
  explicit IoThread(unsigned threads = 1);
  ~IoThread();
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

}  // namespace mesh::testing
