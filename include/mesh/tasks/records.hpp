#pragma once
// The Kafka records of the task pipeline, as JSON text:
//
//   tasks.pending    {"id","user_id","type","payload","created_at_ms","profile_id"}
//   tasks.completed  {"id","user_id","status","result","error","attempts","started_at_ms",
//                     "finished_at_ms","profile_id"}  (profile_id optional: "" when absent)
//
// Decoders never throw on bad input: a consumer that meets a poison record gets a DecodeError
// with a reason to log and skips it. Unknown top-level members are ignored rather than rejected,
// so a producer can add a field before every consumer has been upgraded.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/value.hpp>

#include "mesh/tasks/task_types.hpp"

namespace mesh::tasks {

inline constexpr std::size_t kMaxRecordBytes = 1024 * 1024;

enum class TaskStatus { queued, running, succeeded, failed };

std::string_view to_string(TaskStatus status);
std::optional<TaskStatus> parse_task_status(std::string_view name);
// queued 0, running 1, succeeded and failed 2: an update may only keep or raise the rank, so a
// late "running" never overwrites a final status.
int status_rank(TaskStatus status);

struct PendingTask {
  std::string id;       // canonical UUID: core::is_uuid
  std::string user_id;  // non-empty
  TaskType type = TaskType::echo;
  boost::json::value payload;      // passes validate_payload(type, payload)
  std::int64_t created_at_ms = 0;  // >= 0
  std::string profile_id;          // may be empty
};

struct CompletedTask {
  std::string id;                             // canonical UUID: core::is_uuid
  std::string user_id;                        // non-empty
  TaskStatus status = TaskStatus::succeeded;  // succeeded or failed only
  boost::json::value result;        // null if failed (and may be null on success: echo of null)
  std::string error;                // non-empty if failed, empty if succeeded
  int attempts = 1;                 // >= 1
  std::int64_t started_at_ms = 0;   // >= 0
  std::int64_t finished_at_ms = 0;  // >= 0; not checked against started_at_ms: clocks step back
  std::string profile_id;           // copied from the pending record; may be empty
};

struct DecodeError {
  // "<JSON pointer>: <problem>", "record must be an object", "record of N bytes exceeds ..." or
  // "invalid JSON at byte N: <parser message>".
  std::string reason;
};

template <class T>
using Decoded = std::variant<T, DecodeError>;

// Encoders do not check the field rules above: a record breaking them is one the decoder rejects,
// so build records only from validated input.
std::string encode(const PendingTask& task);
std::string encode(const CompletedTask& task);

// Rejects input over kMaxRecordBytes, invalid JSON or UTF-8, nesting deeper than kMaxJsonDepth,
// and any field missing, mistyped or breaking the rules above.
Decoded<PendingTask> decode_pending(std::string_view text);
Decoded<CompletedTask> decode_completed(std::string_view text);

}  // namespace mesh::tasks
