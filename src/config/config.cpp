#include "mesh/config/config.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "mesh/http/server.hpp"
#include "mesh/market/events.hpp"

namespace mesh::config {
namespace {

constexpr std::array<std::pair<std::string_view, Role>, 7> kRoles{{
    {"gateway", Role::gateway},
    {"ingester", Role::ingester},
    {"worker", Role::worker},
    {"updater", Role::updater},
    {"stream", Role::stream},
    {"consumer", Role::consumer},
    {"all", Role::all},
}};

std::string read_secret_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::invalid_argument("--jwt-secret-file: cannot read " + path);
  std::stringstream content;
  content << file.rdbuf();
  std::string secret = content.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  return secret;
}

// Checks that need more than one option, or more than a range.
void validate(const Config& config) {
  http::parse_endpoint(config.listen);
  if (config.kafka_brokers.empty())
    throw std::invalid_argument("--kafka-brokers must not be empty");
  if (config.redis_url.rfind("redis://", 0) != 0) {
    throw std::invalid_argument("--redis-url must look like redis://host:port[/db]");
  }
  if (config.pg_url.empty()) throw std::invalid_argument("--pg-url must not be empty");
  const auto& source = config.ingester_source;
  if (source != "synthetic" && source.rfind("ws://", 0) != 0 && source.rfind("wss://", 0) != 0 &&
      !(source.rfind("replay:", 0) == 0 && source.size() > 7)) {
    throw std::invalid_argument(
        "--ingester-source must be a ws:// or wss:// URL, replay:FILE or synthetic");
  }
  if (config.ingester_products.empty())
    throw std::invalid_argument("--ingester-products must name at least one product");
  for (const auto& product : config.ingester_products) {
    if (!market::is_product(product)) {
      throw std::invalid_argument("--ingester-products: '" + product +
                                  "' is not a product id like BTC-USD");
    }
  }
  if (!config.stream_url.empty() && config.stream_url.rfind("http://", 0) != 0)
    throw std::invalid_argument("--stream-url must be an http:// URL");
  if (config.session_refresh >= config.session_lock_ttl) {
    throw std::invalid_argument("--session-refresh-ms must be below --session-lock-ttl-ms");
  }
  if (!config.oidc_issuer.empty() && (config.oidc_audience.empty() || config.oidc_jwks.empty())) {
    throw std::invalid_argument("--oidc-issuer needs --oidc-audience and --oidc-jwks");
  }
  for (const auto& origin : config.cors_origins) {
    if (origin != "*" && origin.rfind("http://", 0) != 0 && origin.rfind("https://", 0) != 0) {
      throw std::invalid_argument("--cors-origins: '" + origin +
                                  "' is not '*' or an http(s):// origin");
    }
  }
  // The stream role verifies the bearer tokens of session streams.
  if ((config.runs(Role::gateway) || config.runs(Role::stream)) && config.jwt_secret.size() < 32) {
    throw std::invalid_argument(
        config.jwt_secret.empty()
            ? "the gateway needs a JWT secret: set MESH_JWT_SECRET or --jwt-secret-file"
            : "the JWT secret must be at least 32 bytes");
  }
}

}  // namespace

std::string_view to_string(Role role) {
  for (const auto& [name, value] : kRoles) {
    if (value == role) return name;
  }
  return "unknown";
}

ParseResult parse(const std::vector<std::string>& args) {
  Config config;
  CLI::App app{"mesh: one binary for every role of an event-driven microservice system", "mesh"};
  app.set_version_flag("--version", std::string("mesh ") + MESH_VERSION);
  app.set_config("--config", "", "TOML configuration file (keys are the long option names)");
  app.allow_config_extras(CLI::config_extras_mode::error);

  std::map<std::string, Role> role_map;
  for (const auto& [name, value] : kRoles) role_map.emplace(name, value);
  std::string role_text = "all";
  bool check_config = false;
  std::string jwt_secret_file;
  long long read_timeout_ms = config.http_read_timeout.count();
  long long idle_timeout_ms = config.http_idle_timeout.count();
  long long ack_timeout_ms = config.kafka_ack_timeout.count();
  long long session_timeout_ms = config.kafka_session_timeout.count();
  long long pg_timeout_ms = config.pg_timeout.count();
  long long redis_timeout_ms = config.redis_timeout.count();
  long long drain_timeout_ms = config.drain_timeout.count();
  long long jwt_ttl_s = config.jwt_ttl.count();
  long long pending_ttl_s = config.pending_cache_ttl.count();
  long long silence_timeout_ms = config.ingester_silence_timeout.count();
  long long heartbeat_ms = config.stream_heartbeat.count();
  long long session_lock_ttl_ms = config.session_lock_ttl.count();
  long long session_refresh_ms = config.session_refresh.count();
  long long market_cache_ttl_ms = config.market_cache_ttl.count();
  long long cors_max_age_s = config.cors_max_age.count();
  long long overview_timeout_ms = config.overview_timeout.count();
  long long oidc_refresh_s = config.oidc_jwks_refresh.count();

  auto add = [&app](const std::string& flag, auto& target, const std::string& help) {
    return app.add_option(flag, target, help)->capture_default_str();
  };

  add("--role", role_text,
      "Role to run: gateway, ingester, worker, updater, stream, consumer, or all (every role in "
      "one process)")
      ->check(
          CLI::IsMember({"gateway", "ingester", "worker", "updater", "stream", "consumer", "all"}));
  app.add_flag("--check-config", check_config, "Validate the configuration and exit 0 or 1");
  add("--listen", config.listen, "HTTP listen address host:port of this role");
  add("--kafka-brokers", config.kafka_brokers,
      "Kafka bootstrap servers, or 'embedded' for the in-process mock cluster (not durable)");
  add("--pg-url", config.pg_url, "Postgres libpq URI");
  add("--redis-url", config.redis_url, "Redis URL redis://host:port[/db]");
  add("--threads", config.threads, "I/O threads")->check(CLI::Range(1u, 256u));
  add("--cpu-threads", config.cpu_threads, "Threads for CPU-heavy work (task execution, hashing)")
      ->check(CLI::Range(1u, 256u));
  add("--log-level", config.log_level, "trace, debug, info, warn, error, critical or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  add("--http-body-limit", config.http_body_limit, "Largest accepted request body in bytes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 20));
  add("--http-header-limit", config.http_header_limit, "Largest accepted request header in bytes")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 20));
  add("--http-read-timeout-ms", read_timeout_ms, "Deadline to read one whole request")
      ->check(CLI::Range(1LL, 3'600'000LL));
  add("--http-idle-timeout-ms", idle_timeout_ms, "Keep-alive wait for the next request")
      ->check(CLI::Range(1LL, 3'600'000LL));
  add("--http-max-connections", config.http_max_connections, "Open connections at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
  app.add_option("--jwt-secret-file", jwt_secret_file,
                 "File holding the HS256 secret (else env MESH_JWT_SECRET)");
  app.get_config_ptr()->description("TOML configuration file (keys are the long option names)");
  add("--jwt-issuer", config.jwt_issuer, "Issuer claim of tokens");
  add("--jwt-ttl", jwt_ttl_s, "Lifetime of issued tokens in seconds")
      ->check(CLI::Range(1LL, 604800LL));
  add("--password-ops-limit", config.password_ops_limit, "argon2id passes")
      ->check(CLI::Range(1ULL, 10ULL));
  add("--password-mem-kib", config.password_mem_kib, "argon2id memory in KiB")
      ->check(CLI::Range(std::size_t{8}, std::size_t{1} << 20));
  add("--kafka-ack-timeout-ms", ack_timeout_ms,
      "How long the gateway waits for Kafka's acknowledgement before answering 503")
      ->check(CLI::Range(100LL, 300'000LL));
  add("--kafka-partitions", config.kafka_partitions, "Partitions of topics created at start")
      ->check(CLI::Range(1, 1024));
  add("--kafka-replication", config.kafka_replication,
      "Replication factor of topics created at start")
      ->check(CLI::Range(1, 16));
  add("--kafka-session-timeout-ms", session_timeout_ms,
      "Consumer group session timeout: how soon a dead consumer's partitions move")
      ->check(CLI::Range(1000LL, 300'000LL));
  add("--pg-pool-size", config.pg_pool_size, "Postgres connections per process")
      ->check(CLI::Range(std::size_t{1}, std::size_t{512}));
  add("--pg-timeout-ms", pg_timeout_ms, "Deadline of one Postgres query")
      ->check(CLI::Range(10LL, 600'000LL));
  add("--redis-timeout-ms", redis_timeout_ms, "Deadline of one Redis command")
      ->check(CLI::Range(10LL, 600'000LL));
  add("--pending-cache-ttl", pending_ttl_s,
      "Seconds an accepted task stays readable from Redis before the updater has stored it")
      ->check(CLI::Range(10LL, 86'400LL));
  add("--worker-max-inflight", config.worker_max_inflight,
      "Tasks a worker runs or waits on at once")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}));
  add("--worker-max-attempts", config.worker_max_attempts,
      "Executions of a failing task before it goes to tasks.dlq")
      ->check(CLI::Range(1, 100));
  add("--updater-batch-size", config.updater_batch_size, "Records per updater transaction at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}));
  add("--ingester-source", config.ingester_source,
      "Market feed: a wss:// or ws:// URL, replay:FILE.jsonl (a recorded feed) or synthetic "
      "(random-walk trades, no network)");
  add("--ingester-products", config.ingester_products,
      "Products to subscribe to (comma separated); the gateway also lists them as known markets")
      ->delimiter(',');
  add("--ingester-replay-speed", config.ingester_replay_speed,
      "Replay speed factor for replay:FILE (2 = twice as fast; 0 = as fast as possible)")
      ->check(CLI::Range(0.0, 1'000'000.0));
  add("--ingester-silence-timeout-ms", silence_timeout_ms,
      "Reconnect when the feed sends nothing for this long")
      ->check(CLI::Range(100LL, 3'600'000LL));
  add("--ingester-ca-file", config.ingester_ca_file,
      "PEM file of CA certificates to trust for wss:// besides the system store");
  add("--consumer-batch-size", config.consumer_batch_size,
      "Trades per consumer transaction at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}));
  add("--stream-client-queue", config.stream_client_queue,
      "Events buffered per SSE client; a slower client loses its oldest events")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65'536}));
  add("--stream-heartbeat-ms", heartbeat_ms, "Interval of SSE comment heartbeats")
      ->check(CLI::Range(10LL, 3'600'000LL));
  add("--stream-url", config.stream_url,
      "Gateway: base URL (http://host:port) of the stream role for /v1/stream/*; empty serves "
      "them in-process (role all)");
  add("--session-lock-ttl-ms", session_lock_ttl_ms,
      "Stream: TTL of a session's Redis lock; a crashed replica's sessions free after it")
      ->check(CLI::Range(1000LL, 3'600'000LL));
  add("--session-refresh-ms", session_refresh_ms,
      "Stream: how often a live session refreshes its lock (below the TTL)")
      ->check(CLI::Range(100LL, 3'600'000LL));
  add("--node-name", config.node_name,
      "This replica's name in session listings (default: the host name)");
  add("--ratelimit-user-rps", config.ratelimit_user_rps,
      "Gateway: requests per second per user (0: no limit)")
      ->check(CLI::Range(0.0, 1'000'000.0));
  add("--ratelimit-user-burst", config.ratelimit_user_burst,
      "Gateway: burst per user (0: one second's worth)")
      ->check(CLI::Range(0.0, 1'000'000.0));
  add("--ratelimit-ip-rps", config.ratelimit_ip_rps,
      "Gateway: requests per second per client IP (0: no limit)")
      ->check(CLI::Range(0.0, 1'000'000.0));
  add("--ratelimit-ip-burst", config.ratelimit_ip_burst,
      "Gateway: burst per client IP (0: one second's worth)")
      ->check(CLI::Range(0.0, 1'000'000.0));
  add("--ratelimit-fail-open-writes", config.ratelimit_fail_open_writes,
      "Gateway: when Redis is down, let writes through unlimited (true) or answer 503 (false); "
      "reads always pass");
  add("--market-cache-ttl-ms", market_cache_ttl_ms,
      "Gateway: Redis cache TTL of market GET answers (0: no cache)")
      ->check(CLI::Range(0LL, 3'600'000LL));
  add("--cors-origins", config.cors_origins,
      "Origins allowed by CORS, comma separated ('*': any); empty: no CORS headers")
      ->delimiter(',');
  add("--cors-max-age", cors_max_age_s, "Seconds a browser may cache a CORS preflight")
      ->check(CLI::Range(0LL, 86'400LL));
  add("--overview-timeout-ms", overview_timeout_ms,
      "Gateway: deadline of each source of /v1/users/me/overview")
      ->check(CLI::Range(10LL, 60'000LL));
  add("--oidc-issuer", config.oidc_issuer,
      "Accept RS256/ES256 tokens of this OIDC issuer besides mesh's own (empty: off)");
  add("--oidc-audience", config.oidc_audience, "Required audience of OIDC tokens");
  add("--oidc-jwks", config.oidc_jwks, "OIDC signing keys: a JWKS file path or an http(s):// URL");
  add("--oidc-jwks-refresh", oidc_refresh_s, "Seconds between JWKS refreshes from a URL")
      ->check(CLI::Range(10LL, 86'400LL));
  add("--drain-timeout-ms", drain_timeout_ms, "Deadline to drain on SIGTERM")
      ->check(CLI::Range(0LL, 600'000LL));

  // CLI11 lets a config file beat the environment; mesh wants flag > env > file, so options
  // given only in the environment are passed as if they were flags.
  std::vector<std::string> effective(args.begin() + (args.empty() ? 0 : 1), args.end());
  for (const CLI::Option* option : app.get_options()) {
    const auto& names = option->get_lnames();
    if (names.empty() || names.front() == "help" || names.front() == "version" ||
        names.front() == "check-config") {
      continue;
    }
    const std::string flag = "--" + names.front();
    const bool given = std::any_of(args.begin(), args.end(), [&](const std::string& arg) {
      return arg == flag || arg.rfind(flag + "=", 0) == 0;
    });
    std::string env = "MESH_" + names.front();
    for (auto& c : env)
      c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (const char* value = std::getenv(env.c_str()); value != nullptr && !given) {
      effective.push_back(flag + "=" + value);
    }
  }
  std::vector<std::string> reversed(effective.rbegin(), effective.rend());
  ParseResult result;
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.output = app.help();
    return result;
  } catch (const CLI::CallForVersion&) {
    result.output = std::string("mesh ") + MESH_VERSION + "\n";
    return result;
  } catch (const CLI::ParseError& e) {
    result.exit_code = 1;
    result.error = std::string("mesh: ") + e.what() + "\n";
    return result;
  }

  try {
    config.role = role_map.at(role_text);
    config.http_read_timeout = std::chrono::milliseconds(read_timeout_ms);
    config.http_idle_timeout = std::chrono::milliseconds(idle_timeout_ms);
    config.kafka_ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
    config.kafka_session_timeout = std::chrono::milliseconds(session_timeout_ms);
    config.pg_timeout = std::chrono::milliseconds(pg_timeout_ms);
    config.redis_timeout = std::chrono::milliseconds(redis_timeout_ms);
    config.drain_timeout = std::chrono::milliseconds(drain_timeout_ms);
    config.jwt_ttl = std::chrono::seconds(jwt_ttl_s);
    config.pending_cache_ttl = std::chrono::seconds(pending_ttl_s);
    config.ingester_silence_timeout = std::chrono::milliseconds(silence_timeout_ms);
    config.stream_heartbeat = std::chrono::milliseconds(heartbeat_ms);
    config.session_lock_ttl = std::chrono::milliseconds(session_lock_ttl_ms);
    config.session_refresh = std::chrono::milliseconds(session_refresh_ms);
    config.market_cache_ttl = std::chrono::milliseconds(market_cache_ttl_ms);
    config.cors_max_age = std::chrono::seconds(cors_max_age_s);
    config.overview_timeout = std::chrono::milliseconds(overview_timeout_ms);
    config.oidc_jwks_refresh = std::chrono::seconds(oidc_refresh_s);
    if (config.node_name.empty()) {
      char host[256] = {};
      config.node_name = ::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0'
                             ? std::string(host)
                             : std::string("mesh");
    }
    if (!jwt_secret_file.empty()) {
      config.jwt_secret = read_secret_file(jwt_secret_file);
    } else if (const char* secret = std::getenv("MESH_JWT_SECRET"); secret != nullptr) {
      config.jwt_secret = secret;
    }
    validate(config);
  } catch (const std::exception& e) {
    result.exit_code = 1;
    result.error = std::string("mesh: invalid configuration: ") + e.what() + "\n";
    return result;
  }
  if (check_config) {
    result.output = "configuration is valid (role " + role_text + ")\n";
    return result;
  }
  result.config = std::move(config);
  return result;
}

}  // namespace mesh::config
