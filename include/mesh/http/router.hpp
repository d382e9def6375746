#pragma once
// Routes requests by method and path pattern ("/v1/tasks/{id}") to coroutine handlers.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/core/asio.hpp"
#include "mesh/http/message.hpp"

namespace mesh::http {

using Handler = std::function<Task<Response>(Request&)>;
// The rest of the chain after a middleware: later middlewares, then routing and the handler.
using Next = std::function<Task<Response>(Request&)>;
// A step in front of routing that sees every request, matched or not (CORS, rate limits,
// authentication): it answers by itself or calls `next` and may adjust what comes back.
using Middleware = std::function<Task<Response>(Request&, const Next& next)>;

class Router {
 public:
  // Registers `handler` for `method` on `pattern`: literal segments and {name} parameters
  // matching one non-empty segment. Throws std::invalid_argument on a malformed or duplicate
  // route.
  void add(std::string method, std::string pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;  // null when nothing matched
    std::string_view pattern;          // the route pattern, for metrics labels
    std::vector<std::pair<std::string, std::string>> params;
    std::string allow;  // for 405: the methods the path does accept
  };
  // HEAD falls back to GET routes.
  Match match(std::string_view method, std::string_view path) const;

  // Adds a middleware; they run in the order added, before routing.
  void use(Middleware middleware);
  const std::vector<Middleware>& middlewares() const { return middlewares_; }

  // Every registered (method, pattern), in registration order.
  std::vector<std::pair<std::string, std::string>> routes() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{name}" marks a parameter
    Handler handler;
  };
  static bool matches(const Route& route, const std::vector<std::string_view>& segments,
                      std::vector<std::pair<std::string, std::string>>* params);
  std::vector<Route> routes_;
  std::vector<Middleware> middlewares_;
};

// Splits "/a/b/c" into {"a","b","c"}; an empty path or "/" gives no segments.
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace mesh::http
