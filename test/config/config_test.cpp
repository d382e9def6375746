#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "mesh/config/config.hpp"

using mesh::config::parse;
using mesh::config::Role;

namespace {

const std::string kSecret(40, 's');

// Sets an environment variable for one scope.
struct ScopedEnv {
  ScopedEnv(const char* name, const std::string& value) : name(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name); }
  const char* name;
};

std::string write_file(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << content;
  return path.string();
}

}  // namespace

TEST_CASE("defaults apply when nothing is given") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  auto result = parse({"mesh"});
  REQUIRE(result.config);
  CHECK(result.config->role == Role::all);
  CHECK(result.config->listen == "0.0.0.0:8080");
  CHECK(result.config->kafka_brokers == "embedded");
  CHECK(result.config->http_body_limit == 1024 * 1024);
}

TEST_CASE("precedence is flag over environment over file over default") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  const auto file = write_file("mesh-precedence.toml",
                               "listen = \"127.0.0.1:1111\"\nthreads = 3\npg-pool-size = 5\n");
  {
    auto result = parse({"mesh", "--config", file});
    REQUIRE(result.config);
    CHECK(result.config->listen == "127.0.0.1:1111");
    CHECK(result.config->threads == 3);
    CHECK(result.config->pg_pool_size == 5);
  }
  ScopedEnv listen("MESH_LISTEN", "127.0.0.1:2222");
  ScopedEnv threads("MESH_THREADS", "4");
  {
    auto result = parse({"mesh", "--config", file});
    REQUIRE(result.config);
    CHECK(result.config->listen == "127.0.0.1:2222");
    CHECK(result.config->threads == 4);
    CHECK(result.config->pg_pool_size == 5);
  }
  {
    auto result = parse({"mesh", "--config", file, "--listen=127.0.0.1:3333", "--threads", "6"});
    REQUIRE(result.config);
    CHECK(result.config->listen == "127.0.0.1:3333");
    CHECK(result.config->threads == 6);
  }
  ScopedEnv config_env("MESH_CONFIG", file);
  {
    auto result = parse({"mesh"});
    REQUIRE(result.config);
    CHECK(result.config->pg_pool_size == 5);
  }
}

TEST_CASE("unknown keys in the config file are errors") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  const auto file = write_file("mesh-unknown.toml", "listen = \"127.0.0.1:1\"\nlisten-typo = 3\n");
  auto result = parse({"mesh", "--config", file});
  CHECK_FALSE(result.config);
  CHECK(result.exit_code == 1);
  CHECK(result.error.find("listen-typo") != std::string::npos);
}

TEST_CASE("invalid values are rejected with the option named") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  auto bad_role = parse({"mesh", "--role", "chef"});
  CHECK(bad_role.exit_code == 1);
  CHECK(bad_role.error.find("--role") != std::string::npos);
  auto bad_threads = parse({"mesh", "--threads", "0"});
  CHECK(bad_threads.exit_code == 1);
  auto bad_listen = parse({"mesh", "--listen", "localhost"});
  CHECK(bad_listen.exit_code == 1);
  CHECK(bad_listen.error.find("listen") != std::string::npos);
  auto bad_redis = parse({"mesh", "--redis-url", "http://x"});
  CHECK(bad_redis.exit_code == 1);
}

TEST_CASE("market options: every role runs; sources, products and the stream URL are checked") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  for (const char* role : {"ingester", "stream", "consumer"}) {
    auto result = parse({"mesh", "--role", role});
    REQUIRE(result.config);
    CHECK(mesh::config::to_string(result.config->role) == role);
  }
  auto products = parse({"mesh", "--ingester-products", "BTC-EUR,SOL-USD"});
  REQUIRE(products.config);
  CHECK(products.config->ingester_products == std::vector<std::string>{"BTC-EUR", "SOL-USD"});
  const auto toml =
      write_file("mesh-products.toml", "ingester-products = [\"SOL-EUR\", \"ETH-BTC\"]\n");
  auto from_file = parse({"mesh", "--config", toml});
  REQUIRE(from_file.config);
  CHECK(from_file.config->ingester_products == std::vector<std::string>{"SOL-EUR", "ETH-BTC"});
  auto bad_product = parse({"mesh", "--ingester-products", "btc-usd"});
  CHECK(bad_product.exit_code == 1);
  CHECK(bad_product.error.find("--ingester-products") != std::string::npos);
  for (const char* source : {"synthetic", "replay:/tmp/feed.jsonl", "ws://127.0.0.1:1/",
                             "wss://ws-feed.exchange.coinbase.com"}) {
    CHECK(parse({"mesh", "--ingester-source", source}).config);
  }
  for (const char* source : {"http://x", "replay:", "file.jsonl", ""}) {
    auto result = parse({"mesh", "--ingester-source", source});
    CHECK(result.exit_code == 1);
    CHECK(result.error.find("--ingester-source") != std::string::npos);
  }
  CHECK(parse({"mesh", "--stream-url", "ftp://x"}).exit_code == 1);
  auto stream_url = parse({"mesh", "--stream-url", "http://stream:8080"});
  REQUIRE(stream_url.config);
  CHECK(stream_url.config->stream_url == "http://stream:8080");
}

TEST_CASE("the gateway needs a JWT secret of at least 32 bytes") {
  ::unsetenv("MESH_JWT_SECRET");
  auto missing = parse({"mesh", "--role", "gateway"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.error.find("MESH_JWT_SECRET") != std::string::npos);
  CHECK(parse({"mesh", "--role", "worker"}).config);  // workers do not verify tokens
  // The stream role verifies the tokens of session streams.
  CHECK(parse({"mesh", "--role", "stream"}).exit_code == 1);
  {
    ScopedEnv secret("MESH_JWT_SECRET", "short");
    CHECK(parse({"mesh", "--role", "gateway"}).exit_code == 1);
  }
  const auto file = write_file("mesh-secret", kSecret + "\n");
  auto from_file = parse({"mesh", "--role", "gateway", "--jwt-secret-file", file});
  REQUIRE(from_file.config);
  CHECK(from_file.config->jwt_secret == kSecret);
}

TEST_CASE("session, traffic policy and OIDC options are parsed and checked") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  auto defaults = parse({"mesh"});
  REQUIRE(defaults.config);
  CHECK(defaults.config->session_lock_ttl == std::chrono::seconds(60));
  CHECK(defaults.config->session_refresh == std::chrono::seconds(20));
  CHECK_FALSE(defaults.config->node_name.empty());
  CHECK(defaults.config->ratelimit_user_rps == 0);
  CHECK(defaults.config->cors_origins.empty());
  auto set = parse({"mesh", "--ratelimit-user-rps", "50", "--ratelimit-ip-burst", "20",
                    "--cors-origins", "https://app.example,http://localhost:3000", "--node-name",
                    "stream-1", "--session-lock-ttl-ms", "5000", "--session-refresh-ms", "1000"});
  REQUIRE(set.config);
  CHECK(set.config->ratelimit_user_rps == 50);
  CHECK(set.config->ratelimit_ip_burst == 20);
  CHECK(set.config->cors_origins ==
        std::vector<std::string>{"https://app.example", "http://localhost:3000"});
  CHECK(set.config->node_name == "stream-1");
  CHECK(set.config->session_lock_ttl == std::chrono::seconds(5));
  auto refresh_too_slow =
      parse({"mesh", "--session-lock-ttl-ms", "5000", "--session-refresh-ms", "5000"});
  CHECK(refresh_too_slow.exit_code == 1);
  CHECK(refresh_too_slow.error.find("--session-refresh-ms") != std::string::npos);
  auto bad_origin = parse({"mesh", "--cors-origins", "app.example"});
  CHECK(bad_origin.exit_code == 1);
  CHECK(bad_origin.error.find("--cors-origins") != std::string::npos);
  auto half_oidc = parse({"mesh", "--oidc-issuer", "https://issuer.example/"});
  CHECK(half_oidc.exit_code == 1);
  CHECK(half_oidc.error.find("--oidc-audience") != std::string::npos);
  CHECK(parse({"mesh", "--ratelimit-user-rps", "-1"}).exit_code == 1);
}

TEST_CASE("check-config, help and version exit without running") {
  ScopedEnv secret("MESH_JWT_SECRET", kSecret);
  auto ok = parse({"mesh", "--check-config", "--role", "gateway"});
  CHECK_FALSE(ok.config);
  CHECK(ok.exit_code == 0);
  CHECK(ok.output.find("valid") != std::string::npos);
  auto bad = parse({"mesh", "--check-config", "--threads", "999"});
  CHECK(bad.exit_code == 1);
  auto help = parse({"mesh", "--help"});
  CHECK(help.exit_code == 0);
  for (const char* role :
       {"gateway", "ingester", "worker", "updater", "stream", "consumer", "all"}) {
    CHECK(help.output.find(role) != std::string::npos);
  }
  auto version = parse({"mesh", "--version"});
  CHECK(version.output.rfind("mesh ", 0) == 0);
}
