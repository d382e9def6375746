#include "mesh/roles/updater.hpp"

#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/core/sleep.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/kafka/dead_letter.hpp"
#include "mesh/kafka/publish.hpp"
#include "mesh/pg/error.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/tasks/records.hpp"

namespace mesh::roles {
namespace json = boost::json;

namespace {

constexpr std::string_view kInsertPending = R"sql(
INSERT INTO tasks (id, user_id, type, status, status_rank, payload, created_at, profile_id)
SELECT r.id, r.user_id, r.type, 'queued', 0, r.payload, to_timestamp(r.created_at_ms / 1000.0),
       NULLIF(r.profile_id, '')::uuid
FROM jsonb_to_recordset($1::jsonb)
  AS r(id uuid, user_id uuid, type text, payload jsonb, created_at_ms bigint, profile_id text)
ON CONFLICT (id) DO UPDATE
  SET type = EXCLUDED.type, payload = EXCLUDED.payload, created_at = EXCLUDED.created_at,
      profile_id = EXCLUDED.profile_id
  WHERE tasks.type IS NULL)sql";

constexpr std::string_view kUpsertCompleted = R"sql(
INSERT INTO tasks (id, user_id, status, status_rank, result, error, attempts, started_at,
                   finished_at)
SELECT r.id, r.user_id, r.status, 2, r.result, NULLIF(r.error, ''), r.attempts,
       to_timestamp(r.started_at_ms / 1000.0), to_timestamp(r.finished_at_ms / 1000.0)
FROM jsonb_to_recordset($1::jsonb)
  AS r(id uuid, user_id uuid, status text, result jsonb, error text, attempts integer,
       started_at_ms bigint, finished_at_ms bigint)
ON CONFLICT (id) DO UPDATE
  SET status = EXCLUDED.status, status_rank = EXCLUDED.status_rank, result = EXCLUDED.result,
      error = EXCLUDED.error, attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at,
      finished_at = EXCLUDED.finished_at, updated_at = now()
  WHERE tasks.status_rank < EXCLUDED.status_rank)sql";

std::string rows_json(const std::map<std::string, json::object>& rows) {
  json::array array;
  array.reserve(rows.size());
  for (const auto& [id, row] : rows) array.push_back(row);
  return json::serialize(array);
}

}  // namespace

std::optional<std::string> TaskBatch::add_pending(std::string_view record) {
  auto decoded = tasks::decode_pending(record);
  if (auto* error = std::get_if<tasks::DecodeError>(&decoded)) return error->reason;
  auto& task = std::get<tasks::PendingTask>(decoded);
  if (!core::is_uuid(task.user_id)) return "/user_id: not a UUID";
  if (!task.profile_id.empty() && !core::is_uuid(task.profile_id)) return "/profile_id: not a UUID";
  pending_.try_emplace(task.id, json::object{{"id", task.id},
                                             {"user_id", task.user_id},
                                             {"type", tasks::to_string(task.type)},
                                             {"payload", std::move(task.payload)},
                                             {"created_at_ms", task.created_at_ms},
                                             {"profile_id", task.profile_id}});
  return std::nullopt;
}

std::optional<std::string> TaskBatch::add_completed(std::string_view record) {
  auto decoded = tasks::decode_completed(record);
  if (auto* error = std::get_if<tasks::DecodeError>(&decoded)) return error->reason;
  auto& task = std::get<tasks::CompletedTask>(decoded);
  if (!core::is_uuid(task.user_id)) return "/user_id: not a UUID";
  // Results are deterministic, so any one of several completions of a task will do.
  completed_.try_emplace(task.id, json::object{{"id", task.id},
                                               {"user_id", task.user_id},
                                               {"status", tasks::to_string(task.status)},
                                               {"result", std::move(task.result)},
                                               {"error", task.error},
                                               {"attempts", task.attempts},
                                               {"started_at_ms", task.started_at_ms},
                                               {"finished_at_ms", task.finished_at_ms}});
  return std::nullopt;
}

std::string TaskBatch::pending_rows() const { return rows_json(pending_); }
std::string TaskBatch::completed_rows() const { return rows_json(completed_); }

Task<void> store(pg::Pool& pool, const TaskBatch& batch) {
  co_await pool.transaction([&](pg::Lease& lease) -> Task<void> {
    if (batch.has_pending())
      co_await lease.query(kInsertPending, pg::Params(1, batch.pending_rows()));
    if (batch.has_completed())
      co_await lease.query(kUpsertCompleted, pg::Params(1, batch.completed_rows()));
  });
}

Updater::Updater(asio::any_io_executor executor, const config::Config& config,
                 kafka::ClientConfig kafka_config, pg::Pool& pool, kafka::Producer& producer,
                 prometheus::Registry& registry)
    : executor_(asio::make_strand(executor)),
      config_(config),
      kafka_config_(std::move(kafka_config)),
      pool_(pool),
      producer_(producer),
      registry_(registry),
      rows_written_(prometheus::BuildCounter()
                        .Name("mesh_updater_records_stored_total")
                        .Help("Task records written to Postgres (after de-duplication).")
                        .Register(registry)
                        .Add({})),
      dead_lettered_(prometheus::BuildCounter()
                         .Name("mesh_updater_dead_letters_total")
                         .Help("Undecodable records the updater skipped.")
                         .Register(registry)
                         .Add({})),
      store_failures_(prometheus::BuildCounter()
                          .Name("mesh_updater_store_failures_total")
                          .Help("Batches whose transaction failed and was retried.")
                          .Register(registry)
                          .Add({})) {}

void Updater::stop() { stopping_ = true; }

Task<bool> Updater::dead_letter(const kafka::Message& message, std::string_view reason) {
  dead_lettered_.Increment();
  const std::string record = kafka::dead_letter_record(message, reason);
  const auto headers = kafka::dead_letter_headers(reason, "updater");
  const bool published = co_await kafka::publish_until_acked(
      producer_, kTasksDeadLetter, message.key, record, headers, &stopping_);
  co_return published;
}

Task<Updater::StoreOutcome> Updater::store_with_retry(const TaskBatch& batch) {
  auto logger = log::get("updater");
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    std::string failure;
    bool stored = false;
    bool refused = false;
    try {
      co_await store(pool_, batch);
      stored = true;
    } catch (const pg::Error& e) {
      // Class 22 (data exception): the rows themselves are unacceptable; retrying cannot help.
      refused = e.sqlstate().starts_with("22");
      failure = e.what();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    // (No co_return inside the handlers: GCC 12 miscompiles coroutine exits from them.)
    if (stored) {
      rows_written_.Increment(static_cast<double>(batch.size()));
      co_return StoreOutcome::stored;
    }
    if (refused) {
      log::event(*logger, spdlog::level::warn, "batch rejected by postgres",
                 {{"records", batch.size()}, {"error", failure}});
      co_return StoreOutcome::rejected;
    }
    store_failures_.Increment();
    logger->error("storing {} task records failed: {}; retrying", batch.size(), failure);
    if (stopping_) co_return StoreOutcome::stopped;
    co_await core::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

Task<void> Updater::run() {
  co_await asio::dispatch(executor_, asio::use_awaitable);
  auto logger = log::get("updater");
  kafka::Consumer consumer(executor_, kafka_config_, "mesh-updater",
                           {kTasksPending, kTasksCompleted}, registry_);
  std::vector<kafka::Consumer::Offset> offsets;
  while (!stopping_) {
    auto messages =
        co_await consumer.poll_batch(config_.updater_batch_size, std::chrono::milliseconds(100));
    if (messages.empty()) continue;
    TaskBatch batch;
    std::vector<const kafka::Message*> usable;
    std::map<std::pair<std::string, std::int32_t>, std::int64_t> next_offsets;
    for (const auto& message : messages) {
      auto& next = next_offsets[{message.topic, message.partition}];
      next = std::max(next, message.offset + 1);
      const bool pending = message.topic == kTasksPending;
      const auto reason =
          pending ? batch.add_pending(message.value) : batch.add_completed(message.value);
      if (!reason) {
        usable.push_back(&message);
        continue;
      }
      log::event(*logger, spdlog::level::warn, "undecodable record skipped",
                 {{"topic", message.topic},
                  {"partition", message.partition},
                  {"offset", message.offset},
                  {"reason", *reason}});
      // The worker dead-letters bad pending records; bad completions only the updater sees.
      if (pending) {
        dead_lettered_.Increment();
        continue;
      }
      const bool published = co_await dead_letter(message, *reason);
      if (!published) co_return;
    }
    // Nothing is committed until the batch is in Postgres: retry the same batch until it is.
    auto outcome = StoreOutcome::stored;
    if (!batch.empty()) outcome = co_await store_with_retry(batch);
    if (outcome == StoreOutcome::rejected) {
      // Some record holds data Postgres refuses: store one by one, dead-letter the refused.
      for (const auto* message : usable) {
        TaskBatch single;
        if (message->topic == kTasksPending) {
          single.add_pending(message->value);
        } else {
          single.add_completed(message->value);
        }
        outcome = co_await store_with_retry(single);
        if (outcome == StoreOutcome::stopped) break;
        if (outcome == StoreOutcome::rejected) {
          const bool published =
              co_await dead_letter(*message, "postgres refused the record's data");
          if (!published) {
            outcome = StoreOutcome::stopped;
            break;
          }
        }
      }
    }
    if (outcome == StoreOutcome::stopped) {
      co_await consumer.close();
      co_return;
    }
    offsets.clear();
    for (const auto& [partition, next] : next_offsets)
      offsets.push_back({partition.first, partition.second, next});
    consumer.commit(offsets, true);
  }
  // An asynchronous commit may still be in flight: repeat the last one synchronously.
  consumer.commit(offsets, false);
  co_await consumer.close();
}

}  // namespace mesh::roles
