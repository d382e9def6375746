#include "mesh/roles/worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/core/offload.hpp"
#include "mesh/core/sleep.hpp"
#include "mesh/kafka/dead_letter.hpp"
#include "mesh/kafka/publish.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/tasks/task_types.hpp"

namespace mesh::roles {
namespace {

constexpr auto kCommitInterval = std::chrono::milliseconds(200);
constexpr auto kPollWait = std::chrono::milliseconds(100);
constexpr auto kFullWait = std::chrono::seconds(1);

}  // namespace

Task<tasks::CompletedTask> run_task(const tasks::PendingTask& task, asio::thread_pool& cpu,
                                    int max_attempts) {
  tasks::CompletedTask done;
  done.id = task.id;
  done.user_id = task.user_id;
  done.profile_id = task.profile_id;
  done.started_at_ms = core::unix_ms();
  for (int attempt = 1; attempt <= max_attempts; ++attempt) {
    done.attempts = attempt;
    try {
      if (const auto pause = tasks::sleep_duration(task.type, task.payload))
        co_await core::sleep_for(*pause);
      if (tasks::is_cpu_bound(task.type)) {
        done.result = co_await core::offload(
            cpu, [&task] { return tasks::execute(task.type, task.payload); });
      } else {
        done.result = tasks::execute(task.type, task.payload);
      }
      done.status = tasks::TaskStatus::succeeded;
      done.error.clear();
      break;
    } catch (const std::exception& e) {
      done.status = tasks::TaskStatus::failed;
      done.result = nullptr;
      done.error = e.what();
    }
  }
  done.finished_at_ms = core::unix_ms();
  co_return done;
}

Worker::Worker(asio::any_io_executor executor, const config::Config& config,
               kafka::ClientConfig kafka_config, kafka::Producer& producer, asio::thread_pool& cpu,
               prometheus::Registry& registry)
    : strand_(asio::make_strand(executor)),
      room_(strand_),
      config_(config),
      kafka_config_(std::move(kafka_config)),
      producer_(producer),
      cpu_(cpu),
      registry_(registry),
      tasks_done_(prometheus::BuildCounter()
                      .Name("mesh_worker_tasks_total")
                      .Help("Tasks the worker finished, by type and status.")
                      .Register(registry)),
      dead_lettered_(prometheus::BuildCounter()
                         .Name("mesh_worker_dead_letters_total")
                         .Help("Records the worker sent to tasks.dlq.")
                         .Register(registry)
                         .Add({})),
      in_flight_gauge_(prometheus::BuildGauge()
                           .Name("mesh_worker_tasks_in_flight")
                           .Help("Tasks received and not yet published.")
                           .Register(registry)
                           .Add({})) {}

void Worker::stop() { stopping_ = true; }

Task<void> Worker::process(kafka::Message message) {
  const OffsetTracker::Partition partition{message.topic, message.partition};
  auto decoded = tasks::decode_pending(message.value);
  if (auto* error = std::get_if<tasks::DecodeError>(&decoded)) {
    const auto record = kafka::dead_letter_record(message, error->reason);
    auto headers = kafka::dead_letter_headers(error->reason, "worker");
    co_await kafka::publish_until_acked(producer_, kTasksDeadLetter, message.key, record, headers);
    dead_lettered_.Increment();
    log::event(
        *log::get("worker"), spdlog::level::warn, "undecodable record dead-lettered",
        {{"reason", error->reason}, {"partition", message.partition}, {"offset", message.offset}});
  } else {
    const auto& task = std::get<tasks::PendingTask>(decoded);
    auto done = co_await run_task(task, cpu_, config_.worker_max_attempts);
    std::vector<kafka::Header> headers;
    for (const auto& header : message.headers) {
      if (header.key == "request_id") headers.push_back(header);
    }
    const auto completed = tasks::encode(done);
    co_await kafka::publish_until_acked(producer_, kTasksCompleted, task.id, completed, headers);
    if (done.status == tasks::TaskStatus::failed) {
      const auto reason =
          "failed after " + std::to_string(done.attempts) + " attempts: " + done.error;
      const auto record = kafka::dead_letter_record(message, reason);
      auto dead_headers = kafka::dead_letter_headers(reason, "worker");
      co_await kafka::publish_until_acked(producer_, kTasksDeadLetter, task.id, record,
                                          dead_headers);
      dead_lettered_.Increment();
    }
    tasks_done_
        .Add({{"type", std::string(tasks::to_string(task.type))},
              {"status", std::string(tasks::to_string(done.status))}})
        .Increment();
  }
  tracker_.finish(partition, message.offset);
  --in_flight_;
  room_.cancel();  // wakes run() if it waits for a slot
  in_flight_gauge_.Set(static_cast<double>(in_flight_));
}

Task<void> Worker::run() {
  co_await asio::dispatch(strand_, asio::use_awaitable);
  auto logger = log::get("worker");
  kafka::Consumer consumer(strand_, kafka_config_, "mesh-worker", {kTasksPending}, registry_);
  consumer.on_revoke = [&](const kafka::Consumer::Partitions& partitions) {
    consumer.commit(tracker_.take_committable(partitions), false);
    tracker_.forget(partitions);
  };
  const std::size_t cap = std::max<std::size_t>(config_.worker_max_inflight, 1);
  bool paused = false;
  auto last_commit = std::chrono::steady_clock::now();
  while (!stopping_) {
    if (in_flight_ >= cap && !paused) {
      // Full: wait for a slot first. Pausing discards the records librdkafka has prefetched,
      // so it is kept for a worker that stays full (long sleeps, heavy CPU tasks).
      room_.expires_after(kFullWait);
      error_code ignored;
      co_await room_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      if (in_flight_ >= cap) {
        consumer.pause();
        paused = true;
      }
    } else if (paused && in_flight_ <= cap / 2) {
      consumer.resume();
      paused = false;
    }
    // While paused, polling still serves group events; a record fetched before the pause may
    // still arrive, and is taken (it must be, to keep offsets contiguous).
    const std::size_t room = in_flight_ >= cap ? 1 : cap - in_flight_;
    auto batch = co_await consumer.poll_batch(room, kPollWait);
    for (auto& message : batch) {
      tracker_.begin({message.topic, message.partition}, message.offset);
      ++in_flight_;
      asio::co_spawn(strand_, process(std::move(message)), asio::detached);
    }
    in_flight_gauge_.Set(static_cast<double>(in_flight_));
    if (std::chrono::steady_clock::now() - last_commit >= kCommitInterval) {
      consumer.commit(tracker_.take_committable(), true);
      last_commit = std::chrono::steady_clock::now();
    }
  }

  logger->info("draining {} in-flight tasks", in_flight_);
  const auto deadline = std::chrono::steady_clock::now() + config_.drain_timeout;
  consumer.pause();
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
    co_await consumer.poll_batch(1, std::chrono::milliseconds(20));
    consumer.commit(tracker_.take_committable(), true);
  }
  if (in_flight_ > 0)
    logger->warn("{} tasks still running at the drain deadline; they will be redelivered",
                 in_flight_);
  consumer.commit(tracker_.take_committable(), false);
  co_await consumer.close();
}

}  // namespace mesh::roles
