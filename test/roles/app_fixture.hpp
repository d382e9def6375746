#pragma once
// The whole product in-process, as `mesh --role=all` runs it: the embedded Kafka mock cluster,
// a fresh Postgres database, the shared throwaway Redis, the gateway on 127.0.0.1:0, the worker
// and the updater. The test thread is the client, through real HTTP.
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "mesh/config/config.hpp"
#include "mesh/core/runtime.hpp"
#include "mesh/roles/app.hpp"
#include "mesh/testing/http_client.hpp"

namespace mesh::roles::test {

using namespace std::chrono_literals;

// The JWT secret every fixture signs with (40 bytes), and its issuer.
inline constexpr std::string_view kJwtSecret = "test-secret-0123456789-abcdefghijklmnopq";
inline constexpr std::string_view kJwtIssuer = "mesh";
inline constexpr std::string_view kPassword = "correct horse battery";

// Deadline for anything that goes through the consumers: the first consumer group join on the
// mock cluster alone takes about 3 s.
inline constexpr std::chrono::milliseconds kPipelineDeadline = 60s;

// The configuration the fixture runs with unless a test adjusts it.
config::Config test_config();

using Headers = std::vector<std::pair<std::string, std::string>>;

class AppFixture {
 public:
  // `adjust` may change the configuration (limits, timeouts) before the app starts.
  explicit AppFixture(const std::function<void(config::Config&)>& adjust = {});
  ~AppFixture();
  AppFixture(const AppFixture&) = delete;
  AppFixture& operator=(const AppFixture&) = delete;

  unsigned short port() const { return port_; }
  App& app() { return *app_; }
  const config::Config& config() const { return config_; }

  // --- plain HTTP ----------------------------------------------------------------------------
  testing::HttpReply get(const std::string& target, const std::string& token = {},
                         Headers headers = {});
  // A JSON body (Content-Type: application/json when the body is not empty).
  testing::HttpReply post(const std::string& target, const std::string& body,
                          const std::string& token = {}, Headers headers = {});

  // --- accounts ------------------------------------------------------------------------------
  // Registers (REQUIREs 201) and returns the user id.
  std::string register_user(const std::string& username,
                            const std::string& password = std::string(kPassword));
  // Logs in (REQUIREs 200) and returns the access token.
  std::string login(const std::string& username,
                    const std::string& password = std::string(kPassword));
  struct User {
    std::string id;
    std::string username;
    std::string token;
  };
  // A freshly registered, logged-in user with a name unique in this fixture.
  User new_user(std::string_view prefix = "user");

  // --- tasks ---------------------------------------------------------------------------------
  // POST /v1/tasks {"type": type, "payload": <payload_json>}; REQUIREs 202 and returns the id.
  std::string submit(const std::string& token, std::string_view type, std::string_view payload_json,
                     Headers headers = {});
  // GET /v1/tasks/{id}; REQUIREs 200 and returns the task.
  boost::json::object task(const std::string& token, const std::string& id);
  // Polls GET /v1/tasks/{id} until the status is succeeded or failed (REQUIREs it within
  // `deadline`).
  boost::json::object wait_final(const std::string& token, const std::string& id,
                                 std::chrono::milliseconds deadline = kPipelineDeadline);
  // Every page of GET /v1/tasks?<query> (query without limit/cursor), following next_cursor.
  std::vector<boost::json::object> list_all(const std::string& token, const std::string& query = {},
                                            int limit = 100);

  // --- direct database access (blocking libpq, for asserting on rows) -------------------------
  // The first column of the first row of `sql`, or nullopt for SQL NULL / no rows.
  std::optional<std::string> sql_value(const std::string& sql) const;
  long long sql_count(const std::string& sql) const;

  // /healthz answers 200.
  bool serving();

 private:
  config::Config config_;
  std::unique_ptr<core::Runtime> runtime_;
  std::unique_ptr<App> app_;
  std::promise<void> started_;
  std::thread thread_;
  unsigned short port_ = 0;
  int next_user_ = 0;
};

// A metric sample from the app's registry: a counter's or gauge's value summed over every series
// whose labels include all of `labels`.
double metric(App& app, std::string_view name,
              const std::vector<std::pair<std::string, std::string>>& labels = {});

// "errors"[0].field of a 400 invalid-field problem, or "" when absent.
std::string problem_field(const testing::HttpReply& reply);

// True for RFC 3339 UTC text such as 2026-11-22T06:33:47.123Z.
bool is_rfc3339(const boost::json::value& value);

// Signs an arbitrary header and payload (JSON text) as HS256 with `secret`; with `alg_none`, the
// signature segment is left empty.
std::string forge_token(std::string_view header_json, std::string_view payload_json,
                        std::string_view secret, bool alg_none = false);

}  // namespace mesh::roles::test
