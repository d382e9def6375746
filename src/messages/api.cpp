#include "mesh/messages/api.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <librdkafka/rdkafka.h>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/kafka/error.hpp"
#include "mesh/messages/records.hpp"
#include "mesh/policy/authenticate.hpp"

namespace mesh::messages {
namespace json = boost::json;
using http::Request;
using http::Response;

namespace {

constexpr int kDefaultLimit = 20;
constexpr int kMaxLimit = 100;

#define MESH_MESSAGE_COLUMNS                                                   \
  "id, ts, sender, message_attributes, sent_from_ip, priority, publisher_id, " \
  "to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

// Newest first; $3 is the cursor (the last id of the previous page). One row more than the page
// tells whether there is a next one.
constexpr std::string_view kList = "SELECT " MESH_MESSAGE_COLUMNS
                                   " FROM messages WHERE deleted_at IS NULL"
                                   " AND ($1::text IS NULL OR sender = $1::text)"
                                   " AND ($2::smallint IS NULL OR priority = $2::smallint)"
                                   " AND ($3::uuid IS NULL OR id < $3::uuid)"
                                   " ORDER BY id DESC LIMIT $4::int";

constexpr std::string_view kGet =
    "SELECT " MESH_MESSAGE_COLUMNS " FROM messages WHERE id = $1::uuid AND deleted_at IS NULL";

#undef MESH_MESSAGE_COLUMNS

// One statement, so that two concurrent deletes cannot both answer 204: the row is locked, and
// the second sees deleted_at set once the first commits. Counts (live rows, deleted rows).
constexpr std::string_view kDelete = R"sql(
WITH target AS (
  SELECT id, publisher_id FROM messages
  WHERE id = $1::uuid AND deleted_at IS NULL
  FOR UPDATE
), deleted AS (
  UPDATE messages m SET deleted_at = now()
  FROM target
  WHERE m.id = target.id AND (target.publisher_id::text = $2 OR $3::boolean)
  RETURNING m.id
)
SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM deleted))sql";

std::string quoted(std::string_view text) { return json::serialize(json::string(text)); }

// One message as JSON text: messageAttributes goes out as the text Postgres keeps (json, not
// jsonb), so key order and every character are as published.
std::string item(const pg::Result& rows, int row) {
  std::string out = R"({"id":)";
  out += quoted(rows.get(row, 0));
  out += R"(,"ts":)";
  out += quoted(rows.get(row, 1));
  out += R"(,"sender":)";
  out += quoted(rows.get(row, 2));
  out += R"(,"messageAttributes":)";
  out += rows.get(row, 3);
  out += R"(,"sent_from_ip":)";
  out += quoted(rows.get(row, 4));
  out += R"(,"priority":)";
  out += rows.get(row, 5);
  out += R"(,"publisher_id":)";
  out += quoted(rows.get(row, 6));
  out += R"(,"published_at":)";
  out += quoted(rows.get(row, 7));
  out += '}';
  return out;
}

Response json_text(unsigned status, std::string body) {
  return Response::text(status, std::move(body), "application/json");
}

Response unavailable(std::string_view detail) {
  auto response = http::problem(503, detail);
  response.set_header("Retry-After", "1");
  return response;
}

Response not_found() { return http::problem(404, "no such message"); }

bool is_json_media_type(std::string_view content_type) {
  auto media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  constexpr std::string_view expected = "application/json";
  if (media.size() != expected.size()) return false;
  for (std::size_t i = 0; i < media.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(media[i])) != expected[i]) return false;
  }
  return true;
}

std::optional<int> small_integer(std::string_view text, int min, int max) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

// Kafka headers that let one request be followed through every role.
std::vector<kafka::Header> trace_headers(const Request& request) {
  return {kafka::Header{"request_id", request.request_id},
          kafka::Header{"traceparent", request.traceparent}};
}

}  // namespace

MessageApi::MessageApi(MessageApiDeps deps)
    : deps_(deps),
      published_(prometheus::BuildCounter()
                     .Name("mesh_messages_published_total")
                     .Help("Messages accepted (202) after Kafka's acknowledgement.")
                     .Register(deps.registry)
                     .Add({})),
      rejected_(prometheus::BuildCounter()
                    .Name("mesh_messages_rejected_total")
                    .Help("Message API requests refused, by reason (invalid, too_large, "
                          "unavailable, forbidden).")
                    .Register(deps.registry)),
      database_errors_(prometheus::BuildCounter()
                           .Name("mesh_messages_database_errors_total")
                           .Help("Message reads and deletes answered 503 because Postgres failed.")
                           .Register(deps.registry)
                           .Add({})) {}

void MessageApi::add_routes(http::Router& router) {
  router.add("POST", "/v1/messages",
             policy::require_user([this](Request& r) { return publish(r); }));
  router.add("GET", "/v1/messages", policy::require_user([this](Request& r) { return list(r); }));
  router.add("GET", "/v1/messages/{id}",
             policy::require_user([this](Request& r) { return get(r); }));
  router.add("DELETE", "/v1/messages/{id}",
             policy::require_user([this](Request& r) { return remove(r); }));
}

Response MessageApi::invalid(std::string_view pointer, std::string_view detail) {
  rejected_.Add({{"reason", "invalid"}}).Increment();
  json::object extra;
  json::array errors;
  errors.push_back(json::object{{"field", pointer}, {"detail", detail}});
  extra["errors"] = std::move(errors);
  return http::problem(400, std::string(pointer) + ": " + std::string(detail), "Invalid request",
                       std::move(extra));
}

Task<std::optional<pg::Result>> MessageApi::query(std::string_view sql, pg::Params params,
                                                  const Request& request) {
  std::optional<pg::Result> rows;
  std::string failure;
  try {
    rows = co_await deps_.pg.query(sql, std::move(params));
  } catch (const pg::Error& e) {
    failure = e.what();
  }
  if (!rows) {
    database_errors_.Increment();
    log::event(*log::get("messages"), spdlog::level::warn, "message query failed",
               {{"request_id", request.request_id}, {"error", failure}});
  }
  co_return rows;
}

Task<Response> MessageApi::publish(Request& request) {
  if (request.body.size() > kMaxBodyBytes) {
    rejected_.Add({{"reason", "too_large"}}).Increment();
    co_return http::problem(413, "a message body is at most 65536 bytes");
  }
  const auto content_type = request.header("content-type");
  if (!content_type || !is_json_media_type(*content_type)) {
    rejected_.Add({{"reason", "invalid"}}).Increment();
    co_return http::problem(415, "the body must be application/json");
  }
  // A publisher id is a column of type uuid: a principal without one (an external identity
  // not mapped to a mesh user) could never be stored.
  const std::string& publisher = request.principal->user_id;
  if (!core::is_uuid(publisher)) {
    rejected_.Add({{"reason", "forbidden"}}).Increment();
    co_return http::problem(403, "publishing needs a mesh user id");
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  error_code ec;
  const json::value body = json::parse(request.body, ec, {}, options);
  if (ec) co_return invalid("", "malformed JSON body: " + ec.message());
  if (!body.is_object()) co_return invalid("", "the JSON body must be an object");
  auto validated = validate(body.as_object());
  if (const auto* error = std::get_if<FieldError>(&validated)) {
    co_return invalid(error->pointer, error->detail);
  }
  auto& fields = std::get<Fields>(validated);

  Message message{core::uuid_v7(),
                  publisher,
                  std::move(fields.ts),
                  std::move(fields.sender),
                  std::move(fields.attributes),
                  std::move(fields.sent_from_ip),
                  fields.priority,
                  core::unix_ms()};
  const std::string record = encode(message);
  const auto headers = trace_headers(request);
  const error_code produced =
      co_await deps_.producer.produce(kMessagesTopic, message.id, record, headers);
  if (produced == kafka::make_error(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)) {
    rejected_.Add({{"reason", "too_large"}}).Increment();
    co_return http::problem(413, "the message record is larger than the messages topic accepts");
  }
  if (produced) {
    rejected_.Add({{"reason", "unavailable"}}).Increment();
    log::event(*log::get("messages"), spdlog::level::warn, "message not acknowledged by Kafka",
               {{"request_id", request.request_id}, {"error", produced.message()}});
    co_return unavailable("the message bus did not acknowledge in time; retry");
  }
  published_.Increment();
  auto response = Response::json(202, json::object{{"id", message.id}});
  response.set_header("Location", "/v1/messages/" + message.id);
  co_return response;
}

Task<Response> MessageApi::list(Request& request) {
  std::optional<std::string> sender;
  if (auto text = request.query_param("sender")) {
    if (!is_valid_sender(*text)) {
      co_return invalid("sender", "1 to 128 characters, no control characters");
    }
    sender = std::move(*text);
  }
  std::optional<std::string> priority;
  if (const auto text = request.query_param("priority")) {
    const auto parsed = small_integer(*text, kMinPriority, kMaxPriority);
    if (!parsed) co_return invalid("priority", "an integer from 0 to 9");
    priority = std::to_string(*parsed);
  }
  int limit = kDefaultLimit;
  if (const auto text = request.query_param("limit")) {
    const auto parsed = small_integer(*text, 1, kMaxLimit);
    if (!parsed) co_return invalid("limit", "an integer from 1 to 100");
    limit = *parsed;
  }
  std::optional<std::string> cursor;
  if (auto text = request.query_param("cursor")) {
    if (!core::is_uuid(*text)) co_return invalid("cursor", "a next_cursor of an earlier page");
    cursor = std::move(*text);
  }
  const auto rows = co_await query(
      kList, pg::params(sender, priority, cursor, std::to_string(limit + 1)), request);
  if (!rows) co_return unavailable("the message store is unavailable; retry");
  const int count = std::min(rows->rows(), limit);
  std::string body = R"({"items":[)";
  for (int row = 0; row < count; ++row) {
    if (row > 0) body.push_back(',');
    body += item(*rows, row);
  }
  body += R"(],"next_cursor":)";
  body += rows->rows() > limit ? quoted(rows->get(count - 1, 0)) : std::string("null");
  body += '}';
  co_return json_text(200, std::move(body));
}

Task<Response> MessageApi::get(Request& request) {
  const std::string id(request.param("id"));
  if (!core::is_uuid(id)) co_return not_found();
  const auto rows = co_await query(kGet, pg::params(id), request);
  if (!rows) co_return unavailable("the message store is unavailable; retry");
  if (rows->rows() == 0) co_return not_found();
  co_return json_text(200, item(*rows, 0));
}

Task<Response> MessageApi::remove(Request& request) {
  const std::string id(request.param("id"));
  if (!core::is_uuid(id)) co_return not_found();
  const auto& caller = *request.principal;
  const std::string admin = caller.role == "admin" ? "true" : "false";
  const auto rows = co_await query(kDelete, pg::params(id, caller.user_id, admin), request);
  if (!rows) co_return unavailable("the message store is unavailable; retry");
  if (rows->get(0, 0) == "0") co_return not_found();
  if (rows->get(0, 1) == "0") {
    rejected_.Add({{"reason", "forbidden"}}).Increment();
    co_return http::problem(403, "only the publisher or an admin may delete a message");
  }
  co_return Response::empty(204);
}

}  // namespace mesh::messages
