#include "mesh/sessions/session_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/market/events.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/tasks/records.hpp"

namespace mesh::sessions {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// Ids in error answers are cut to this length (the id may be hostile input).
constexpr std::size_t kEchoLimit = 40;
constexpr const char* kRetryAfterSeconds = "2";

constexpr std::string_view kMembershipSql =
    "SELECT array_to_json(p.watchlist)::text FROM profiles p JOIN profile_members m ON "
    "m.profile_id = p.id WHERE p.id = $1 AND m.user_id = $2";

http::Response unavailable(std::string_view detail) {
  auto response = http::problem(503, detail);
  response.set_header("Retry-After", kRetryAfterSeconds);
  return response;
}

std::vector<std::string> parse_watchlist(std::string_view text) {
  std::vector<std::string> products;
  error_code ec;
  const auto value = json::parse(text, ec);
  if (ec || !value.is_array()) return products;
  for (const auto& item : value.get_array()) {
    if (item.is_string() && market::is_product(item.get_string())) {
      products.emplace_back(item.get_string());
    }
  }
  return products;
}

std::string end_frame(std::string_view reason) {
  json::object data;
  data.emplace("reason", reason);
  return sse::format_event("end", 0, json::serialize(data));
}

}  // namespace

std::string session_channel(std::string_view user_id, std::string_view profile_id) {
  std::string channel = "session:";
  channel += user_id;
  channel += ':';
  channel += profile_id;
  return channel;
}

std::string tasks_channel(std::string_view profile_id) {
  return "tasks:" + std::string(profile_id);
}

struct SessionService::Session {
  explicit Session(asio::any_io_executor executor)
      : strand(asio::make_strand(executor)), timer(strand) {}

  // Records why the session ends (the first reason wins) and wakes its refresh loop. False when
  // it had ended already. Any thread.
  bool mark_ended(std::string_view why) {
    {
      std::lock_guard lock(mutex);
      if (ended) return false;
      ended = true;
      reason = why;
    }
    asio::post(strand, [this, keep = self.lock()] { timer.cancel(); });
    return true;
  }

  bool has_ended() {
    std::lock_guard lock(mutex);
    return ended;
  }

  std::string end_reason() {
    std::lock_guard lock(mutex);
    return reason;
  }

  std::string user_id;
  std::string profile_id;
  std::string token;
  std::string channel;  // unique to this session: a later session of the pair has its own
  std::int64_t since_ms = 0;
  asio::strand<asio::any_io_executor> strand;
  asio::steady_timer timer;  // on `strand`, like the refresh loop
  std::weak_ptr<Session> self;

  std::mutex mutex;
  bool ended = false;
  std::string reason;
};

SessionService::SessionService(asio::any_io_executor executor, const config::Config& config,
                               pg::Pool& pg, redis::Client& redis, sse::StreamService& stream,
                               prometheus::Registry& registry)
    : executor_(std::move(executor)),
      config_(config),
      pg_(pg),
      locks_(redis, LockOptions{config.session_lock_ttl, config.node_name}),
      hub_(stream.hub()),
      open_sessions_(prometheus::BuildGauge()
                         .Name("mesh_stream_sessions")
                         .Help("Locked streaming sessions open on this replica.")
                         .Register(registry)
                         .Add({})),
      opens_(prometheus::BuildCounter()
                 .Name("mesh_stream_session_opens_total")
                 .Help("Session stream opens by outcome (opened, conflict, forbidden, "
                       "unavailable).")
                 .Register(registry)),
      ends_(prometheus::BuildCounter()
                .Name("mesh_stream_session_ends_total")
                .Help("Ended session streams by reason (closed, lost, unavailable, shutdown).")
                .Register(registry)),
      task_events_(prometheus::BuildCounter()
                       .Name("mesh_stream_task_events_total")
                       .Help("Task status changes published to session streams.")
                       .Register(registry)
                       .Add({})),
      bad_task_records_(
          prometheus::BuildCounter()
              .Name("mesh_stream_bad_records_total")
              .Help("Kafka records the stream could not decode and skipped, by topic.")
              .Register(registry)
              .Add({{"topic", "tasks"}})) {
  for (const char* topic : {roles::kTasksPending, roles::kTasksCompleted}) {
    stream.add_topic(topic, [this](const kafka::Message& message) { on_task_record(message); });
  }
}

SessionService::~SessionService() = default;

void SessionService::add_routes(http::Router& router) {
  router.add("GET", "/v1/stream/sessions/{profile_id}",
             policy::require_user([this](http::Request& request) { return open(request); }));
}

Task<http::Response> SessionService::open(http::Request& request) {
  const std::string user_id = request.principal->user_id;
  const std::string profile_id(request.param("profile_id"));
  if (!core::is_uuid(profile_id)) {
    co_return http::problem(
        400, "'" + profile_id.substr(0, kEchoLimit) + "' is not a profile id (a canonical UUID)");
  }
  if (stopping_) co_return unavailable("the stream is shutting down");
  // Ids of other issuers (OIDC subjects) are not mesh users, so never members.
  if (!core::is_uuid(user_id)) {
    opens_.Add({{"outcome", "forbidden"}}).Increment();
    co_return http::problem(403, "not a member of this profile");
  }

  std::optional<pg::Result> membership;
  std::string pg_error;
  try {
    pg::Params params{profile_id, user_id};
    membership = co_await pg_.query(kMembershipSql, std::move(params));
  } catch (const std::exception& e) {
    pg_error = e.what();
  }
  if (!membership) {
    log::get("sessions")->warn("session open: membership query failed: {}", pg_error);
    opens_.Add({{"outcome", "unavailable"}}).Increment();
    co_return unavailable("profiles are unavailable; retry later");
  }
  if (membership->rows() == 0) {
    opens_.Add({{"outcome", "forbidden"}}).Increment();
    co_return http::problem(403, "not a member of this profile");
  }
  const auto watchlist = parse_watchlist(membership->get(0, 0));

  const auto lock = co_await locks_.acquire(user_id, profile_id);
  if (lock.status == Acquire::Status::held) {
    opens_.Add({{"outcome", "conflict"}}).Increment();
    co_return http::problem(409, "a session of this profile is already open for this user");
  }
  if (lock.status == Acquire::Status::unavailable) {
    opens_.Add({{"outcome", "unavailable"}}).Increment();
    co_return unavailable("session locks are unavailable; retry later");
  }

  auto session = std::make_shared<Session>(executor_);
  session->self = session;
  session->user_id = user_id;
  session->profile_id = profile_id;
  session->token = lock.token;
  session->since_ms = lock.since_ms;
  session->channel = session_channel(user_id, profile_id) + ":" + lock.token;

  sse::Subscription subscription;
  subscription.channels.push_back(session->channel);
  subscription.channels.push_back(tasks_channel(profile_id));
  for (const auto& product : watchlist) subscription.channels.push_back("ticker:" + product);
  json::object hello;
  hello.emplace("profile_id", profile_id);
  hello.emplace("node", config_.node_name);
  hello.emplace("since", core::rfc3339_ms(lock.since_ms));
  subscription.first_frame = sse::format_event("session", 0, json::serialize(hello));
  subscription.on_end = [weak = std::weak_ptr<Session>(session)] {
    if (auto alive = weak.lock()) alive->mark_ended("closed");
  };
  {
    std::lock_guard guard(mutex_);
    sessions_.emplace(session->channel, session);
  }
  open_sessions_.Increment();
  auto response = hub_.subscribe(std::move(subscription));
  if (response.status == 200)
    opens_.Add({{"outcome", "opened"}}).Increment();
  else
    opens_.Add({{"outcome", "unavailable"}}).Increment();
  // The loop also runs for a refused answer: it sees the session ended and releases the lock.
  asio::co_spawn(session->strand, keep(session), asio::detached);
  co_return response;
}

Task<void> SessionService::keep(std::shared_ptr<Session> session) {
  auto logger = log::get("sessions");
  auto last_success = Clock::now();
  while (!session->has_ended()) {
    session->timer.expires_after(config_.session_refresh);
    error_code ec;
    co_await session->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (session->has_ended()) break;
    const auto outcome = co_await locks_.refresh(session->user_id, session->profile_id,
                                                 session->token, session->since_ms);
    if (outcome == Refresh::refreshed || outcome == Refresh::recovered) {
      if (outcome == Refresh::recovered) {
        logger->info("session lock of profile {} recovered (the key was gone)",
                     session->profile_id);
      }
      last_success = Clock::now();
    } else if (outcome == Refresh::lost) {
      end(*session, "lost");
    } else if (Clock::now() - last_success >= config_.session_lock_ttl) {
      // Nobody could see our lock for a whole TTL: another replica may own the pair now.
      end(*session, "unavailable");
    }
  }
  const std::string reason = session->end_reason();
  if (reason != "lost") {
    const auto released =
        co_await locks_.release(session->user_id, session->profile_id, session->token);
    if (released && !*released) {
      logger->info("session lock of profile {} was gone at release", session->profile_id);
    }
  }
  {
    std::lock_guard guard(mutex_);
    sessions_.erase(session->channel);
  }
  open_sessions_.Decrement();
  ends_.Add({{"reason", reason}}).Increment();
}

void SessionService::end(Session& session, std::string_view reason) {
  if (session.mark_ended(reason)) hub_.close_channel(session.channel, end_frame(reason));
}

Task<void> SessionService::stop(std::chrono::milliseconds timeout) {
  stopping_ = true;
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard guard(mutex_);
    for (const auto& [channel, session] : sessions_) open.push_back(session);
  }
  for (const auto& session : open) end(*session, "shutdown");
  open.clear();
  asio::steady_timer timer(executor_);
  const auto deadline = Clock::now() + timeout;
  while (sessions() > 0 && Clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (const auto left = sessions(); left > 0) {
    log::get("sessions")->warn("{} session locks not released at stop; they expire by TTL", left);
  }
}

std::size_t SessionService::sessions() const {
  std::lock_guard guard(mutex_);
  return sessions_.size();
}

void SessionService::on_task_record(const kafka::Message& message) {
  json::object event;
  std::string profile_id;
  if (message.topic == roles::kTasksPending) {
    auto decoded = tasks::decode_pending(message.value);
    auto* task = std::get_if<tasks::PendingTask>(&decoded);
    if (!task) {
      bad_task_records_.Increment();
      return;
    }
    profile_id = std::move(task->profile_id);
    event.emplace("id", task->id);
    event.emplace("status", tasks::to_string(tasks::TaskStatus::queued));
    event.emplace("type", tasks::to_string(task->type));
    event.emplace("created_at", core::rfc3339_ms(task->created_at_ms));
  } else {
    auto decoded = tasks::decode_completed(message.value);
    auto* task = std::get_if<tasks::CompletedTask>(&decoded);
    if (!task) {
      bad_task_records_.Increment();
      return;
    }
    profile_id = std::move(task->profile_id);
    event.emplace("id", task->id);
    event.emplace("status", tasks::to_string(task->status));
    event.emplace("attempts", task->attempts);
    if (!task->error.empty()) event.emplace("error", task->error);
    event.emplace("finished_at", core::rfc3339_ms(task->finished_at_ms));
  }
  if (profile_id.empty()) return;
  task_events_.Increment();
  hub_.publish(tasks_channel(profile_id), "task", message.offset, json::serialize(event));
}

}  // namespace mesh::sessions
