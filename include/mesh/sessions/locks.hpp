#pragma once
// Streaming-session locks in Redis: at most one open session per (user, profile) pair across
// every stream replica.
//
// Keys share the user's hash tag, so one user's keys live in one Redis Cluster slot and each
// script touches a single slot:
//   mesh:session:{<user>}:<profile>  {"token","node","since"} with a PX TTL
//   mesh:sessions:{<user>}           set of the user's profile ids with a session (an index)
// The index's TTL is extended to the lock TTL at every acquire and refresh, so it outlives
// every lock it names; list() prunes entries whose lock expired.
//
// Each operation is one Lua script: one round trip, atomic on the server. A lock is only ever
// refreshed or deleted by the holder of its random 128-bit token.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/core/asio.hpp"
#include "mesh/redis/client.hpp"

namespace mesh::sessions {

struct LockOptions {
  std::chrono::milliseconds ttl{60'000};
  std::string node;  // this replica's name, stored in the lock for listings
};

struct Acquire {
  enum class Status { acquired, held, unavailable };
  Status status = Status::unavailable;
  std::string token;          // when acquired
  std::int64_t since_ms = 0;  // unix ms, when acquired
};

enum class Refresh {
  refreshed,    // our lock, TTL extended
  recovered,    // the lock was gone (Redis restarted or flushed) and is ours again
  lost,         // another token holds the pair
  unavailable,  // Redis did not answer (or answered with an error)
};
std::string_view to_string(Refresh refresh);

struct SessionInfo {
  std::string profile_id;
  std::string node;
  std::int64_t since_ms = 0;
};

class SessionLocks {
 public:
  // `client` must outlive this object.
  SessionLocks(redis::Client& client, LockOptions options);

  Task<Acquire> acquire(std::string user_id, std::string profile_id);
  // `since_ms` is written back into a recovered lock, so the session keeps its start time.
  Task<Refresh> refresh(std::string user_id, std::string profile_id, std::string token,
                        std::int64_t since_ms);
  // Compare-and-delete: true when our lock was deleted; false when it was not ours (or gone),
  // nullopt when Redis was unavailable. Never deletes another token's lock.
  Task<std::optional<bool>> release(std::string user_id, std::string profile_id, std::string token);
  // The user's open sessions on every replica, sorted by profile id; nullopt when Redis is
  // unavailable. Index entries whose lock expired are removed on the way.
  Task<std::optional<std::vector<SessionInfo>>> list(std::string user_id);

  const LockOptions& options() const { return options_; }

  static std::string lock_key(std::string_view user_id, std::string_view profile_id);
  static std::string index_key(std::string_view user_id);

 private:
  std::string lock_value(std::string_view token, std::int64_t since_ms) const;

  redis::Client& client_;
  LockOptions options_;
};

}  // namespace mesh::sessions
