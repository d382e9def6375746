#include "mesh/pg/error.hpp"

namespace mesh::pg {

Error::Error(std::string_view sqlstate, const std::string& message)
    : std::runtime_error(message + " [sqlstate " + std::string(sqlstate) + "]"),
      sqlstate_(sqlstate),
      message_(message) {}

}  // namespace mesh::pg
