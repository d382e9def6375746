#include "app_fixture.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <future>
#include <regex>
#include <stdexcept>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <prometheus/registry.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/auth/base64url.hpp"
#include "mesh/core/log.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::roles::test {
namespace json = boost::json;

config::Config test_config() {
  config::Config config;
  config.role = config::Role::all;
  config.listen = "127.0.0.1:0";
  config.kafka_brokers = "embedded";
  config.pg_url = testing::fresh_pg_database();
  config.redis_url = testing::redis_url();
  config.threads = 2;
  config.cpu_threads = 2;
  config.log_level = "warn";
  config.jwt_secret = std::string(kJwtSecret);
  config.jwt_issuer = std::string(kJwtIssuer);
  config.password_ops_limit = 1;
  config.password_mem_kib = 8;
  config.kafka_partitions = 3;
  config.kafka_ack_timeout = 1000ms;
  config.drain_timeout = 2000ms;
  config.pg_pool_size = 4;
  // Tests never reach the Internet: the ingester runs its random-walk source.
  config.ingester_source = "synthetic";
  return config;
}

AppFixture::AppFixture(const std::function<void(config::Config&)>& adjust)
    : config_(test_config()) {
  if (adjust) adjust(config_);
  log::set_level(config_.log_level);
  runtime_ = std::make_unique<core::Runtime>(2, 2);
  app_ = std::make_unique<App>(config_, *runtime_);
  auto started_future = started_.get_future();
  thread_ = std::thread([this] {
    runtime_->run([this]() -> Task<int> {
      std::exception_ptr failure;
      try {
        co_await app_->start();
      } catch (...) {
        failure = std::current_exception();
      }
      if (failure) {
        // start() has already stopped whatever it had started.
        started_.set_exception(failure);
        co_return 1;
      }
      started_.set_value();
      co_await runtime_->wait_for_stop();
      co_await app_->stop();
      co_return 0;
    });
  });
  try {
    started_future.get();
  } catch (...) {
    runtime_->request_stop();
    thread_.join();
    throw;
  }
  port_ = app_->port();
}

AppFixture::~AppFixture() {
  runtime_->request_stop();
  thread_.join();
  app_.reset();
  runtime_.reset();
}

testing::HttpReply AppFixture::get(const std::string& target, const std::string& token,
                                   Headers headers) {
  testing::HttpCall call;
  call.method = "GET";
  call.target = target;
  call.headers = std::move(headers);
  if (!token.empty()) call.headers.emplace_back("Authorization", "Bearer " + token);
  return testing::http(port_, call);
}

testing::HttpReply AppFixture::post(const std::string& target, const std::string& body,
                                    const std::string& token, Headers headers) {
  return testing::http_json(port_, "POST", target, body, token, std::move(headers));
}

std::string AppFixture::register_user(const std::string& username, const std::string& password) {
  const auto reply =
      post("/v1/auth/register",
           json::serialize(json::object{{"username", username}, {"password", password}}));
  INFO(reply.body);
  REQUIRE(reply.status == 201);
  return std::string(reply.json().at("id").as_string());
}

std::string AppFixture::login(const std::string& username, const std::string& password) {
  const auto reply =
      post("/v1/auth/login",
           json::serialize(json::object{{"username", username}, {"password", password}}));
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return std::string(reply.json().at("access_token").as_string());
}

AppFixture::User AppFixture::new_user(std::string_view prefix) {
  User user;
  user.username = std::string(prefix) + "_" + std::to_string(next_user_++);
  user.id = register_user(user.username);
  user.token = login(user.username);
  return user;
}

std::string AppFixture::submit(const std::string& token, std::string_view type,
                               std::string_view payload_json, Headers headers) {
  const std::string body = "{\"type\":" + json::serialize(json::value(json::string(type))) +
                           ",\"payload\":" + std::string(payload_json) + "}";
  const auto reply = post("/v1/tasks", body, token, std::move(headers));
  INFO(body << " -> " << reply.body);
  REQUIRE(reply.status == 202);
  return std::string(reply.json().at("id").as_string());
}

json::object AppFixture::task(const std::string& token, const std::string& id) {
  const auto reply = get("/v1/tasks/" + id, token);
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return reply.json().as_object();
}

json::object AppFixture::wait_final(const std::string& token, const std::string& id,
                                    std::chrono::milliseconds deadline) {
  json::object last;
  const bool final = testing::wait_until(
      [&] {
        const auto reply = get("/v1/tasks/" + id, token);
        if (reply.status != 200) return false;
        last = reply.json().as_object();
        const auto& status = last.at("status");
        return status == "succeeded" || status == "failed";
      },
      deadline, 20ms);
  INFO("task " << id << " last seen as " << json::serialize(last));
  REQUIRE(final);
  return last;
}

std::vector<json::object> AppFixture::list_all(const std::string& token, const std::string& query,
                                               int limit) {
  std::vector<json::object> items;
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    std::string target = "/v1/tasks?limit=" + std::to_string(limit);
    if (!query.empty()) target += "&" + query;
    if (!cursor.empty()) target += "&cursor=" + cursor;
    const auto reply = get(target, token);
    INFO(target << " -> " << reply.body);
    REQUIRE(reply.status == 200);
    const auto body = reply.json().as_object();
    for (const auto& item : body.at("items").as_array()) items.push_back(item.as_object());
    if (body.at("next_cursor").is_null()) return items;
    cursor = std::string(body.at("next_cursor").as_string());
  }
  FAIL("list_all: more than 1000 pages");
  return items;
}

namespace {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};

}  // namespace

std::optional<std::string> AppFixture::sql_value(const std::string& sql) const {
  PGconn* conn = PQconnectdb(config_.pg_url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("sql_value: " + message);
  }
  std::unique_ptr<PGresult, PgResultDeleter> result(PQexec(conn, sql.c_str()));
  const auto status = PQresultStatus(result.get());
  if (status != PGRES_TUPLES_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("sql_value: " + sql + ": " + message);
  }
  std::optional<std::string> value;
  if (PQntuples(result.get()) > 0 && !PQgetisnull(result.get(), 0, 0))
    value = PQgetvalue(result.get(), 0, 0);
  result.reset();
  PQfinish(conn);
  return value;
}

long long AppFixture::sql_count(const std::string& sql) const {
  const auto value = sql_value(sql);
  return value ? std::stoll(*value) : 0;
}

bool AppFixture::serving() {
  try {
    return get("/healthz").status == 200;
  } catch (const std::exception&) {
    return false;
  }
}

double metric(App& app, std::string_view name,
              const std::vector<std::pair<std::string, std::string>>& labels) {
  double total = 0;
  for (const auto& family : app.metrics().Collect()) {
    if (family.name != name) continue;
    for (const auto& sample : family.metric) {
      const bool matches = std::all_of(labels.begin(), labels.end(), [&](const auto& wanted) {
        return std::any_of(sample.label.begin(), sample.label.end(), [&](const auto& label) {
          return label.name == wanted.first && label.value == wanted.second;
        });
      });
      if (!matches) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          total += sample.counter.value;
          break;
        case prometheus::MetricType::Gauge:
          total += sample.gauge.value;
          break;
        case prometheus::MetricType::Histogram:
          total += static_cast<double>(sample.histogram.sample_count);
          break;
        default:
          break;
      }
    }
  }
  return total;
}

std::string problem_field(const testing::HttpReply& reply) {
  try {
    const auto body = reply.json();
    const auto* errors = body.as_object().if_contains("errors");
    if (errors == nullptr || !errors->is_array() || errors->as_array().empty()) return "";
    return std::string(errors->as_array().at(0).at("field").as_string());
  } catch (const std::exception&) {
    return "";
  }
}

bool is_rfc3339(const json::value& value) {
  static const std::regex pattern(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$)");
  return value.is_string() && std::regex_match(std::string(value.as_string()), pattern);
}

std::string forge_token(std::string_view header_json, std::string_view payload_json,
                        std::string_view secret, bool alg_none) {
  const std::string signing_input =
      auth::base64url_encode(header_json) + "." + auth::base64url_encode(payload_json);
  if (alg_none) return signing_input + ".";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &mac_size);
  return signing_input + "." +
         auth::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), mac_size));
}

}  // namespace mesh::roles::test
