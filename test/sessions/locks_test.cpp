#include <catch2/catch.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/sessions/locks.hpp"
#include "support.hpp"

using namespace mesh;
using namespace mesh::sessions;
using namespace mesh::sessions::test;
using namespace std::chrono_literals;

namespace {

struct LocksFixture {
  Services services;
  std::string user = core::uuid_v7();
  std::string profile = core::uuid_v7();
  SessionLocks locks{services.redis(), LockOptions{60s, "node-a"}};
  SessionLocks other{services.redis(), LockOptions{60s, "node-b"}};

  template <class T>
  T run(Task<T> task) {
    return services.run(std::move(task));
  }
  redis::Result command(std::vector<std::string> args) {
    return run(services.redis().command(std::move(args)));
  }
};

}  // namespace

TEST_CASE_METHOD(LocksFixture, "acquire takes a free pair once; a second acquire finds it held") {
  const auto first = run(locks.acquire(user, profile));
  REQUIRE(first.status == Acquire::Status::acquired);
  CHECK(first.token.size() == 32);
  CHECK(first.since_ms > 0);
  const auto second = run(other.acquire(user, profile));
  CHECK(second.status == Acquire::Status::held);
  CHECK(second.token.empty());

  // Another profile of the same user is independent.
  const auto another = run(other.acquire(user, core::uuid_v7()));
  CHECK(another.status == Acquire::Status::acquired);

  const auto ttl = command({"PTTL", SessionLocks::lock_key(user, profile)});
  CHECK(ttl.reply.integer > 0);
  CHECK(ttl.reply.integer <= 60'000);
  CHECK(command({"SISMEMBER", SessionLocks::index_key(user), profile}).reply.integer == 1);
  CHECK(command({"PTTL", SessionLocks::index_key(user)}).reply.integer > 0);
}

TEST_CASE_METHOD(LocksFixture, "refresh extends our lock and reports lost for a foreign one") {
  const auto taken = run(locks.acquire(user, profile));
  REQUIRE(taken.status == Acquire::Status::acquired);
  REQUIRE(command({"PEXPIRE", SessionLocks::lock_key(user, profile), "5000"}).ok());
  CHECK(run(locks.refresh(user, profile, taken.token, taken.since_ms)) == Refresh::refreshed);
  CHECK(command({"PTTL", SessionLocks::lock_key(user, profile)}).reply.integer > 5000);

  CHECK(run(locks.refresh(user, profile, "not-the-token", taken.since_ms)) == Refresh::lost);

  // Someone else took the pair after ours expired: ours is lost, theirs untouched.
  REQUIRE(command({"DEL", SessionLocks::lock_key(user, profile)}).ok());
  const auto theirs = run(other.acquire(user, profile));
  REQUIRE(theirs.status == Acquire::Status::acquired);
  CHECK(run(locks.refresh(user, profile, taken.token, taken.since_ms)) == Refresh::lost);
  const auto listed = run(locks.list(user));
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].node == "node-b");

  // A value mesh did not write is never taken over.
  REQUIRE(command({"SET", SessionLocks::lock_key(user, profile), "garbage"}).ok());
  CHECK(run(other.refresh(user, profile, theirs.token, theirs.since_ms)) == Refresh::lost);
}

TEST_CASE_METHOD(LocksFixture, "refresh recovers a lock whose key vanished (FLUSHALL)") {
  const auto taken = run(locks.acquire(user, profile));
  REQUIRE(taken.status == Acquire::Status::acquired);
  REQUIRE(command({"FLUSHALL"}).ok());
  CHECK(run(locks.list(user))->empty());
  CHECK(run(locks.refresh(user, profile, taken.token, taken.since_ms)) == Refresh::recovered);
  const auto listed = run(locks.list(user));
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].profile_id == profile);
  CHECK((*listed)[0].node == "node-a");
  CHECK((*listed)[0].since_ms == taken.since_ms);
  // Recovered means held: nobody else gets it.
  CHECK(run(other.acquire(user, profile)).status == Acquire::Status::held);
  CHECK(run(locks.refresh(user, profile, taken.token, taken.since_ms)) == Refresh::refreshed);
}

TEST_CASE_METHOD(LocksFixture, "release deletes only our own lock") {
  const auto taken = run(locks.acquire(user, profile));
  REQUIRE(taken.status == Acquire::Status::acquired);
  const auto foreign = run(other.release(user, profile, "ffffffffffffffffffffffffffffffff"));
  REQUIRE(foreign);
  CHECK_FALSE(*foreign);
  CHECK(command({"EXISTS", SessionLocks::lock_key(user, profile)}).reply.integer == 1);

  const auto released = run(locks.release(user, profile, taken.token));
  REQUIRE(released);
  CHECK(*released);
  CHECK(command({"EXISTS", SessionLocks::lock_key(user, profile)}).reply.integer == 0);
  CHECK(command({"SISMEMBER", SessionLocks::index_key(user), profile}).reply.integer == 0);
  // Released twice: nothing to delete, and a new holder's lock survives a stale release.
  const auto again = run(other.acquire(user, profile));
  REQUIRE(again.status == Acquire::Status::acquired);
  const auto stale = run(locks.release(user, profile, taken.token));
  REQUIRE(stale);
  CHECK_FALSE(*stale);
  CHECK(command({"EXISTS", SessionLocks::lock_key(user, profile)}).reply.integer == 1);
}

TEST_CASE_METHOD(LocksFixture, "list shows every replica's sessions and prunes expired ones") {
  const std::string second = core::uuid_v7();
  REQUIRE(run(locks.acquire(user, profile)).status == Acquire::Status::acquired);
  REQUIRE(run(other.acquire(user, second)).status == Acquire::Status::acquired);
  REQUIRE(run(locks.acquire(core::uuid_v7(), profile)).status == Acquire::Status::acquired);

  auto listed = run(locks.list(user));
  REQUIRE(listed);
  REQUIRE(listed->size() == 2);
  std::vector<std::string> nodes{(*listed)[0].node, (*listed)[1].node};
  std::sort(nodes.begin(), nodes.end());
  CHECK(nodes == std::vector<std::string>{"node-a", "node-b"});

  // The second lock expires (as a crashed replica's would): listed no more, index pruned.
  REQUIRE(command({"PEXPIRE", SessionLocks::lock_key(user, second), "1"}).ok());
  REQUIRE(testing::wait_until([&] {
    return command({"EXISTS", SessionLocks::lock_key(user, second)}).reply.integer == 0;
  }));
  listed = run(locks.list(user));
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].profile_id == profile);
  CHECK(command({"SISMEMBER", SessionLocks::index_key(user), second}).reply.integer == 0);
  CHECK(run(locks.list(core::uuid_v7()))->empty());
}

TEST_CASE("every operation reports unavailable when Redis cannot be reached") {
  Services services(/*connect_redis=*/false);
  redis::Options options;
  options.port = closed_port();
  options.command_timeout = 200ms;
  redis::Client client(services.executor(), options, services.registry());
  SessionLocks locks(client, LockOptions{60s, "node-a"});
  const std::string user = core::uuid_v7();
  const std::string profile = core::uuid_v7();
  CHECK(services.run(locks.acquire(user, profile)).status == Acquire::Status::unavailable);
  CHECK(services.run(locks.refresh(user, profile, "t", 1)) == Refresh::unavailable);
  CHECK_FALSE(services.run(locks.release(user, profile, "t")).has_value());
  CHECK_FALSE(services.run(locks.list(user)).has_value());
}
