#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/market/events.hpp"
#include "mesh/roles/schema.hpp"
#include "mesh/tasks/records.hpp"
#include "support.hpp"

using namespace mesh;
using namespace mesh::sessions;
using namespace mesh::sessions::test;

namespace {

std::string session_target(const std::string& profile) { return "/v1/stream/sessions/" + profile; }

testing::HttpReply get(StreamHarness& h, const std::string& target, const std::string& token) {
  testing::HttpCall call;
  call.target = target;
  if (!token.empty()) call.headers.emplace_back("Authorization", "Bearer " + token);
  return testing::http(h.port(), call);
}

bool redis_holds(StreamHarness& h, const std::string& user, const std::string& profile) {
  const auto listed = h.services.run(h.sessions->locks().list(user));
  if (!listed) return false;
  for (const auto& session : *listed) {
    if (session.profile_id == profile) return true;
  }
  return false;
}

market::Ticker ticker(std::string product, std::int64_t sequence) {
  market::Ticker t;
  t.product = std::move(product);
  t.sequence = sequence;
  t.price = "27012.35";
  t.best_bid = "27012.34";
  t.best_ask = "27012.36";
  t.time = "2026-11-30T14:03:07.123456Z";
  return t;
}

std::string pending_record(const std::string& id, const std::string& user,
                           const std::string& profile) {
  tasks::PendingTask task;
  task.id = id;
  task.user_id = user;
  task.type = tasks::TaskType::echo;
  task.payload = boost::json::parse(R"({"data":"x"})");
  task.created_at_ms = 1'700'000'000'000;
  task.profile_id = profile;
  return tasks::encode(task);
}

std::string completed_record(const std::string& id, const std::string& user,
                             const std::string& profile) {
  tasks::CompletedTask task;
  task.id = id;
  task.user_id = user;
  task.status = tasks::TaskStatus::succeeded;
  task.result = boost::json::parse(R"({"data":"x"})");
  task.started_at_ms = 1'700'000'000'100;
  task.finished_at_ms = 1'700'000'000'200;
  task.profile_id = profile;
  return tasks::encode(task);
}

}  // namespace

TEST_CASE("session opens: 401, 400, 403, 409, and 200 with the session event") {
  StreamHarness h;
  const auto alice = h.new_user();
  const auto bob = h.new_user();
  const auto profile = h.new_profile({alice}, {"BTC-USD"});

  CHECK(get(h, session_target(profile), "").status == 401);
  CHECK(get(h, session_target(profile), "not-a-token").status == 401);
  const auto malformed = get(h, session_target("x%27%3B%20DROP%20TABLE%20users--"), h.token(alice));
  CHECK(malformed.status == 400);
  CHECK(malformed.header("content-type") == "application/problem+json");
  CHECK(get(h, session_target(std::string(5000, 'a')), h.token(alice)).status == 400);
  CHECK(get(h, session_target(core::uuid_v7()), h.token(alice)).status == 403);  // unknown
  CHECK(get(h, session_target(profile), h.token(bob)).status == 403);            // not a member
  CHECK(get(h, session_target(profile), h.token("oidc|subject")).status == 403);
  CHECK(h.metric("mesh_stream_session_opens_total", {{"outcome", "forbidden"}}) == 3);

  SseClient first(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(first.wait_head());
  REQUIRE(first.status() == 200);
  REQUIRE(first.wait([](const SseClient& c) { return c.has_event("session"); }));
  const auto hello = boost::json::parse(first.events().at(0).data).as_object();
  CHECK(hello.at("profile_id").as_string() == profile);
  CHECK(hello.at("node").as_string() == "node-a");
  CHECK(hello.at("since").as_string().size() == 24);  // 2026-11-30T14:03:07.123Z
  CHECK(h.metric("mesh_stream_sessions") == 1);
  CHECK(h.metric("mesh_stream_connections") == 1);
  CHECK(redis_holds(h, alice, profile));

  const auto conflict = get(h, session_target(profile), h.token(alice));
  CHECK(conflict.status == 409);
  CHECK(conflict.header("content-type") == "application/problem+json");
  CHECK(h.metric("mesh_stream_session_opens_total", {{"outcome", "conflict"}}) == 1);

  // Closing the stream releases the pair at once.
  first.close();
  REQUIRE(testing::wait_until([&] { return !redis_holds(h, alice, profile); }));
  REQUIRE(testing::wait_until([&] { return h.sessions->sessions() == 0; }));
  CHECK(h.metric("mesh_stream_session_ends_total", {{"reason", "closed"}}) == 1);
  SseClient again(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(again.wait_head());
  CHECK(again.status() == 200);
}

TEST_CASE("the users' sessions listing: own or admin only, across nodes") {
  StreamHarness h;
  const auto alice = h.new_user();
  const auto bob = h.new_user();
  const auto profile = h.new_profile({alice, bob}, {});
  SseClient stream(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(stream.wait([](const SseClient& c) { return c.has_event("session"); }));

  const auto own = get(h, "/v1/users/" + alice + "/sessions", h.token(alice));
  REQUIRE(own.status == 200);
  const auto list = own.json().as_array();
  REQUIRE(list.size() == 1);
  CHECK(list[0].at("profile_id").as_string() == profile);
  CHECK(list[0].at("node").as_string() == "node-a");
  CHECK(get(h, "/v1/users/" + alice + "/sessions", h.token(bob)).status == 403);
  CHECK(
      get(h, "/v1/users/" + alice + "/sessions", h.token(bob, "admin")).json().as_array().size() ==
      1);
  CHECK(get(h, "/v1/users/" + bob + "/sessions", h.token(bob)).json().as_array().empty());
  CHECK(get(h, "/v1/users/" + alice + "/sessions", "").status == 401);
  CHECK(get(h, "/v1/users/x'%20OR%201=1/sessions", h.token(alice)).status == 400);
}

TEST_CASE("a session stream carries its watchlist's tickers and its profile's task events") {
  StreamHarness h;
  const auto alice = h.new_user();
  const auto profile = h.new_profile({alice}, {"BTC-USD"});
  const auto other_profile = h.new_profile({alice}, {"ETH-USD"});
  SseClient stream(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(stream.wait([](const SseClient& c) { return c.has_event("session"); }));
  REQUIRE(testing::wait_until([&] { return h.stream->assigned(); }, 60s));

  // Live from the latest offsets: produce until tickers flow.
  std::int64_t sequence = 0;
  bool flowing = false;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!flowing && std::chrono::steady_clock::now() < deadline) {
    ++sequence;
    h.produce(market::kTickerTopic, "ETH-USD", market::encode(ticker("ETH-USD", sequence)));
    h.produce(market::kTickerTopic, "BTC-USD", market::encode(ticker("BTC-USD", sequence)));
    flowing = stream.wait([](const SseClient& c) { return c.has_event("ticker"); }, 500ms);
  }
  REQUIRE(flowing);

  const auto ours = core::uuid_v7();
  const auto theirs = core::uuid_v7();
  h.produce(roles::kTasksPending, theirs, pending_record(theirs, alice, other_profile));
  h.produce(roles::kTasksPending, ours, pending_record(ours, alice, profile));
  h.produce(roles::kTasksCompleted, theirs, completed_record(theirs, alice, other_profile));
  h.produce(roles::kTasksCompleted, ours, completed_record(ours, alice, profile));
  h.produce(roles::kTasksCompleted, "x", "not json");
  REQUIRE(stream.wait([](const SseClient& c) {
    int tasks = 0;
    for (const auto& event : c.events_unlocked()) tasks += event.name == "task";
    return tasks >= 2;
  }));
  // One partition per topic: the other profile's records came before ours, the ETH tickers
  // before the BTC ones, so anything of theirs would have arrived by now.
  REQUIRE(testing::wait_until([&] {
    return h.metric("mesh_stream_bad_records_total", {{"topic", "tasks"}}) == 1;
  }));
  std::vector<std::string> statuses;
  for (const auto& event : stream.events()) {
    if (event.name == "ticker") {
      CHECK(boost::json::parse(event.data).at("product").as_string() == "BTC-USD");
    }
    if (event.name == "task") {
      const auto data = boost::json::parse(event.data).as_object();
      CHECK(data.at("id").as_string() == ours);
      statuses.emplace_back(data.at("status").as_string());
    }
  }
  std::sort(statuses.begin(), statuses.end());
  CHECK(statuses == std::vector<std::string>{"queued", "succeeded"});
}

TEST_CASE("session opens answer 503 with Retry-After while Redis is unreachable") {
  StreamOptions options;
  options.redis_reachable = false;
  StreamHarness h(options);
  const auto alice = h.new_user();
  const auto profile = h.new_profile({alice}, {});
  const auto reply = get(h, session_target(profile), h.token(alice));
  CHECK(reply.status == 503);
  CHECK(reply.header("retry-after"));
  CHECK(get(h, "/v1/users/" + alice + "/sessions", h.token(alice)).status == 503);
  CHECK(h.metric("mesh_stream_session_opens_total", {{"outcome", "unavailable"}}) == 1);
  CHECK(h.metric("mesh_stream_sessions") == 0);
}

TEST_CASE("a session whose lock another token took ends with reason lost") {
  StreamOptions options;
  options.ttl = 5s;
  options.refresh = 100ms;
  StreamHarness h(options);
  const auto alice = h.new_user();
  const auto profile = h.new_profile({alice}, {});
  SseClient stream(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(stream.wait([](const SseClient& c) { return c.has_event("session"); }));

  const auto foreign = R"({"token":"0123456789abcdef0123456789abcdef","node":"x","since":1})";
  REQUIRE(h.services.run(h.redis->command({"SET", SessionLocks::lock_key(alice, profile), foreign}))
              .ok());
  REQUIRE(
      stream.wait([](const SseClient& c) { return c.has_event("end") && c.closed_unlocked(); }));
  CHECK(stream.events().back().data == R"({"reason":"lost"})");
  REQUIRE(testing::wait_until([&] { return h.sessions->sessions() == 0; }));
  CHECK(h.metric("mesh_stream_session_ends_total", {{"reason", "lost"}}) == 1);
  // The other holder's lock is untouched.
  const auto value =
      h.services.run(h.redis->command({"GET", SessionLocks::lock_key(alice, profile)}));
  CHECK(value.reply.string == foreign);
}

TEST_CASE("a session recovers its lock after Redis lost every key") {
  StreamOptions options;
  options.ttl = 5s;
  options.refresh = 100ms;
  StreamHarness h(options);
  const auto alice = h.new_user();
  const auto profile = h.new_profile({alice}, {});
  SseClient stream(h.port(), session_target(profile), h.bearer(alice));
  REQUIRE(stream.wait([](const SseClient& c) { return c.has_event("session"); }));
  REQUIRE(h.services
              .run(h.redis->command(
                  {"DEL", SessionLocks::lock_key(alice, profile), SessionLocks::index_key(alice)}))
              .ok());
  REQUIRE(testing::wait_until([&] { return redis_holds(h, alice, profile); }));
  CHECK(get(h, session_target(profile), h.token(alice)).status == 409);
  CHECK(h.sessions->sessions() == 1);
  CHECK_FALSE(stream.closed_unlocked());
}

TEST_CASE("stop ends every session with reason shutdown and releases its lock") {
  StreamHarness h;
  const auto alice = h.new_user();
  const auto first = h.new_profile({alice}, {});
  const auto second = h.new_profile({alice}, {});
  SseClient a(h.port(), session_target(first), h.bearer(alice));
  SseClient b(h.port(), session_target(second), h.bearer(alice));
  REQUIRE(a.wait([](const SseClient& c) { return c.has_event("session"); }));
  REQUIRE(b.wait([](const SseClient& c) { return c.has_event("session"); }));
  h.stop_sessions();
  CHECK(h.sessions->sessions() == 0);
  CHECK_FALSE(redis_holds(h, alice, first));
  CHECK_FALSE(redis_holds(h, alice, second));
  for (SseClient* client : {&a, &b}) {
    REQUIRE(client->wait([](const SseClient& c) { return c.closed_unlocked(); }));
    CHECK(client->events().back().data == R"({"reason":"shutdown"})");
  }
  CHECK(h.metric("mesh_stream_session_ends_total", {{"reason", "shutdown"}}) == 2);
  CHECK(get(h, session_target(first), h.token(alice)).status == 503);
}
