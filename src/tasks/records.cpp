#include "mesh/tasks/records.hpp"

#include <limits>
#include <utility>

#include <boost/json/object.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "object_reader.hpp"

namespace mesh::tasks {

namespace json = boost::json;

namespace {

constexpr std::int64_t kMaxInt64 = std::numeric_limits<std::int64_t>::max();

std::variant<json::value, DecodeError> parse_record(std::string_view text) {
  if (text.size() > kMaxRecordBytes) {
    return DecodeError{"record of " + std::to_string(text.size()) + " bytes exceeds " +
                       std::to_string(kMaxRecordBytes)};
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  json::parser parser(json::storage_ptr(), options);
  boost::system::error_code ec;
  const std::size_t consumed = parser.write(text.data(), text.size(), ec);
  if (ec) {
    return DecodeError{"invalid JSON at byte " + std::to_string(consumed) + ": " + ec.message()};
  }
  return parser.release();
}

DecodeError to_decode_error(const ValidationError& error) {
  if (error.field.empty()) {
    return DecodeError{"record " + error.detail};
  }
  return DecodeError{error.field + ": " + error.detail};
}

// The members both records start with.
void read_identity(detail::ObjectReader& reader, std::string& id, std::string& user_id) {
  const json::string* id_text = reader.string("id", 1, kMaxRecordBytes);
  if (id_text && !core::is_uuid(*id_text)) {
    reader.fail("id", "must be a canonical UUID (8-4-4-4-12 lowercase hex)");
  }
  const json::string* user_text = reader.string("user_id", 1, kMaxRecordBytes);
  if (reader.ok()) {
    id = *id_text;
    user_id = *user_text;
  }
}

}  // namespace

std::string_view to_string(TaskStatus status) {
  switch (status) {
    case TaskStatus::queued:
      return "queued";
    case TaskStatus::running:
      return "running";
    case TaskStatus::succeeded:
      return "succeeded";
    case TaskStatus::failed:
      return "failed";
  }
  return "unknown";
}

std::optional<TaskStatus> parse_task_status(std::string_view name) {
  for (const TaskStatus status :
       {TaskStatus::queued, TaskStatus::running, TaskStatus::succeeded, TaskStatus::failed}) {
    if (to_string(status) == name) {
      return status;
    }
  }
  return std::nullopt;
}

int status_rank(TaskStatus status) {
  switch (status) {
    case TaskStatus::queued:
      return 0;
    case TaskStatus::running:
      return 1;
    case TaskStatus::succeeded:
    case TaskStatus::failed:
      return 2;
  }
  return 0;
}

std::string encode(const PendingTask& task) {
  json::object record;
  record.emplace("id", task.id);
  record.emplace("user_id", task.user_id);
  record.emplace("type", to_string(task.type));
  record.emplace("payload", task.payload);
  record.emplace("created_at_ms", task.created_at_ms);
  record.emplace("profile_id", task.profile_id);
  return json::serialize(record);
}

std::string encode(const CompletedTask& task) {
  json::object record;
  record.emplace("id", task.id);
  record.emplace("user_id", task.user_id);
  record.emplace("status", to_string(task.status));
  record.emplace("result", task.result);
  record.emplace("error", task.error);
  record.emplace("attempts", task.attempts);
  record.emplace("started_at_ms", task.started_at_ms);
  record.emplace("finished_at_ms", task.finished_at_ms);
  record.emplace("profile_id", task.profile_id);
  return json::serialize(record);
}

Decoded<PendingTask> decode_pending(std::string_view text) {
  auto parsed = parse_record(text);
  if (auto* error = std::get_if<DecodeError>(&parsed)) {
    return std::move(*error);
  }
  json::value& root = std::get<json::value>(parsed);
  detail::ObjectReader reader(root, "");
  PendingTask task;
  read_identity(reader, task.id, task.user_id);
  const json::string* type_name = reader.string("type", 1, kMaxRecordBytes);
  const json::value* payload = reader.required("payload");
  const std::optional<std::int64_t> created_at_ms = reader.integer("created_at_ms", 0, kMaxInt64);
  const json::string* profile_id = reader.string("profile_id", 0, kMaxRecordBytes);
  std::optional<TaskType> type;
  if (reader.ok()) {
    type = parse_task_type(*type_name);
    if (!type) {
      reader.fail("type", "is not a known task type");
    }
  }
  if (!reader.ok()) {
    return to_decode_error(*reader.error());
  }
  if (const auto error = validate_payload(*type, *payload)) {
    return to_decode_error(*error);
  }
  task.type = *type;
  task.created_at_ms = *created_at_ms;
  task.profile_id = *profile_id;
  task.payload = std::move(root.get_object()["payload"]);
  return task;
}

Decoded<CompletedTask> decode_completed(std::string_view text) {
  auto parsed = parse_record(text);
  if (auto* error = std::get_if<DecodeError>(&parsed)) {
    return std::move(*error);
  }
  json::value& root = std::get<json::value>(parsed);
  detail::ObjectReader reader(root, "");
  CompletedTask task;
  read_identity(reader, task.id, task.user_id);
  const json::string* status_name = reader.string("status", 1, kMaxRecordBytes);
  const json::value* result = reader.required("result");
  const json::string* error = reader.string("error", 0, kMaxRecordBytes);
  const std::optional<std::int64_t> attempts =
      reader.integer("attempts", 1, std::numeric_limits<int>::max());
  const std::optional<std::int64_t> started_at_ms = reader.integer("started_at_ms", 0, kMaxInt64);
  const std::optional<std::int64_t> finished_at_ms = reader.integer("finished_at_ms", 0, kMaxInt64);
  // Optional: records of workers older than profiles have none.
  const json::string* profile_id = nullptr;
  if (reader.ok() && root.get_object().contains("profile_id")) {
    profile_id = reader.string("profile_id", 0, kMaxRecordBytes);
  }
  std::optional<TaskStatus> status;
  if (reader.ok()) {
    status = parse_task_status(*status_name);
    if (status != TaskStatus::succeeded && status != TaskStatus::failed) {
      reader.fail("status", "must be succeeded or failed");
    } else if (status == TaskStatus::failed && !result->is_null()) {
      reader.fail("result", "must be null when status is failed");
    } else if (status == TaskStatus::failed && error->empty()) {
      reader.fail("error", "must not be empty when status is failed");
    } else if (status == TaskStatus::succeeded && !error->empty()) {
      reader.fail("error", "must be empty when status is succeeded");
    }
  }
  if (!reader.ok()) {
    return to_decode_error(*reader.error());
  }
  task.status = *status;
  task.error = *error;
  task.attempts = static_cast<int>(*attempts);
  task.started_at_ms = *started_at_ms;
  task.finished_at_ms = *finished_at_ms;
  if (profile_id) task.profile_id = *profile_id;
  task.result = std::move(root.get_object()["result"]);
  return task;
}

}  // namespace mesh::tasks
