#include "mesh/sessions/locks.hpp"

#include <algorithm>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"

namespace mesh::sessions {
namespace {

namespace json = boost::json;

// KEYS: lock, index. ARGV: value, ttl ms, profile id. 1 when taken, 0 when held.
const redis::Script kAcquire(R"lua(
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1
)lua");

// KEYS: lock, index. ARGV: token, value, ttl ms, profile id.
// 1 refreshed, 2 recovered (the key was gone), 0 lost (another token, or a value not ours).
const redis::Script kRefresh(R"lua(
local current = redis.call('GET', KEYS[1])
local result = 1
if not current then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  result = 2
else
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' or decoded.token ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return result
)lua");

// KEYS: lock, index. ARGV: token, profile id. 1 deleted, 0 not ours or gone.
const redis::Script kRelease(R"lua(
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, decoded = pcall(cjson.decode, current)
if not ok or type(decoded) ~= 'table' or decoded.token ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
)lua");

// KEYS: index. ARGV: the lock key prefix of the user. Flat {profile id, value, ...}. The lock
// keys are not declared, but share the index's hash tag, so they live in its slot.
const redis::Script kList(R"lua(
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local value = redis.call('GET', ARGV[1] .. id)
  if value then
    out[#out + 1] = id
    out[#out + 1] = value
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
)lua");

bool failed(const redis::Result& result, std::string_view operation) {
  if (result.ok()) return false;
  log::get("sessions")
      ->warn("session lock {}: Redis unavailable: {}", operation,
             result.error ? result.error.message() : result.reply.string);
  return true;
}

}  // namespace

std::string_view to_string(Refresh refresh) {
  switch (refresh) {
    case Refresh::refreshed:
      return "refreshed";
    case Refresh::recovered:
      return "recovered";
    case Refresh::lost:
      return "lost";
    case Refresh::unavailable:
      return "unavailable";
  }
  return "unknown";
}

SessionLocks::SessionLocks(redis::Client& client, LockOptions options)
    : client_(client), options_(std::move(options)) {
  if (options_.ttl.count() <= 0) throw std::invalid_argument("sessions: lock TTL must be > 0");
}

std::string SessionLocks::lock_key(std::string_view user_id, std::string_view profile_id) {
  std::string key = "mesh:session:{";
  key += user_id;
  key += "}:";
  key += profile_id;
  return key;
}

std::string SessionLocks::index_key(std::string_view user_id) {
  std::string key = "mesh:sessions:{";
  key += user_id;
  key += '}';
  return key;
}

std::string SessionLocks::lock_value(std::string_view token, std::int64_t since_ms) const {
  json::object value;
  value.emplace("token", token);
  value.emplace("node", options_.node);
  value.emplace("since", since_ms);
  return json::serialize(value);
}

Task<Acquire> SessionLocks::acquire(std::string user_id, std::string profile_id) {
  Acquire outcome;
  std::string token = core::random_hex(16);
  const std::int64_t since_ms = core::unix_ms();
  std::vector<std::string> keys{lock_key(user_id, profile_id), index_key(user_id)};
  std::vector<std::string> args{lock_value(token, since_ms), std::to_string(options_.ttl.count()),
                                profile_id};
  const auto result = co_await kAcquire.run(client_, std::move(keys), std::move(args));
  if (failed(result, "acquire")) co_return outcome;
  if (result.reply.integer != 1) {
    outcome.status = Acquire::Status::held;
    co_return outcome;
  }
  outcome.status = Acquire::Status::acquired;
  outcome.token = std::move(token);
  outcome.since_ms = since_ms;
  co_return outcome;
}

Task<Refresh> SessionLocks::refresh(std::string user_id, std::string profile_id, std::string token,
                                    std::int64_t since_ms) {
  std::vector<std::string> keys{lock_key(user_id, profile_id), index_key(user_id)};
  std::vector<std::string> args{token, lock_value(token, since_ms),
                                std::to_string(options_.ttl.count()), profile_id};
  const auto result = co_await kRefresh.run(client_, std::move(keys), std::move(args));
  if (failed(result, "refresh")) co_return Refresh::unavailable;
  switch (result.reply.integer) {
    case 1:
      co_return Refresh::refreshed;
    case 2:
      co_return Refresh::recovered;
    default:
      co_return Refresh::lost;
  }
}

Task<std::optional<bool>> SessionLocks::release(std::string user_id, std::string profile_id,
                                                std::string token) {
  std::vector<std::string> keys{lock_key(user_id, profile_id), index_key(user_id)};
  std::vector<std::string> args{std::move(token), std::move(profile_id)};
  const auto result = co_await kRelease.run(client_, std::move(keys), std::move(args));
  if (failed(result, "release")) co_return std::nullopt;
  co_return result.reply.integer == 1;
}

Task<std::optional<std::vector<SessionInfo>>> SessionLocks::list(std::string user_id) {
  std::vector<std::string> keys{index_key(user_id)};
  std::vector<std::string> args{lock_key(user_id, "")};
  const auto result = co_await kList.run(client_, std::move(keys), std::move(args));
  if (failed(result, "list")) co_return std::nullopt;
  std::vector<SessionInfo> sessions;
  const auto& elements = result.reply.elements;
  for (std::size_t i = 0; i + 1 < elements.size(); i += 2) {
    SessionInfo info;
    info.profile_id = elements[i].string;
    // A value mesh did not write is listed with what can be read from it.
    error_code ec;
    const auto value = json::parse(elements[i + 1].string, ec);
    if (!ec && value.is_object()) {
      const auto& object = value.get_object();
      if (const auto* node = object.if_contains("node"); node && node->is_string())
        info.node = node->get_string();
      if (const auto* since = object.if_contains("since"); since && since->is_int64())
        info.since_ms = since->get_int64();
    }
    sessions.push_back(std::move(info));
  }
  std::sort(sessions.begin(), sessions.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.profile_id < b.profile_id; });
  co_return sessions;
}

}  // namespace mesh::sessions
