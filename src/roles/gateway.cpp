#include "mesh/roles/gateway.hpp"

#include <charconv>

#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/core/offload.hpp"
#include "mesh/kafka/error.hpp"
#include "mesh/pg/error.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/roles/json_body.hpp"
#include "mesh/roles/profiles.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/tasks/records.hpp"
#include "mesh/tasks/task_types.hpp"

namespace mesh::roles {
namespace json = boost::json;
using http::problem;
using http::Request;
using http::Response;

namespace {

constexpr std::string_view kTaskColumns =
    "id::text, type, status, payload::text, result::text, error, attempts, "
    "(extract(epoch from created_at) * 1000)::bigint, "
    "(extract(epoch from started_at) * 1000)::bigint, "
    "(extract(epoch from finished_at) * 1000)::bigint, profile_id::text";

bool valid_username(std::string_view name) {
  if (name.size() < 3 || name.size() > 64) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Code points of valid UTF-8 (Boost.JSON has already rejected invalid UTF-8).
std::size_t utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (const char c : text) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++count;
  }
  return count;
}

std::optional<std::string_view> string_field(const json::object& body, std::string_view name) {
  const auto* value = body.if_contains(name);
  if (value == nullptr || !value->is_string()) return std::nullopt;
  return std::string_view(value->as_string());
}

json::value timestamp_or_null(std::optional<std::string_view> ms_text) {
  if (!ms_text) return nullptr;
  std::int64_t ms = 0;
  std::from_chars(ms_text->data(), ms_text->data() + ms_text->size(), ms);
  return json::value(core::rfc3339_ms(ms));
}

json::value json_or_null(std::optional<std::string_view> text) {
  if (!text) return nullptr;
  return json::parse(*text);
}

json::object task_view(const pg::Result& rows, int row) {
  json::object task;
  task["id"] = rows.get(row, 0);
  const auto type = rows.get_optional(row, 1);
  task["type"] = type ? json::value(*type) : json::value(nullptr);
  task["status"] = rows.get(row, 2);
  task["payload"] = json_or_null(rows.get_optional(row, 3));
  task["result"] = json_or_null(rows.get_optional(row, 4));
  const auto error = rows.get_optional(row, 5);
  task["error"] = error ? json::value(*error) : json::value(nullptr);
  std::int64_t attempts = 0;
  const auto attempts_text = rows.get(row, 6);
  std::from_chars(attempts_text.data(), attempts_text.data() + attempts_text.size(), attempts);
  task["attempts"] = attempts;
  task["created_at"] = timestamp_or_null(rows.get_optional(row, 7));
  task["started_at"] = timestamp_or_null(rows.get_optional(row, 8));
  task["finished_at"] = timestamp_or_null(rows.get_optional(row, 9));
  const auto profile_id = rows.get_optional(row, 10);
  task["profile_id"] = profile_id ? json::value(*profile_id) : json::value(nullptr);
  return task;
}

Response unavailable(std::string_view detail) {
  auto response = problem(503, detail);
  response.set_header("Retry-After", "1");
  return response;
}

std::string pending_key(std::string_view id) { return "mesh:task:" + std::string(id); }

// An Idempotency-Key is remembered for a day; a claim whose request never finished (a crashed
// gateway) frees the key after a minute, longer than any Kafka acknowledgement wait.
constexpr int kIdempotencyTtlSeconds = 86400;
constexpr int kIdempotencyPendingTtlSeconds = 60;

// Argument lists are built outside coroutines: GCC 12 rejects a braced list whose backing
// array would live across a co_await ("array used as initializer").
template <class... Args>
std::vector<std::string> redis_args(Args&&... args) {
  return {std::string(std::forward<Args>(args))...};
}
// Kafka headers that let one request be followed through every role.
std::vector<kafka::Header> trace_headers(const Request& request) {
  return {kafka::Header{"request_id", request.request_id},
          kafka::Header{"traceparent", request.traceparent}};
}

}  // namespace

GatewayApi::GatewayApi(GatewayDeps deps)
    : deps_(deps),
      jwt_(deps.config.jwt_secret, deps.config.jwt_issuer, deps.config.jwt_ttl),
      password_params_{deps.config.password_ops_limit, deps.config.password_mem_kib * 1024},
      // Computed on the CPU pool so start-up does not wait for argon2.
      dummy_hash_(asio::post(deps.cpu, asio::use_future([params = password_params_] {
                               return auth::hash_password("not a real password", params);
                             }))),
      tasks_accepted_(prometheus::BuildCounter()
                          .Name("mesh_gateway_tasks_accepted_total")
                          .Help("Tasks acknowledged by Kafka and answered 202.")
                          .Register(deps.registry)
                          .Add({})),
      tasks_rejected_unavailable_(prometheus::BuildCounter()
                                      .Name("mesh_gateway_tasks_unavailable_total")
                                      .Help("Tasks answered 503 because Kafka did not acknowledge.")
                                      .Register(deps.registry)
                                      .Add({})),
      pending_cache_errors_(prometheus::BuildCounter()
                                .Name("mesh_gateway_pending_cache_errors_total")
                                .Help("Accepted tasks that could not be cached in Redis for "
                                      "read-your-writes.")
                                .Register(deps.registry)
                                .Add({})),
      profiles_(deps.config, deps.pg, deps.sessions, deps.registry) {}

void GatewayApi::add_routes(http::Router& router) {
  router.add("POST", "/v1/auth/register", [this](Request& r) { return register_user(r); });
  router.add("POST", "/v1/auth/login", [this](Request& r) { return login(r); });
  router.add("POST", "/v1/tasks", authenticated(&GatewayApi::submit_task));
  router.add("GET", "/v1/tasks", authenticated(&GatewayApi::list_tasks));
  router.add("GET", "/v1/tasks/{id}", authenticated(&GatewayApi::get_task));
  profiles_.add_routes(router);
}

http::Handler GatewayApi::authenticated(Task<Response> (GatewayApi::*handler)(Request&)) {
  return policy::require_user([this, handler](Request& request) -> Task<Response> {
    co_return co_await (this->*handler)(request);
  });
}

Task<Response> GatewayApi::register_user(Request& request) {
  auto body = read_json_object(request);
  if (auto* error = std::get_if<Response>(&body)) co_return std::move(*error);
  const auto& fields = std::get<json::object>(body);
  const auto username = string_field(fields, "username");
  const auto password = string_field(fields, "password");
  if (!username || !valid_username(*username)) {
    co_return invalid_field("/username", "3 to 64 characters of A-Z a-z 0-9 _ . -");
  }
  if (!password || utf8_length(*password) < 8 || utf8_length(*password) > 128) {
    co_return invalid_field("/password", "a string of 8 to 128 characters");
  }
  for (const auto& [key, value] : fields) {
    if (key != "username" && key != "password") {
      co_return invalid_field("/" + std::string(key), "unknown field");
    }
  }
  const std::string id = core::uuid_v7();
  const std::string name(*username);
  auto hash_job = [secret = std::string(*password), params = password_params_] {
    return auth::hash_password(secret, params);
  };
  const std::string hash = co_await core::offload(deps_.cpu, std::move(hash_job));
  bool taken = false;
  try {
    co_await deps_.pg.query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)",
                            pg::params(id, name, hash));
  } catch (const pg::Error& e) {
    if (e.sqlstate() != pg::sqlstate::kUniqueViolation) throw;
    taken = true;
  }
  if (taken) co_return problem(409, "username '" + name + "' is taken");
  co_return Response::json(201, json::object{{"id", id}, {"username", name}});
}

Task<Response> GatewayApi::login(Request& request) {
  auto body = read_json_object(request);
  if (auto* error = std::get_if<Response>(&body)) co_return std::move(*error);
  const auto& fields = std::get<json::object>(body);
  const auto username = string_field(fields, "username");
  const auto password = string_field(fields, "password");
  if (!username || !password) {
    co_return invalid_field(!username ? "/username" : "/password", "a string is required");
  }
  auto wrong_credentials = [] {
    auto response = problem(401, "wrong username or password");
    response.set_header("WWW-Authenticate", "Bearer realm=\"mesh\"");
    return response;
  };
  if (username->size() > 64 || password->size() > 4 * 128) co_return wrong_credentials();
  const auto rows = co_await deps_.pg.query(
      "SELECT id::text, username, password_hash, role FROM users WHERE lower(username) = lower($1)",
      pg::params(std::string(*username)));
  const bool found = rows.rows() == 1;
  std::string stored = found ? std::string(rows.get(0, 2)) : std::string();
  auto verify_job = [stored = std::move(stored), secret = std::string(*password),
                     dummy = dummy_hash_] {
    return auth::verify_password(stored.empty() ? dummy.get() : stored, secret);
  };
  const bool ok = co_await core::offload(deps_.cpu, std::move(verify_job));
  if (!found || !ok) co_return wrong_credentials();
  const auto token =
      jwt_.issue(rows.get(0, 0), rows.get(0, 1), rows.get(0, 3), std::chrono::system_clock::now());
  co_return Response::json(200, json::object{{"access_token", token},
                                             {"token_type", "Bearer"},
                                             {"expires_in", jwt_.ttl().count()}});
}

Task<Response> GatewayApi::submit_task(Request& request) {
  auto body = read_json_object(request);
  if (auto* error = std::get_if<Response>(&body)) co_return std::move(*error);
  auto& fields = std::get<json::object>(body);
  for (const auto& [key, value] : fields) {
    if (key != "type" && key != "payload" && key != "profile_id") {
      co_return invalid_field("/" + std::string(key), "unknown field");
    }
  }
  std::string profile_id;
  if (const auto* profile = fields.if_contains("profile_id"); profile && !profile->is_null()) {
    if (!profile->is_string() || !core::is_uuid(profile->as_string())) {
      co_return invalid_field("/profile_id", "a profile id (UUID) or null");
    }
    profile_id = std::string(profile->as_string());
  }
  const auto type_name = string_field(fields, "type");
  if (!type_name) co_return invalid_field("/type", "a string is required");
  const auto type = tasks::parse_task_type(*type_name);
  if (!type) co_return invalid_field("/type", "unknown task type: echo, sha256, primes or sleep");
  auto* payload = fields.if_contains("payload");
  if (payload == nullptr) co_return invalid_field("/payload", "required");
  if (auto invalid = tasks::validate_payload(*type, *payload)) {
    co_return invalid_field(invalid->field, invalid->detail);
  }

  const auto& user_id = request.principal->user_id;
  if (!profile_id.empty() && !co_await ProfilesApi::is_member(deps_.pg, profile_id, user_id)) {
    co_return problem(403, "only members of the profile may submit tasks under it");
  }
  std::string id = core::uuid_v7();
  std::string idempotency_redis_key;
  std::string fingerprint;
  if (const auto key = request.header("idempotency-key")) {
    const bool printable =
        std::all_of(key->begin(), key->end(), [](char c) { return c > 32 && c < 127; });
    if (key->empty() || key->size() > 255 || !printable) {
      co_return problem(400, "Idempotency-Key must be 1 to 255 printable ASCII characters");
    }
    fingerprint = tasks::to_hex(tasks::sha256_rounds(request.body, 1));
    idempotency_redis_key = "mesh:idem:" + user_id + ":" + std::string(*key);
    // The key is claimed as "pending <id> <fingerprint>" until Kafka acknowledges, then becomes
    // "<id> <fingerprint>": a replay is answered 202 only for a task that is really queued.
    auto claimed = co_await deps_.redis.command(
        redis_args("SET", idempotency_redis_key, "pending " + id + " " + fingerprint, "NX", "EX",
                   std::to_string(kIdempotencyPendingTtlSeconds)));
    if (!claimed.ok()) co_return unavailable("idempotency store unavailable; retry");
    if (claimed.reply.is_nil()) {
      auto existing = co_await deps_.redis.command(redis_args("GET", idempotency_redis_key));
      if (!existing.ok()) co_return unavailable("idempotency store unavailable; retry");
      if (existing.reply.is_nil()) {
        co_return unavailable("a request with this Idempotency-Key just failed; retry");
      }
      co_return replay(existing.reply.string, fingerprint);
    }
  }

  tasks::PendingTask task{id, user_id, *type, std::move(*payload), core::unix_ms(), profile_id};
  const std::string record = tasks::encode(task);
  const auto produced =
      co_await deps_.producer.produce(kTasksPending, id, record, trace_headers(request));
  if (produced) {
    if (!idempotency_redis_key.empty())
      co_await deps_.redis.command(redis_args("DEL", idempotency_redis_key));
    if (produced == kafka::make_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)) {
      co_return problem(413, "the task record is larger than the task queue accepts");
    }
    tasks_rejected_unavailable_.Increment();
    log::event(*log::get("gateway"), spdlog::level::warn, "task not acknowledged by Kafka",
               {{"request_id", request.request_id}, {"error", produced.message()}});
    co_return unavailable("the task queue did not acknowledge in time; retry");
  }
  tasks_accepted_.Increment();
  // Read-your-writes: until the updater has stored the task, GET answers from this entry.
  json::object cached{
      {"user_id", user_id},
      {"type", tasks::to_string(*type)},
      {"payload", task.payload},
      {"created_at_ms", task.created_at_ms},
      {"profile_id", profile_id.empty() ? json::value(nullptr) : json::value(profile_id)}};
  auto cached_write = co_await deps_.redis.command(
      redis_args("SET", pending_key(id), json::serialize(cached), "EX",
                 std::to_string(deps_.config.pending_cache_ttl.count())));
  if (!cached_write.ok()) {
    pending_cache_errors_.Increment();
    log::event(*log::get("gateway"), spdlog::level::warn,
               "accepted task not cached; GET may miss it until the updater stores it",
               {{"request_id", request.request_id}, {"task_id", id}});
  }
  if (!idempotency_redis_key.empty()) {
    auto done = co_await deps_.redis.command(redis_args("SET", idempotency_redis_key,
                                                        id + " " + fingerprint, "EX",
                                                        std::to_string(kIdempotencyTtlSeconds)));
    if (!done.ok()) {
      // The task is queued; a replay within the pending TTL is told to retry, after it the key
      // is free again. Logged so the operator sees the idempotency store failing.
      log::event(*log::get("gateway"), spdlog::level::warn, "idempotency key not finalized",
                 {{"request_id", request.request_id}, {"task_id", id}});
    }
  }
  auto response = Response::json(202, json::object{{"id", id}, {"status", "queued"}});
  response.set_header("Location", "/v1/tasks/" + id);
  co_return response;
}

Response GatewayApi::replay(std::string_view stored, std::string_view fingerprint) const {
  // stored is "pending <id> <fingerprint>" or "<id> <fingerprint>".
  const bool pending = stored.starts_with("pending ");
  if (pending) stored.remove_prefix(std::string_view("pending ").size());
  const auto space = stored.find(' ');
  if (space == std::string_view::npos || stored.substr(space + 1) != fingerprint) {
    return problem(422, "this Idempotency-Key was already used with a different request");
  }
  if (pending) {
    auto response = problem(409, "a request with this Idempotency-Key is still in progress");
    response.set_header("Retry-After", "1");
    return response;
  }
  const std::string previous(stored.substr(0, space));
  auto response = Response::json(202, json::object{{"id", previous}, {"status", "queued"}});
  response.set_header("Location", "/v1/tasks/" + previous);
  response.set_header("Idempotent-Replayed", "true");
  return response;
}

Task<Response> GatewayApi::get_task(Request& request) {
  const std::string id(request.param("id"));
  if (!core::is_uuid(id)) co_return problem(404, "no such task");
  const auto& user_id = request.principal->user_id;
  const auto rows = co_await deps_.pg.query(
      "SELECT " + std::string(kTaskColumns) + " FROM tasks WHERE id = $1 AND user_id = $2",
      pg::params(id, user_id));
  std::optional<json::object> task;
  if (rows.rows() == 1) {
    task = task_view(rows, 0);
    // Complete unless the completion was stored before the pending record (the updater reads
    // the two topics independently): then type and payload come from the pending entry.
    if (!task->at("type").is_null()) co_return Response::json(200, *task);
  }

  auto cached = co_await deps_.redis.command(redis_args("GET", pending_key(id)));
  if (cached.ok() && !cached.reply.is_nil()) {
    error_code ec;
    auto entry = json::parse(cached.reply.string, ec);
    if (!ec && entry.is_object() && entry.as_object().contains("user_id") &&
        entry.at("user_id") == json::value(user_id)) {
      const auto& object = entry.as_object();
      // Not stored yet: queued, as the gateway accepted it.
      if (!task) {
        task = json::object{{"id", id},
                            {"type", nullptr},
                            {"status", "queued"},
                            {"payload", nullptr},
                            {"result", nullptr},
                            {"error", nullptr},
                            {"attempts", 0},
                            {"created_at", nullptr},
                            {"started_at", nullptr},
                            {"finished_at", nullptr},
                            {"profile_id", nullptr}};
      }
      (*task)["type"] = object.at("type");
      (*task)["payload"] = object.at("payload");
      if (const auto* cached_profile = object.if_contains("profile_id")) {
        (*task)["profile_id"] = *cached_profile;
      }
      (*task)["created_at"] =
          core::rfc3339_ms(object.at("created_at_ms").to_number<std::int64_t>());
    }
  }
  if (task) co_return Response::json(200, *task);
  co_return problem(404, "no such task");
}

Task<Response> GatewayApi::list_tasks(Request& request) {
  std::optional<std::string> status = request.query_param("status");
  if (status && status->empty()) status.reset();
  if (status && !tasks::parse_task_status(*status)) {
    co_return invalid_field("status", "one of queued, running, succeeded, failed");
  }
  int limit = 20;
  if (const auto text = request.query_param("limit")) {
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), limit);
    if (ec != std::errc() || end != text->data() + text->size() || limit < 1 || limit > 100) {
      co_return invalid_field("limit", "an integer from 1 to 100");
    }
  }
  std::optional<std::string> cursor = request.query_param("cursor");
  if (cursor && cursor->empty()) cursor.reset();
  if (cursor && !core::is_uuid(*cursor))
    co_return invalid_field("cursor", "not a cursor from next_cursor");

  const auto rows = co_await deps_.pg.query(
      "SELECT " + std::string(kTaskColumns) +
          " FROM tasks WHERE user_id = $1 AND ($2::text IS NULL OR status = $2)"
          " AND ($3::uuid IS NULL OR id < $3::uuid) ORDER BY id DESC LIMIT $4",
      pg::params(request.principal->user_id, status, cursor, std::to_string(limit + 1)));
  json::array items;
  const int shown = std::min(rows.rows(), limit);
  for (int row = 0; row < shown; ++row) items.push_back(task_view(rows, row));
  json::value next = nullptr;
  if (rows.rows() > limit) next = json::value(rows.get(limit - 1, 0));
  co_return Response::json(200, json::object{{"items", std::move(items)}, {"next_cursor", next}});
}

}  // namespace mesh::roles
