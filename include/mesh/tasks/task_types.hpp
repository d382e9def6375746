#pragma once
// The task types a worker can run, their payload rules and their results. Pure functions with no
// I/O, shared by the gateway (which validates) and the worker (which executes), so both sides
// agree on exactly one definition of a valid task.
//
//   echo    payload: any JSON value          result: the payload
//   sha256  {"data": string, "rounds": int}  result: {"hex": lowercase hex of the last digest}
//           h1 = SHA-256(data), h(n+1) = SHA-256(32 raw bytes of h(n))
//   primes  {"below": int}                   result: {"count": number of primes p < below}
//   sleep   {"ms": int}                      result: {"slept_ms": ms}
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

namespace mesh::tasks {

enum class TaskType { echo, sha256, primes, sleep };

inline constexpr std::array kAllTaskTypes = {TaskType::echo, TaskType::sha256, TaskType::primes,
                                             TaskType::sleep};

inline constexpr std::size_t kMaxShaDataBytes = 65536;
inline constexpr std::int64_t kMaxShaRounds = 10'000'000;
inline constexpr std::int64_t kMaxPrimesBelow = 100'000'000;
inline constexpr std::int64_t kMaxSleepMs = 60'000;
// Boost.JSON's default parse depth: one more level than a payload may have, so any valid payload
// still parses once it is wrapped in a request body or a Kafka record.
inline constexpr std::size_t kMaxJsonDepth = 32;
inline constexpr std::size_t kMaxPayloadDepth = kMaxJsonDepth - 1;

// The wire name ("echo", "sha256", ...); nullopt for anything else, matched case-sensitively.
std::optional<TaskType> parse_task_type(std::string_view name);
std::string_view to_string(TaskType type);

// Whether execute() burns a CPU slot: those types belong on a bounded worker pool, the others
// finish at once (echo) or wait on a timer (sleep).
bool is_cpu_bound(TaskType type);

struct ValidationError {
  std::string field;  // JSON pointer into the request body or record, e.g. "/payload/rounds"
  std::string detail;
};

// Strict: every required field present with the right JSON type, integers only as integer
// literals within range (1.5, 1e3, true, "7", 1e400 and 99999999999999999999999 all fail),
// no unknown fields. echo accepts any value but rejects non-finite numbers, which have no JSON
// text, and nesting deeper than kMaxPayloadDepth (the payload itself is level 1).
std::optional<ValidationError> validate_payload(TaskType type, const boost::json::value& payload);

// The result of a task. Precondition: validate_payload(type, payload) passes; throws
// std::invalid_argument otherwise, because a worker must never guess at a payload. For sleep it
// only builds the result: the caller waits sleep_duration() on a timer first.
boost::json::value execute(TaskType type, const boost::json::value& payload);

// How long a sleep task waits; nullopt for every other type. Same precondition as execute().
std::optional<std::chrono::milliseconds> sleep_duration(TaskType type,
                                                        const boost::json::value& payload);

// The computations behind execute(), exposed for tests and benchmarks.
// Precondition: rounds >= 1.
std::array<std::uint8_t, 32> sha256_rounds(std::string_view data, std::uint32_t rounds);
// Segmented sieve over odd numbers: memory stays around 40 KiB whatever `below` is.
std::uint32_t count_primes_below(std::uint32_t below);
std::string to_hex(const std::array<std::uint8_t, 32>& digest);

}  // namespace mesh::tasks
