#pragma once
// Configuration: command-line flags, MESH_<NAME> environment variables and a TOML file
// (--config), in that order of precedence over the defaults, validated once into an immutable
// struct. Secrets come only from the environment or files.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace mesh::config {

enum class Role { gateway, ingester, worker, updater, stream, consumer, all };

struct Config {
  Role role = Role::all;
  std::string listen = "0.0.0.0:8080";
  std::string kafka_brokers = "embedded";
  std::string pg_url = "postgresql://mesh@127.0.0.1:5432/mesh";
  std::string redis_url = "redis://127.0.0.1:6379";
  unsigned threads = 1;
  unsigned cpu_threads = 2;
  std::string log_level = "info";

  // HTTP server
  std::size_t http_body_limit = 1024 * 1024;
  std::size_t http_header_limit = 16 * 1024;
  std::chrono::milliseconds http_read_timeout{10'000};
  std::chrono::milliseconds http_idle_timeout{60'000};
  std::size_t http_max_connections = 10'000;

  // Auth
  std::string jwt_secret;  // only from MESH_JWT_SECRET or --jwt-secret-file
  std::string jwt_issuer = "mesh";
  std::chrono::seconds jwt_ttl{3600};
  unsigned long long password_ops_limit = 2;
  std::size_t password_mem_kib = 19 * 1024;

  // Kafka
  std::chrono::milliseconds kafka_ack_timeout{5000};
  int kafka_partitions = 12;
  int kafka_replication = 1;
  std::chrono::milliseconds kafka_session_timeout{10'000};

  // Postgres and Redis
  std::size_t pg_pool_size = 8;
  std::chrono::milliseconds pg_timeout{5000};
  std::chrono::milliseconds redis_timeout{1000};
  std::chrono::seconds pending_cache_ttl{900};

  // Worker and updater
  std::size_t worker_max_inflight = 256;
  int worker_max_attempts = 3;
  std::size_t updater_batch_size = 1000;

  // Market data: ingester
  std::string ingester_source =
      "wss://ws-feed.exchange.coinbase.com";  // URL, replay:FILE, synthetic
  std::vector<std::string> ingester_products{"BTC-USD", "ETH-USD"};
  double ingester_replay_speed = 1.0;  // 0: as fast as possible
  std::chrono::milliseconds ingester_silence_timeout{30'000};
  std::string ingester_ca_file;  // extra trusted CA bundle (PEM); empty: the system store

  // Market data: consumer and stream
  std::size_t consumer_batch_size = 5000;
  std::size_t stream_client_queue = 256;  // events buffered per SSE client
  std::chrono::milliseconds stream_heartbeat{15'000};
  std::string stream_url;  // gateway: where /v1/stream/* goes when the stream role runs apart

  // Streaming sessions (stream role)
  std::chrono::milliseconds session_lock_ttl{60'000};  // a crashed replica's locks expire after it
  std::chrono::milliseconds session_refresh{20'000};   // lock refresh interval of a live session
  std::string node_name;  // this replica's name in session listings; default: the host name

  // Gateway traffic policies. A rate of 0 turns that limit off.
  double ratelimit_user_rps = 0;
  double ratelimit_user_burst = 0;  // 0: the rate, rounded up (one second's worth)
  double ratelimit_ip_rps = 0;
  double ratelimit_ip_burst = 0;
  bool ratelimit_fail_open_writes = false;           // writes when Redis is down: allow, or 503
  std::chrono::milliseconds market_cache_ttl{1000};  // Redis cache of market GETs; 0: off
  std::vector<std::string> cors_origins;             // allowed Origins ("*": any); empty: no CORS
  std::chrono::seconds cors_max_age{600};
  std::chrono::milliseconds overview_timeout{500};  // per source of /v1/users/me/overview

  // External identity (OIDC): RS256/ES256 tokens of this issuer and audience, keys from a JWKS
  // file or http(s) URL. Empty issuer: only the gateway's own HS256 tokens.
  std::string oidc_issuer;
  std::string oidc_audience;
  std::string oidc_jwks;  // path, file://PATH, http://... or https://...
  std::chrono::seconds oidc_jwks_refresh{300};

  // Shutdown
  std::chrono::milliseconds drain_timeout{20'000};

  bool runs(Role r) const { return role == r || role == Role::all; }
};

std::string_view to_string(Role role);

struct ParseResult {
  std::optional<Config> config;  // set when the process should go on and run
  int exit_code = 0;             // otherwise: exit with this code
  std::string output;            // text for stdout (help, version, check-config verdict)
  std::string error;             // text for stderr
};

// Parses argv (argv[0] is the program name) and the environment. Never throws: errors come
// back with exit code 1 and a message naming the option at fault.
ParseResult parse(const std::vector<std::string>& args);

}  // namespace mesh::config
