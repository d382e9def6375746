#pragma once
// Strict reading of one JSON object, shared by payload validation and record decoding so both
// report problems the same way: a JSON pointer and what was expected there.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include "mesh/tasks/task_types.hpp"

namespace mesh::tasks::detail {

// Appends "/key" to a JSON pointer, escaping '~' and '/' as RFC 6901 requires.
void append_pointer_token(std::string& pointer, std::string_view key);

// Keeps only the first problem, so a caller reads every field top to bottom and checks once.
// Once a problem is recorded, every getter returns nothing. Keys must outlive the reader.
class ObjectReader {
 public:
  ObjectReader(const boost::json::value& value, std::string pointer);

  const boost::json::value* required(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  const boost::json::string* string(std::string_view key, std::size_t min_bytes,
                                    std::size_t max_bytes);

  // Records `detail` for `key` unless a problem is already recorded.
  void fail(std::string_view key, std::string detail);
  // Fails on the first member no getter asked for.
  void reject_unknown();

  bool ok() const { return !error_; }
  const std::optional<ValidationError>& error() const { return error_; }

 private:
  const boost::json::object* object_ = nullptr;
  std::string pointer_;
  std::vector<std::string_view> known_;
  std::optional<ValidationError> error_;
};

}  // namespace mesh::tasks::detail
