#include "mesh/policy/rate_limit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "mesh/core/log.hpp"
#include "mesh/http/message.hpp"

namespace mesh::policy {
namespace {

// KEYS: one key per limit. ARGV: per key, its emission interval and its tolerance (interval x
// capacity), in microseconds. Each key holds its theoretical arrival time (TAT): a request is
// allowed when TAT + interval - tolerance <= now. The request is granted only when every key
// allows it, and only then are the TATs written, so a denial by one limit costs the other
// nothing. Redis's own clock, so the gateways' clocks do not matter; a script runs atomically,
// so concurrent requests never see the same TAT.
// Returns {granted, then per key: allowed, remaining, retry after us, reset us}.
constexpr std::string_view kGcraLua = R"lua(
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local granted = 1
local reply = {1}
local writes = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '') or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - tolerance
  -- One microsecond (the clock's resolution) absorbs rounding in sums of fractional intervals.
  if allow_at > now + 1 then
    granted = 0
    reply[#reply + 1] = 0
    reply[#reply + 1] = 0
    reply[#reply + 1] = math.ceil(allow_at - now)
    reply[#reply + 1] = math.ceil(tat - now)
  else
    reply[#reply + 1] = 1
    reply[#reply + 1] = math.max(0, math.floor((tolerance - (next_tat - now)) / interval + 1e-6))
    reply[#reply + 1] = 0
    reply[#reply + 1] = math.ceil(next_tat - now)
    writes[i] = next_tat
  end
end
reply[1] = granted
if granted == 1 then
  for i = 1, #KEYS do
    local ttl_ms = math.max(1, math.ceil((writes[i] - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%.3f', writes[i]), 'PX', ttl_ms)
  end
end
return reply
)lua";

const redis::Script& gcra_script() {
  static const redis::Script script{std::string(kGcraLua)};
  return script;
}

long long seconds_rounded_up(long long microseconds) {
  return (std::max(0LL, microseconds) + 999'999) / 1'000'000;
}

bool is_read(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS";
}

std::string format_number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6f", value);
  return buffer;
}

// The key of a client address. An IPv6 client usually holds a whole /64, so limiting single
// addresses would let it rotate through 2^64 of them: IPv6 is limited per /64. IPv4-mapped
// addresses count as their IPv4 address.
std::string ip_key_part(std::string_view remote) {
  error_code ec;
  auto address = asio::ip::make_address(std::string(remote), ec);
  if (ec) return std::string(remote.substr(0, 64));
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  if (address.is_v4()) return address.to_string();
  auto bytes = address.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return asio::ip::address_v6(bytes).to_string() + "/64";
}

prometheus::Family<prometheus::Counter>& decisions_family(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("mesh_ratelimit_decisions_total")
      .Help(
          "Rate limit decisions by limit: allowed once per limit a granted request was "
          "checked against, limited for the limit that denied a request.")
      .Register(registry);
}

prometheus::Family<prometheus::Counter>& redis_errors_family(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("mesh_ratelimit_redis_errors_total")
      .Help("Requests whose rate limits Redis could not check, by what the gateway did.")
      .Register(registry);
}

}  // namespace

long long Limit::capacity() const {
  const double requests = burst > 0 ? std::floor(burst) : std::ceil(rps);
  return std::max(1LL, static_cast<long long>(requests));
}

RateLimiterOptions rate_limiter_options(const config::Config& config) {
  RateLimiterOptions options;
  options.user = {config.ratelimit_user_rps, config.ratelimit_user_burst};
  options.ip = {config.ratelimit_ip_rps, config.ratelimit_ip_burst};
  options.fail_open_writes = config.ratelimit_fail_open_writes;
  return options;
}

std::string_view to_string(Scope scope) { return scope == Scope::user ? "user" : "ip"; }

bool rate_limited_path(std::string_view path) { return path.starts_with("/v1/"); }

RateLimiter::RateLimiter(redis::Client& redis, RateLimiterOptions options,
                         prometheus::Registry& registry)
    : redis_(redis),
      options_(std::move(options)),
      user_allowed_(decisions_family(registry).Add({{"scope", "user"}, {"result", "allowed"}})),
      user_limited_(decisions_family(registry).Add({{"scope", "user"}, {"result", "limited"}})),
      ip_allowed_(decisions_family(registry).Add({{"scope", "ip"}, {"result", "allowed"}})),
      ip_limited_(decisions_family(registry).Add({{"scope", "ip"}, {"result", "limited"}})),
      redis_errors_allowed_(redis_errors_family(registry).Add({{"decision", "allowed"}})),
      redis_errors_denied_(redis_errors_family(registry).Add({{"decision", "denied"}})) {}

Task<Decision> RateLimiter::check(std::optional<std::string_view> user, std::string_view ip) {
  struct Applied {
    Scope scope;
    long long capacity;
  };
  std::vector<Applied> applied;
  std::vector<std::string> keys;
  std::vector<std::string> args;
  const auto apply = [&](Scope scope, const Limit& limit, std::string key) {
    const double interval_us = 1e6 / limit.rps;
    applied.push_back({scope, limit.capacity()});
    keys.push_back(std::move(key));
    args.push_back(format_number(interval_us));
    args.push_back(format_number(interval_us * static_cast<double>(limit.capacity())));
  };
  if (user && options_.user.enabled()) {
    apply(Scope::user, options_.user, options_.key_prefix + "u:" + std::string(*user));
  }
  if (options_.ip.enabled()) {
    apply(Scope::ip, options_.ip, options_.key_prefix + "ip:" + ip_key_part(ip));
  }

  Decision decision;
  if (applied.empty()) co_return decision;
  redis::Result result = co_await gcra_script().run(redis_, std::move(keys), std::move(args));
  const auto& elements = result.reply.elements;
  if (!result.ok() || result.reply.kind != redis::Reply::Kind::array ||
      elements.size() != 1 + 4 * applied.size()) {
    decision.outcome = Decision::Outcome::unavailable;
    decision.failure = std::move(result);
    co_return decision;
  }

  const bool granted = elements[0].integer == 1;
  decision.outcome = granted ? Decision::Outcome::allowed : Decision::Outcome::limited;
  // The limit the headers describe: when granted, the one with the least left; when denied,
  // the denying one with the longest wait.
  std::optional<std::size_t> shown;
  for (std::size_t i = 0; i < applied.size(); ++i) {
    const auto* fields = &elements[1 + 4 * i];
    const bool allowed = fields[0].integer == 1;
    auto& counter = applied[i].scope == Scope::user ? (allowed ? user_allowed_ : user_limited_)
                                                    : (allowed ? ip_allowed_ : ip_limited_);
    if (granted == allowed) counter.Increment();
    if (granted != allowed) continue;
    const auto* best = shown ? &elements[1 + 4 * *shown] : nullptr;
    if (!best ||
        (granted ? fields[1].integer < best[1].integer : fields[2].integer > best[2].integer)) {
      shown = i;
    }
  }
  if (shown) {
    const auto* fields = &elements[1 + 4 * *shown];
    decision.scope = applied[*shown].scope;
    decision.limit = applied[*shown].capacity;
    decision.remaining = fields[1].integer;
    decision.retry_after_seconds =
        granted ? 0 : std::max(1LL, seconds_rounded_up(fields[2].integer));
    decision.reset_seconds = seconds_rounded_up(fields[3].integer);
  }
  co_return decision;
}

http::Middleware RateLimiter::middleware() {
  return [this](http::Request& request, const http::Next& next) -> Task<http::Response> {
    if (!rate_limited_path(request.path)) co_return co_await next(request);
    std::optional<std::string_view> user;
    if (request.principal) user = request.principal->user_id;
    const Decision decision = co_await check(user, request.remote_address);

    if (decision.outcome == Decision::Outcome::unavailable) {
      const bool pass = is_read(request.method) || options_.fail_open_writes;
      (pass ? redis_errors_allowed_ : redis_errors_denied_).Increment();
      const std::string reason =
          decision.failure.error ? decision.failure.error.message() : decision.failure.reply.string;
      redis_warning_.warn(*log::get("policy"),
                          pass ? "rate limits unchecked (Redis unavailable): request allowed"
                               : "rate limits unchecked (Redis unavailable): write refused",
                          reason);
      if (!pass) {
        auto response =
            http::problem(503, "rate limits cannot be checked right now; retry shortly");
        response.set_header("Retry-After", "1");
        co_return response;
      }
      co_return co_await next(request);
    }

    http::Response response;
    if (decision.outcome == Decision::Outcome::limited) {
      const auto scope = to_string(*decision.scope);
      response = http::problem(
          429,
          "rate limit per " + std::string(scope == "ip" ? "client IP" : "user") + " exceeded (" +
              std::to_string(decision.limit) + " requests at once); retry in " +
              std::to_string(decision.retry_after_seconds) + " s",
          {}, boost::json::object{{"limit", scope}});
      response.set_header("Retry-After", std::to_string(decision.retry_after_seconds));
    } else {
      response = co_await next(request);
    }
    if (decision.scope) {
      response.set_header("RateLimit-Limit", std::to_string(decision.limit));
      response.set_header("RateLimit-Remaining", std::to_string(decision.remaining));
      response.set_header("RateLimit-Reset", std::to_string(decision.reset_seconds));
    }
    co_return response;
  };
}

}  // namespace mesh::policy
