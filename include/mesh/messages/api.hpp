#pragma once
// The message service's HTTP API (seed 004), for any signed-in user (the messages are a shared
// bus: every user reads every message; only its publisher or an admin deletes one):
//
//   POST   /v1/messages        validate, publish to the messages topic, 202 {"id"} after the
//                              Kafka ack (503 + Retry-After without one, 413 when too large)
//   GET    /v1/messages?sender&priority&limit&cursor
//                              newest first, keyset pages on the UUIDv7 id:
//                              {"items":[...],"next_cursor":id|null}
//   GET    /v1/messages/{id}   the message, or 404 (unknown, malformed id, deleted)
//   DELETE /v1/messages/{id}   204 for the publisher or an admin, 403 for others, 404 when
//                              unknown or already deleted; a soft delete (deleted_at)
//
// Messages are stored by MessageConsumer (the consumer role), so a GET right after the 202 may
// answer 404 for a moment. Bad input is 4xx problem+json naming the field or parameter.
#include <optional>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"
#include "mesh/kafka/producer.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::messages {

struct MessageApiDeps {
  const config::Config& config;
  pg::Pool& pg;
  kafka::Producer& producer;
  prometheus::Registry& registry;
};

class MessageApi {
 public:
  explicit MessageApi(MessageApiDeps deps);

  // Registers the four routes, each behind policy::require_user.
  void add_routes(http::Router& router);

  // The handlers, for tests; each expects request.principal to be set.
  Task<http::Response> publish(http::Request& request);
  Task<http::Response> list(http::Request& request);
  Task<http::Response> get(http::Request& request);
  Task<http::Response> remove(http::Request& request);

 private:
  // The query's rows, or nullopt when Postgres failed (logged and counted): answer 503.
  Task<std::optional<pg::Result>> query(std::string_view sql, pg::Params params,
                                        const http::Request& request);
  // 400 naming the parameter or field, counted.
  http::Response invalid(std::string_view pointer, std::string_view detail);

  MessageApiDeps deps_;
  prometheus::Counter& published_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& database_errors_;
};

}  // namespace mesh::messages
