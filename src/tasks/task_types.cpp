#include "mesh/tasks/task_types.hpp"

#include <cmath>
#include <stdexcept>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "object_reader.hpp"

namespace mesh::tasks {

namespace json = boost::json;

namespace {

constexpr std::string_view kPayloadPointer = "/payload";

struct Sha256Args {
  std::string_view data;
  std::uint32_t rounds = 0;
};
struct PrimesArgs {
  std::uint32_t below = 0;
};
struct SleepArgs {
  std::int64_t ms = 0;
};

// Validation and reading the arguments are one step, so execute() never uses a field that
// validate_payload() did not check.
std::optional<ValidationError> read(const json::value& payload, Sha256Args& args) {
  detail::ObjectReader reader(payload, std::string(kPayloadPointer));
  const json::string* data = reader.string("data", 0, kMaxShaDataBytes);
  const std::optional<std::int64_t> rounds = reader.integer("rounds", 1, kMaxShaRounds);
  reader.reject_unknown();
  if (reader.ok()) {
    args = {*data, static_cast<std::uint32_t>(*rounds)};
  }
  return reader.error();
}

std::optional<ValidationError> read(const json::value& payload, PrimesArgs& args) {
  detail::ObjectReader reader(payload, std::string(kPayloadPointer));
  const std::optional<std::int64_t> below = reader.integer("below", 2, kMaxPrimesBelow);
  reader.reject_unknown();
  if (reader.ok()) {
    args.below = static_cast<std::uint32_t>(*below);
  }
  return reader.error();
}

std::optional<ValidationError> read(const json::value& payload, SleepArgs& args) {
  detail::ObjectReader reader(payload, std::string(kPayloadPointer));
  const std::optional<std::int64_t> ms = reader.integer("ms", 0, kMaxSleepMs);
  reader.reject_unknown();
  if (reader.ok()) {
    args.ms = *ms;
  }
  return reader.error();
}

// `pointer` grows and shrinks with the walk so an error names the exact spot. Recursion depth is
// bounded by kMaxPayloadDepth, checked before descending.
std::optional<ValidationError> check_storable(const json::value& value, std::string& pointer,
                                              std::size_t depth) {
  if (const double* number = value.if_double(); number && !std::isfinite(*number)) {
    return ValidationError{pointer, "must be a finite number"};
  }
  // Postgres cannot store U+0000 in jsonb: refuse it here rather than lose the task later.
  if (const json::string* text = value.if_string();
      text && text->find('\0') != json::string::npos) {
    return ValidationError{pointer, "must not contain U+0000"};
  }
  if (!value.is_structured()) {
    return std::nullopt;
  }
  if (depth > kMaxPayloadDepth) {
    return ValidationError{pointer,
                           "nests deeper than " + std::to_string(kMaxPayloadDepth) + " levels"};
  }
  const std::size_t length = pointer.size();
  if (const json::array* array = value.if_array()) {
    for (std::size_t i = 0; i < array->size(); ++i) {
      detail::append_pointer_token(pointer, std::to_string(i));
      if (auto error = check_storable((*array)[i], pointer, depth + 1)) {
        return error;
      }
      pointer.resize(length);
    }
  } else {
    for (const auto& member : value.get_object()) {
      detail::append_pointer_token(pointer, member.key());
      if (member.key().find('\0') != std::string_view::npos) {
        return ValidationError{pointer, "key must not contain U+0000"};
      }
      if (auto error = check_storable(member.value(), pointer, depth + 1)) {
        return error;
      }
      pointer.resize(length);
    }
  }
  return std::nullopt;
}

[[noreturn]] void throw_invalid_payload(const ValidationError& error) {
  throw std::invalid_argument("invalid payload: " + error.field + " " + error.detail);
}

template <class Args>
Args read_or_throw(const json::value& payload) {
  Args args;
  if (const auto error = read(payload, args)) {
    throw_invalid_payload(*error);
  }
  return args;
}

}  // namespace

std::optional<TaskType> parse_task_type(std::string_view name) {
  for (const TaskType type : kAllTaskTypes) {
    if (to_string(type) == name) {
      return type;
    }
  }
  return std::nullopt;
}

std::string_view to_string(TaskType type) {
  switch (type) {
    case TaskType::echo:
      return "echo";
    case TaskType::sha256:
      return "sha256";
    case TaskType::primes:
      return "primes";
    case TaskType::sleep:
      return "sleep";
  }
  return "unknown";
}

bool is_cpu_bound(TaskType type) { return type == TaskType::sha256 || type == TaskType::primes; }

std::optional<ValidationError> validate_payload(TaskType type, const json::value& payload) {
  std::optional<ValidationError> error;
  switch (type) {
    case TaskType::echo:
      break;
    case TaskType::sha256: {
      Sha256Args args;
      error = read(payload, args);
      break;
    }
    case TaskType::primes: {
      PrimesArgs args;
      error = read(payload, args);
      break;
    }
    case TaskType::sleep: {
      SleepArgs args;
      error = read(payload, args);
      break;
    }
  }
  if (error) {
    return error;
  }
  // Every payload is stored as jsonb: finite numbers, bounded depth, no U+0000.
  std::string pointer(kPayloadPointer);
  return check_storable(payload, pointer, 1);
}

json::value execute(TaskType type, const json::value& payload) {
  switch (type) {
    case TaskType::echo:
      if (const auto error = validate_payload(type, payload)) {
        throw_invalid_payload(*error);
      }
      return payload;
    case TaskType::sha256: {
      const auto args = read_or_throw<Sha256Args>(payload);
      return json::object{{"hex", to_hex(sha256_rounds(args.data, args.rounds))}};
    }
    case TaskType::primes: {
      const auto args = read_or_throw<PrimesArgs>(payload);
      return json::object{{"count", std::int64_t{count_primes_below(args.below)}}};
    }
    case TaskType::sleep: {
      const auto args = read_or_throw<SleepArgs>(payload);
      return json::object{{"slept_ms", args.ms}};
    }
  }
  throw std::invalid_argument("execute: unknown task type");
}

std::optional<std::chrono::milliseconds> sleep_duration(TaskType type, const json::value& payload) {
  if (type != TaskType::sleep) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(read_or_throw<SleepArgs>(payload).ms);
}

}  // namespace mesh::tasks
