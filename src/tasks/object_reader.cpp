#include "object_reader.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace mesh::tasks::detail {

namespace json = boost::json;

namespace {

std::string range_detail(std::int64_t min, std::int64_t max) {
  return "must be an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

// 2^63: any double this large came from an integer literal too big for int64, so the helpful
// answer is the range, not "no fraction or exponent".
constexpr double kInt64Bound = 9223372036854775808.0;

}  // namespace

void append_pointer_token(std::string& pointer, std::string_view key) {
  pointer += '/';
  for (const char c : key) {
    if (c == '~') {
      pointer += "~0";
    } else if (c == '/') {
      pointer += "~1";
    } else {
      pointer += c;
    }
  }
}

ObjectReader::ObjectReader(const json::value& value, std::string pointer)
    : object_(value.if_object()), pointer_(std::move(pointer)) {
  if (!object_) {
    error_ = ValidationError{pointer_, "must be an object"};
  }
}

const json::value* ObjectReader::required(std::string_view key) {
  known_.push_back(key);
  if (!ok()) {
    return nullptr;
  }
  const json::value* value = object_->if_contains(key);
  if (!value) {
    fail(key, "is required");
  }
  return value;
}

std::optional<std::int64_t> ObjectReader::integer(std::string_view key, std::int64_t min,
                                                  std::int64_t max) {
  const json::value* value = required(key);
  if (!value) {
    return std::nullopt;
  }
  if (const std::int64_t* number = value->if_int64()) {
    if (*number >= min && *number <= max) {
      return *number;
    }
    fail(key, range_detail(min, max));
  } else if (value->is_uint64()) {
    // Boost.JSON only uses uint64 for literals above INT64_MAX.
    fail(key, range_detail(min, max));
  } else if (const double* number = value->if_double()) {
    if (!std::isfinite(*number) || std::fabs(*number) >= kInt64Bound) {
      fail(key, range_detail(min, max));
    } else {
      fail(key, "must be an integer literal, without fraction or exponent");
    }
  } else {
    fail(key, "must be an integer");
  }
  return std::nullopt;
}

const json::string* ObjectReader::string(std::string_view key, std::size_t min_bytes,
                                         std::size_t max_bytes) {
  const json::value* value = required(key);
  if (!value) {
    return nullptr;
  }
  const json::string* text = value->if_string();
  if (!text) {
    fail(key, "must be a string");
    return nullptr;
  }
  if (text->size() < min_bytes) {
    fail(key, min_bytes == 1 ? std::string("must not be empty")
                             : "must be at least " + std::to_string(min_bytes) + " bytes");
    return nullptr;
  }
  if (text->size() > max_bytes) {
    fail(key, "must be at most " + std::to_string(max_bytes) + " bytes");
    return nullptr;
  }
  return text;
}

void ObjectReader::fail(std::string_view key, std::string detail) {
  if (!ok()) {
    return;
  }
  std::string field = pointer_;
  append_pointer_token(field, key);
  error_ = ValidationError{std::move(field), std::move(detail)};
}

void ObjectReader::reject_unknown() {
  if (!ok()) {
    return;
  }
  for (const auto& member : *object_) {
    if (std::find(known_.begin(), known_.end(), std::string_view(member.key())) == known_.end()) {
      fail(member.key(), "is not a known field");
      return;
    }
  }
}

}  // namespace mesh::tasks::detail
