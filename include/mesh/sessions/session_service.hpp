#pragma once
// Locked streaming sessions of the stream role: GET /v1/stream/sessions/{profile_id}.
//
// A member of a profile opens one event stream per (user, profile) pair across every replica:
// the pair's lock (SessionLocks) is taken before the answer and refreshed every
// config.session_refresh while the connection lives. The stream runs through the stream
// role's Hub (client cap, bounded queue with oldest-drop, write deadline, heartbeats) and
// carries:
//   session  {"profile_id","node","since"}       first, once
//   ticker   the market ticker of each watchlist product
//   task     {"id","status",...} of tasks submitted under the profile, as they change
//   end      {"reason"} before the server ends the stream ("lost", "unavailable", "shutdown")
// Task events come from tasks.pending (queued) and tasks.completed (succeeded, failed), read by
// the StreamService's live consumer.
//
// A refresh that finds another token ends the session at once (lost); when Redis does not
// answer, the refresh is retried at each tick and the session ends once no refresh succeeded
// for a whole TTL, since the pair may be taken elsewhere from then on. A lock that vanished
// (Redis restarted) is taken again (recovered). The lock is released when the session ends;
// stop() ends every session and releases its lock, so a rolling restart frees pairs at once.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/core/asio.hpp"
#include "mesh/http/router.hpp"
#include "mesh/kafka/consumer.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/sessions/locks.hpp"
#include "mesh/sse/stream_service.hpp"

namespace mesh::sessions {

// Hub channels: a session's own (for ending it), a profile's task events, a product's tickers.
std::string session_channel(std::string_view user_id, std::string_view profile_id);
std::string tasks_channel(std::string_view profile_id);

class SessionService {
 public:
  // Uses config.session_lock_ttl, session_refresh and node_name. Registers tasks.pending and
  // tasks.completed with `stream`, so it must be constructed before stream.run() starts. Every
  // reference must outlive this object.
  SessionService(asio::any_io_executor executor, const config::Config& config, pg::Pool& pg,
                 redis::Client& redis, sse::StreamService& stream, prometheus::Registry& registry);
  ~SessionService();
  SessionService(const SessionService&) = delete;
  SessionService& operator=(const SessionService&) = delete;

  // GET /v1/stream/sessions/{profile_id}: 401 without a caller, 400 for a malformed id, 403
  // unless the caller is a member (also for an unknown profile), 409 when the pair is open
  // anywhere, 503 with Retry-After when Redis or Postgres is unavailable or at the client cap,
  // else the event stream.
  void add_routes(http::Router& router);

  // Ends every session (an `end` event "shutdown", then close) and releases their locks;
  // returns once every lock was released (or its release failed) or after `timeout`. New
  // opens answer 503 from the call on.
  Task<void> stop(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Sessions open on this replica.
  std::size_t sessions() const;
  SessionLocks& locks() { return locks_; }

 private:
  struct Session;
  Task<http::Response> open(http::Request& request);
  Task<void> keep(std::shared_ptr<Session> session);
  void end(Session& session, std::string_view reason);
  void on_task_record(const kafka::Message& message);

  asio::any_io_executor executor_;
  const config::Config& config_;
  pg::Pool& pg_;
  SessionLocks locks_;
  sse::Hub& hub_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;  // by session channel

  prometheus::Gauge& open_sessions_;
  prometheus::Family<prometheus::Counter>& opens_;
  prometheus::Family<prometheus::Counter>& ends_;
  prometheus::Counter& task_events_;
  prometheus::Counter& bad_task_records_;
};

}  // namespace mesh::sessions
