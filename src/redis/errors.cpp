#include <string>

#include "mesh/redis/client.hpp"

namespace mesh::redis {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "mesh.redis"; }

  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::not_connected:
        return "not connected to Redis";
      case Errc::timeout:
        return "Redis command timed out";
      case Errc::connection_lost:
        return "Redis connection lost before the reply";
      case Errc::too_many_pending:
        return "too many Redis commands in flight";
      case Errc::invalid_command:
        return "command not allowed on a shared Redis connection";
    }
    return "unknown Redis error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

error_code make_error_code(Errc e) noexcept {
  return error_code(static_cast<int>(e), error_category());
}

}  // namespace mesh::redis
