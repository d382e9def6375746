// roles::TaskBatch (one poll's records reduced to rows) and roles::store() against a fresh
// Postgres database with the product's schema.
#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/pg/migrate.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/roles/updater.hpp"
#include "mesh/tasks/records.hpp"
#include "mesh/testing/env.hpp"

using namespace mesh;
using roles::TaskBatch;
namespace json = boost::json;

namespace {

const std::string kUser = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
constexpr std::int64_t kCreatedMs = 1'700'000'000'123;

std::string pending_record(const std::string& id, json::value payload = json::object{{"n", 1}},
                           const std::string& user = kUser) {
  tasks::PendingTask task;
  task.id = id;
  task.user_id = user;
  task.type = tasks::TaskType::echo;
  task.payload = std::move(payload);
  task.created_at_ms = kCreatedMs;
  return tasks::encode(task);
}

std::string completed_record(const std::string& id, json::value result = json::object{{"n", 1}},
                             int attempts = 1, const std::string& user = kUser) {
  tasks::CompletedTask task;
  task.id = id;
  task.user_id = user;
  task.status = tasks::TaskStatus::succeeded;
  task.result = std::move(result);
  task.attempts = attempts;
  task.started_at_ms = kCreatedMs + 10;
  task.finished_at_ms = kCreatedMs + 20;
  return tasks::encode(task);
}

std::string failed_record(const std::string& id) {
  tasks::CompletedTask task;
  task.id = id;
  task.user_id = kUser;
  task.status = tasks::TaskStatus::failed;
  task.result = nullptr;
  task.error = "boom";
  task.attempts = 3;
  task.started_at_ms = kCreatedMs + 30;
  task.finished_at_ms = kCreatedMs + 40;
  return tasks::encode(task);
}

json::array rows_of(const std::string& rows_json) { return json::parse(rows_json).as_array(); }

}  // namespace

TEST_CASE("task batch: one row per task id, whatever the number of copies") {
  TaskBatch batch;
  CHECK(batch.empty());
  const auto a = core::uuid_v7();
  const auto b = core::uuid_v7();
  CHECK_FALSE(batch.add_pending(pending_record(a)));
  CHECK_FALSE(batch.add_pending(pending_record(a)));
  CHECK_FALSE(batch.add_pending(pending_record(b)));
  CHECK_FALSE(batch.add_completed(completed_record(a)));
  CHECK_FALSE(batch.add_completed(completed_record(a, json::object{{"n", 1}}, 2)));
  CHECK(batch.size() == 3);
  CHECK(batch.has_pending());
  CHECK(batch.has_completed());

  const auto pending = rows_of(batch.pending_rows());
  REQUIRE(pending.size() == 2);
  std::vector<std::string> ids;
  for (const auto& row : pending) ids.emplace_back(row.at("id").as_string());
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> expected{a, b};
  std::sort(expected.begin(), expected.end());
  CHECK(ids == expected);
  const auto& first = pending.at(0).as_object();
  CHECK(first.at("user_id").as_string() == kUser);
  CHECK(first.at("type") == "echo");
  CHECK(first.at("payload") == json::value(json::object{{"n", 1}}));
  CHECK(first.at("created_at_ms") == kCreatedMs);

  // The completion is kept next to the pending record of the same task: both rows go to the
  // database, the first copy of each.
  const auto completed = rows_of(batch.completed_rows());
  REQUIRE(completed.size() == 1);
  CHECK(completed.at(0).at("id").as_string() == a);
  CHECK(completed.at(0).at("status") == "succeeded");
  CHECK(completed.at(0).at("result") == json::value(json::object{{"n", 1}}));
  CHECK(completed.at(0).at("attempts") == 1);
  CHECK(completed.at(0).at("started_at_ms") == kCreatedMs + 10);
  CHECK(completed.at(0).at("finished_at_ms") == kCreatedMs + 20);
}

TEST_CASE("task batch: a completion alone is kept, and a failure carries its error") {
  TaskBatch batch;
  const auto id = core::uuid_v7();
  CHECK_FALSE(batch.add_completed(failed_record(id)));
  CHECK_FALSE(batch.has_pending());
  CHECK(batch.has_completed());
  CHECK(batch.size() == 1);
  const auto rows = rows_of(batch.completed_rows());
  REQUIRE(rows.size() == 1);
  CHECK(rows.at(0).at("status") == "failed");
  CHECK(rows.at(0).at("error") == "boom");
  CHECK(rows.at(0).at("result").is_null());
  CHECK(rows.at(0).at("attempts") == 3);
}

TEST_CASE("task batch: unusable records are refused with a reason and leave the batch as it was") {
  const auto id = core::uuid_v7();
  struct Case {
    const char* what;
    std::string record;
    bool pending;
  };
  const std::vector<Case> cases{
      {"not JSON", "{\"id\":", true},
      {"not JSON (completed)", "\xff\xfe", false},
      {"not an object", "[1,2,3]", true},
      {"empty object", "{}", true},
      {"empty object (completed)", "{}", false},
      {"id not a UUID",
       R"({"id":"nope","user_id":")" + kUser +
           R"(","type":"echo","payload":1,"created_at_ms":1,"profile_id":""})",
       true},
      {"unknown type",
       R"({"id":")" + id + R"(","user_id":")" + kUser +
           R"(","type":"mine","payload":1,"created_at_ms":1,"profile_id":""})",
       true},
      {"invalid payload",
       R"({"id":")" + id + R"(","user_id":")" + kUser +
           R"(","type":"sleep","payload":{"ms":-1},"created_at_ms":1,"profile_id":""})",
       true},
      {"status queued in a completion",
       R"({"id":")" + id + R"(","user_id":")" + kUser +
           R"(","status":"queued","result":null,"error":"","attempts":1,"started_at_ms":1,"finished_at_ms":2})",
       false},
      {"failed without error",
       R"({"id":")" + id + R"(","user_id":")" + kUser +
           R"(","status":"failed","result":null,"error":"","attempts":1,"started_at_ms":1,"finished_at_ms":2})",
       false},
      {"attempts 0",
       R"({"id":")" + id + R"(","user_id":")" + kUser +
           R"(","status":"succeeded","result":1,"error":"","attempts":0,"started_at_ms":1,"finished_at_ms":2})",
       false},
      {"pending user id not a UUID", pending_record(id, 1, "alice"), true},
      {"completed user id not a UUID", completed_record(id, 1, 1, "alice"), false},
      {"pending user id upper-case UUID",
       pending_record(id, 1, "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"), true},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.record);
    TaskBatch batch;
    const auto reason = c.pending ? batch.add_pending(c.record) : batch.add_completed(c.record);
    REQUIRE(reason.has_value());
    CHECK_FALSE(reason->empty());
    CHECK(batch.empty());
    CHECK(batch.size() == 0);
  }

  TaskBatch batch;
  CHECK(batch.add_pending(pending_record(id, 1, "alice")) ==
        std::optional<std::string>("/user_id: not a UUID"));
  CHECK(batch.add_completed(completed_record(id, 1, 1, "bob")) ==
        std::optional<std::string>("/user_id: not a UUID"));
  // A bad record next to good ones only drops itself.
  CHECK_FALSE(batch.add_pending(pending_record(id)));
  CHECK(batch.add_pending("garbage").has_value());
  CHECK(batch.size() == 1);
}

namespace {

// A pool over a fresh database with the product's schema.
struct Database {
  Database() {
    pg::PoolOptions options;
    options.url = testing::fresh_pg_database();
    options.size = 2;
    pool = std::make_unique<pg::Pool>(io.get_executor(), options, registry);
    testing::run(io, pool->start());
    testing::run(io, pg::migrate(*pool, roles::migrations()));
  }
  ~Database() { testing::run(io, pool->close(std::chrono::seconds(5))); }

  void store(const TaskBatch& batch) { testing::run(io, roles::store(*pool, batch)); }

  // Every column of every task (updated_at too), one string per row, NULLs spelled out.
  std::vector<std::string> snapshot() {
    const auto rows = testing::run(
        io, pool->query("SELECT id::text, user_id::text, type, status, status_rank::text, "
                        "payload::text, result::text, error, attempts::text, "
                        "(extract(epoch from created_at) * 1000)::bigint::text, "
                        "(extract(epoch from started_at) * 1000)::bigint::text, "
                        "(extract(epoch from finished_at) * 1000)::bigint::text, "
                        "updated_at::text FROM tasks ORDER BY id"));
    std::vector<std::string> out;
    for (int row = 0; row < rows.rows(); ++row) {
      std::string line;
      for (int column = 0; column < rows.columns(); ++column) {
        const auto cell = rows.get_optional(row, column);
        line += cell ? std::string(*cell) : std::string("<null>");
        line += '|';
      }
      out.push_back(std::move(line));
    }
    return out;
  }

  // One task's columns by name.
  struct Row {
    std::optional<std::string> type, status, payload, result, error, attempts, created_at_ms,
        started_at_ms, finished_at_ms, user_id;
  };
  std::optional<Row> row(const std::string& id) {
    const auto rows = testing::run(
        io, pool->query("SELECT type, status, payload::text, result::text, error, attempts::text, "
                        "(extract(epoch from created_at) * 1000)::bigint::text, "
                        "(extract(epoch from started_at) * 1000)::bigint::text, "
                        "(extract(epoch from finished_at) * 1000)::bigint::text, user_id::text "
                        "FROM tasks WHERE id = $1",
                        pg::Params{id}));
    if (rows.rows() == 0) return std::nullopt;
    auto cell = [&](int column) -> std::optional<std::string> {
      const auto value = rows.get_optional(0, column);
      return value ? std::optional<std::string>(std::string(*value)) : std::nullopt;
    };
    return Row{cell(0), cell(1), cell(2), cell(3), cell(4),
               cell(5), cell(6), cell(7), cell(8), cell(9)};
  }

  asio::io_context io;
  prometheus::Registry registry;
  std::unique_ptr<pg::Pool> pool;
};

std::optional<std::string> text(const char* value) { return std::string(value); }

}  // namespace

TEST_CASE("store: replaying the same batch changes nothing", "[pg]") {
  Database db;
  const auto a = core::uuid_v7();
  const auto b = core::uuid_v7();
  const auto c = core::uuid_v7();
  TaskBatch batch;
  REQUIRE_FALSE(batch.add_pending(pending_record(a)));
  REQUIRE_FALSE(batch.add_completed(completed_record(a)));
  REQUIRE_FALSE(batch.add_pending(pending_record(b, json::array{1, "two", nullptr})));
  REQUIRE_FALSE(batch.add_completed(failed_record(c)));
  db.store(batch);
  const auto first = db.snapshot();
  REQUIRE(first.size() == 3);

  db.store(batch);
  db.store(batch);
  CHECK(db.snapshot() == first);

  const auto row_a = db.row(a);
  REQUIRE(row_a);
  CHECK(row_a->status == text("succeeded"));
  CHECK(row_a->type == text("echo"));
  CHECK(row_a->payload == text(R"({"n": 1})"));
  CHECK(row_a->result == text(R"({"n": 1})"));
  CHECK(row_a->attempts == text("1"));
  CHECK(row_a->created_at_ms == std::to_string(kCreatedMs));
  CHECK(row_a->started_at_ms == std::to_string(kCreatedMs + 10));
  CHECK(row_a->finished_at_ms == std::to_string(kCreatedMs + 20));
  CHECK(row_a->user_id == kUser);
  CHECK_FALSE(row_a->error);

  const auto row_b = db.row(b);
  REQUIRE(row_b);
  CHECK(row_b->status == text("queued"));
  CHECK(row_b->payload == text(R"([1, "two", null])"));
  CHECK_FALSE(row_b->result);
  CHECK(row_b->attempts == text("0"));

  const auto row_c = db.row(c);
  REQUIRE(row_c);
  CHECK(row_c->status == text("failed"));
  CHECK(row_c->error == text("boom"));
  CHECK_FALSE(row_c->type);  // its pending record has not been seen yet
}

TEST_CASE("store: a completion stored before its pending record, then the pending one", "[pg]") {
  Database db;
  const auto id = core::uuid_v7();
  TaskBatch completed;
  REQUIRE_FALSE(completed.add_completed(completed_record(id, json::object{{"n", 1}}, 2)));
  db.store(completed);
  auto row = db.row(id);
  REQUIRE(row);
  CHECK(row->status == text("succeeded"));
  CHECK_FALSE(row->type);
  CHECK_FALSE(row->payload);
  CHECK_FALSE(row->created_at_ms);

  TaskBatch pending;
  REQUIRE_FALSE(pending.add_pending(pending_record(id)));
  db.store(pending);
  row = db.row(id);
  REQUIRE(row);
  CHECK(row->status == text("succeeded"));
  CHECK(row->type == text("echo"));
  CHECK(row->payload == text(R"({"n": 1})"));
  CHECK(row->created_at_ms == std::to_string(kCreatedMs));
  CHECK(row->result == text(R"({"n": 1})"));
  CHECK(row->attempts == text("2"));
  CHECK(row->started_at_ms == std::to_string(kCreatedMs + 10));
  CHECK(row->finished_at_ms == std::to_string(kCreatedMs + 20));

  // And replaying either batch afterwards changes nothing.
  const auto settled = db.snapshot();
  db.store(pending);
  db.store(completed);
  CHECK(db.snapshot() == settled);
}

TEST_CASE("store: a stale queued record after the final status never moves it back", "[pg]") {
  Database db;
  const auto id = core::uuid_v7();
  TaskBatch first;
  REQUIRE_FALSE(first.add_pending(pending_record(id)));
  db.store(first);
  CHECK(db.row(id)->status == text("queued"));

  TaskBatch done;
  REQUIRE_FALSE(done.add_completed(completed_record(id)));
  db.store(done);
  const auto settled = db.snapshot();
  CHECK(db.row(id)->status == text("succeeded"));

  // The pending record redelivered later, even with another payload, changes nothing.
  TaskBatch stale;
  REQUIRE_FALSE(stale.add_pending(pending_record(id, json::object{{"other", true}})));
  db.store(stale);
  CHECK(db.snapshot() == settled);

  // Nor does a second completion of the same task (a redelivered worker run): the first final
  // status stays.
  TaskBatch again;
  REQUIRE_FALSE(again.add_completed(failed_record(id)));
  db.store(again);
  CHECK(db.snapshot() == settled);
  const auto row = db.row(id);
  CHECK(row->status == text("succeeded"));
  CHECK(row->result == text(R"({"n": 1})"));
  CHECK(row->payload == text(R"({"n": 1})"));
}

TEST_CASE("store: pending and completion of one task in the same batch", "[pg]") {
  Database db;
  const auto id = core::uuid_v7();
  TaskBatch batch;
  // Completion first in arrival order: the batch still writes a complete row.
  REQUIRE_FALSE(batch.add_completed(completed_record(id, "hello")));
  REQUIRE_FALSE(batch.add_pending(pending_record(id, "hello")));
  db.store(batch);
  const auto row = db.row(id);
  REQUIRE(row);
  CHECK(row->status == text("succeeded"));
  CHECK(row->type == text("echo"));
  CHECK(row->payload == text("\"hello\""));
  CHECK(row->result == text("\"hello\""));
  CHECK(row->created_at_ms == std::to_string(kCreatedMs));
}
