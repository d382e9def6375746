// Multi-process end to end: a gateway, three workers and an updater as separate `mesh` processes
// on one mesh-kafka-mock cluster, real Postgres and Redis. Thousands of tasks go in through the
// HTTP API while a worker (or the updater) is killed with SIGKILL; afterwards every accepted task
// must be stored exactly once, succeeded, with its exact result, and SIGTERM must drain every
// remaining process to exit code 0. A third case checks that one task Postgres cannot store does
// not stop the pipeline.
//
// On failure the message carries the database's task counts, the processes' metrics and the tail
// of every process's log, and the logs stay in the directory it names. MESH_E2E_LOG_LEVEL=info
// (or debug) makes the processes log more; MESH_E2E_KEEP_LOGS=1 keeps the logs of passing runs.
#include <openssl/evp.h>
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>

#include "cluster.hpp"
#include "mesh/testing/env.hpp"

namespace mesh::e2e {
namespace {
namespace json = boost::json;

constexpr std::size_t kTasks = 3000;
constexpr std::size_t kClients = 6;
// Tasks submitted before the crash; the rest only after it, so the crash always lands mid-run.
constexpr std::size_t kSubmittedBeforeCrash = kTasks / 2;
// The crash comes once this many tasks are stored as succeeded.
constexpr long long kSucceededBeforeCrash = 300;
constexpr std::int64_t kPrimesBelowMax = 50'000;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- the tasks and their expected results, computed independently of the product ----

struct TaskSpec {
  std::string type;
  json::value payload;
  json::value expected;
  std::string body;  // the POST /v1/tasks body
  std::string idempotency_key;
};

std::string sha256_rounds_hex(const std::string& data, int rounds) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  for (int round = 1; round < rounds; ++round) {
    unsigned char next[EVP_MAX_MD_SIZE];
    EVP_Digest(digest, length, next, &length, EVP_sha256(), nullptr);
    std::copy(next, next + length, digest);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

// primes_below[n] = number of primes p < n, by a plain sieve of Eratosthenes.
std::vector<std::int64_t> primes_below_table(std::int64_t limit) {
  std::vector<bool> composite(static_cast<std::size_t>(limit + 1), false);
  std::vector<std::int64_t> below(static_cast<std::size_t>(limit + 1), 0);
  for (std::int64_t n = 2; n <= limit; ++n) {
    below[n] = below[n - 1] + ((n - 1 >= 2 && !composite[n - 1]) ? 1 : 0);
    if (!composite[n]) {
      for (std::int64_t m = n * n; m <= limit; m += n) composite[m] = true;
    }
  }
  return below;
}

// Echo payloads of several JSON shapes, all distinct: unicode, escapes, big integers, nesting.
json::value echo_payload(std::size_t i, const std::string& salt) {
  const auto n = static_cast<std::int64_t>(i);
  switch ((i / 3) % 4) {
    case 0:
      return json::object{
          {"i", n},
          {"salt", salt},
          {"text",
           "caf\xc3\xa9 \xf0\x9f\x9a\x80 \"quoted\" back\\slash\ttab #" + std::to_string(i)},
          {"values", json::array{n, -n, 1.5, true, nullptr, 9007199254740993LL}},
          {"nested", json::object{{"deeper", json::object{{"k", "v" + std::to_string(i)}}}}}};
    case 1:
      return json::string(salt + " plain string " + std::to_string(i));
    case 2:
      return json::array{salt, n, json::array{json::object{{"x", n * 7}}}};
    default:
      return 1'000'000'000'000LL + n;
  }
}

// Task i of a run: echo, sha256 (1 to 97 rounds), primes, and every tenth a short sleep, which
// keeps work in flight at a worker whenever it is killed.
TaskSpec make_task(std::size_t i, const std::string& salt) {
  static const auto primes_below = primes_below_table(kPrimesBelowMax + 2);
  const auto n = static_cast<std::int64_t>(i);
  TaskSpec task;
  if (i % 10 == 7) {
    const std::int64_t ms = 100 + (n * 37) % 400;
    task.type = "sleep";
    task.payload = json::object{{"ms", ms}};
    task.expected = json::object{{"slept_ms", ms}};
  } else if (i % 3 == 0) {
    task.type = "echo";
    task.payload = echo_payload(i, salt);
    task.expected = task.payload;
  } else if (i % 3 == 1) {
    task.type = "sha256";
    const std::string data = salt + "-sha-" + std::to_string(i);
    const int rounds = 1 + static_cast<int>((i * 31) % 97);
    task.payload = json::object{{"data", data}, {"rounds", rounds}};
    task.expected = json::object{{"hex", sha256_rounds_hex(data, rounds)}};
  } else {
    task.type = "primes";
    const std::int64_t below = 2 + (n * 7919) % kPrimesBelowMax;
    task.payload = json::object{{"below", below}};
    task.expected = json::object{{"count", primes_below[below]}};
  }
  task.body = json::serialize(json::object{{"type", task.type}, {"payload", task.payload}});
  task.idempotency_key = salt + "-" + std::to_string(i);
  return task;
}

std::vector<TaskSpec> make_tasks(const std::string& salt) {
  std::vector<TaskSpec> tasks;
  for (std::size_t i = 0; i < kTasks; ++i) tasks.push_back(make_task(i, salt));
  return tasks;
}

// ---- submitting through the gateway from several client threads ----

// Submits every task once, each client thread on its own keep-alive connection. A task is
// retried (same Idempotency-Key, so never twice accepted) on 503 and on transport errors; any
// other answer is an error. Tasks from index `gate` on wait for release().
class Submitter {
 public:
  Submitter(unsigned short port, std::string token, const std::vector<TaskSpec>& tasks,
            std::size_t gate)
      : port_(port), token_(std::move(token)), tasks_(tasks), gate_(gate), ids_(tasks.size()) {
    for (std::size_t client = 0; client < kClients; ++client) {
      threads_.emplace_back([this, client] { run(client); });
    }
  }
  ~Submitter() {
    abort_ = true;
    join();
  }

  void release() { released_ = true; }
  void join() {
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  std::size_t answered() const { return answered_; }

  // Valid after join().
  const std::vector<std::optional<std::string>>& ids() const { return ids_; }
  const std::vector<std::string>& errors() const { return errors_; }
  std::size_t retries() const { return retries_; }

 private:
  void run(std::size_t client) {
    HttpSession session(port_);
    for (std::size_t i = client; i < tasks_.size() && !abort_; i += kClients) {
      if (i >= gate_ && !wait_for_release()) return;
      submit(session, i);
      ++answered_;
    }
  }

  bool wait_for_release() {
    const auto deadline = Clock::now() + std::chrono::minutes(5);
    while (!released_ && !abort_) {
      if (Clock::now() > deadline) {
        add_error("never released to submit the second half");
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return !abort_;
  }

  void submit(HttpSession& session, std::size_t i) {
    const auto& task = tasks_[i];
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    auto backoff = std::chrono::milliseconds(50);
    std::string last_problem;
    while (Clock::now() < deadline && !abort_) {
      try {
        const auto reply = session.request(
            "POST", "/v1/tasks", task.body,
            {{"Authorization", "Bearer " + token_}, {"Idempotency-Key", task.idempotency_key}});
        if (reply.status == 202) {
          ids_[i] = std::string(reply.json().at("id").as_string());
          return;
        }
        if (reply.status != 503) {
          add_error("task " + std::to_string(i) + " (" + task.body + "): answered " +
                    std::to_string(reply.status) + " " + reply.body);
          return;
        }
        last_problem = "503 " + reply.body;
      } catch (const std::exception& e) {
        last_problem = e.what();
      }
      ++retries_;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
    add_error("task " + std::to_string(i) + " never accepted; last: " + last_problem);
  }

  void add_error(std::string error) {
    std::lock_guard lock(mutex_);
    errors_.push_back(std::move(error));
  }

  unsigned short port_;
  std::string token_;
  const std::vector<TaskSpec>& tasks_;
  std::size_t gate_;
  std::vector<std::optional<std::string>> ids_;  // each slot written by one thread only
  std::mutex mutex_;
  std::vector<std::string> errors_;
  std::atomic<std::size_t> retries_{0};
  std::atomic<std::size_t> answered_{0};
  std::atomic<bool> released_{false};
  std::atomic<bool> abort_{false};
  std::vector<std::thread> threads_;
};

// ---- the scenario ----

enum class Crash { worker, updater };

std::string join_lines(const std::vector<std::string>& lines, std::size_t at_most = 25) {
  std::string text;
  for (std::size_t i = 0; i < lines.size() && i < at_most; ++i) text += "  " + lines[i] + "\n";
  if (lines.size() > at_most)
    text += "  ... and " + std::to_string(lines.size() - at_most) + " more\n";
  return text;
}

[[noreturn]] void fail(Cluster& cluster, const std::string& message) {
  cluster.keep_logs();
  FAIL(message << "\n" << cluster.diagnostics());
  throw std::logic_error("unreachable");
}

std::string show(const std::optional<std::string>& text) { return text ? *text : "NULL"; }

// What the database and the processes' metrics say, for failure messages.
std::string progress(Cluster& cluster, PgConnection& db) {
  std::string text = "tasks table by status (rows, rows with a type):";
  try {
    for (const auto& row : db.query("SELECT status, count(*), count(type) FROM tasks "
                                    "GROUP BY status ORDER BY status")) {
      text += " " + show(row[0]) + "=" + show(row[1]) + "/" + show(row[2]);
    }
  } catch (const std::exception& e) {
    text += std::string(" (") + e.what() + ")";
  }
  text += "\n";
  for (auto* node : cluster.live_nodes()) {
    try {
      text += node->name + ": ";
      for (const char* name :
           {"mesh_worker_tasks_total", "mesh_worker_tasks_in_flight",
            "mesh_updater_records_stored_total", "mesh_updater_store_failures_total",
            "mesh_kafka_consumed_total", "mesh_kafka_consumer_lag",
            "mesh_kafka_consumer_errors_total", "mesh_gateway_tasks_accepted_total"}) {
        const double value = scrape_metric(node->port, name);
        if (value != 0) text += std::string(name) + "=" + std::to_string(value) + " ";
      }
    } catch (const std::exception& e) {
      text += e.what();
    }
    text += "\n";
  }
  return text;
}

// Waits for `done`, failing early when a process that should run has exited.
void await(Cluster& cluster, PgConnection& db, const std::string& what,
           std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  std::vector<std::string> exits;
  const bool ok = testing::wait_until(
      [&] {
        exits = cluster.unexpected_exits();
        return !exits.empty() || done();
      },
      timeout, std::chrono::milliseconds(100));
  if (!exits.empty()) {
    fail(cluster, "while waiting for " + what + ", processes exited:\n" + join_lines(exits) +
                      progress(cluster, db));
  }
  if (!ok) fail(cluster, "timed out waiting for " + what + "\n" + progress(cluster, db));
}

// SIGTERM drains every process that still runs (`expected` of them: none may have exited on
// its own) to exit code 0 within the drain deadline, then the Kafka mock. Returns the seconds the
// mesh processes took.
double drain_all(Cluster& cluster, std::size_t expected) {
  const auto exits = cluster.unexpected_exits();
  if (!exits.empty()) fail(cluster, "processes exited on their own:\n" + join_lines(exits));
  const auto live = cluster.live_nodes();
  if (live.size() != expected) {
    fail(cluster,
         std::to_string(live.size()) + " processes running, expected " + std::to_string(expected));
  }
  const auto drain_started = Clock::now();
  for (auto* node : live) node->process->send(SIGTERM);
  std::vector<std::string> problems;
  const auto deadline = drain_started + kDrainTimeout + std::chrono::seconds(30);
  for (auto* node : live) {
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - Clock::now(), Clock::duration::zero()));
    const auto status = node->process->wait(remaining);
    if (!status) {
      problems.push_back(node->name + " still running long after SIGTERM");
    } else if (!status->exited() || status->exit_code() != 0) {
      problems.push_back(node->name + " ended with " + status->describe());
    }
    cluster.mark_killed(*node);
  }
  const double drain_s = seconds_since(drain_started);
  if (!problems.empty()) fail(cluster, "SIGTERM did not drain cleanly:\n" + join_lines(problems));
  cluster.kafka().send(SIGTERM);
  const auto kafka_exit = cluster.kafka().wait(std::chrono::seconds(30));
  if (!kafka_exit || !kafka_exit->exited() || kafka_exit->exit_code() != 0) {
    fail(cluster, "mesh-kafka-mock did not stop on SIGTERM: " +
                      (kafka_exit ? kafka_exit->describe() : "still running"));
  }
  return drain_s;
}

// Starts the gateway, `workers` workers and updater-1, and waits until all are ready.
std::vector<Node*> start_pipeline(Cluster& cluster, int workers) {
  cluster.start("gateway", "gateway");
  std::vector<Node*> started;
  for (int i = 1; i <= workers; ++i) {
    started.push_back(&cluster.start("worker-" + std::to_string(i), "worker", {"--cpu-threads=1"}));
  }
  cluster.start("updater-1", "updater");
  for (auto* node : cluster.live_nodes()) cluster.wait_ready(*node);
  return started;
}

std::string login(unsigned short gateway, const std::string& username) {
  const std::string credentials =
      json::serialize(json::object{{"username", username}, {"password", "correct horse battery"}});
  HttpSession session(gateway);
  const auto registered = session.request("POST", "/v1/auth/register", credentials);
  if (registered.status != 201) {
    throw std::runtime_error("register answered " + std::to_string(registered.status) + " " +
                             registered.body);
  }
  const auto logged_in = session.request("POST", "/v1/auth/login", credentials);
  if (logged_in.status != 200) {
    throw std::runtime_error("login answered " + std::to_string(logged_in.status) + " " +
                             logged_in.body);
  }
  return std::string(logged_in.json().at("access_token").as_string());
}

std::string user_id(PgConnection& db, const std::string& username) {
  const auto rows = db.query("SELECT id::text FROM users WHERE username = '" + username + "'");
  if (rows.size() != 1 || !rows[0][0]) throw std::runtime_error("no user " + username);
  return *rows[0][0];
}

std::optional<json::value> parse_json(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  auto value = json::parse(*text, ec);
  if (ec) return std::nullopt;
  return value;
}

// Every accepted task stored once, succeeded, with its type, payload and exact result; no row
// that was not accepted.
std::vector<std::string> check_stored_tasks(PgConnection& db, const std::vector<TaskSpec>& tasks,
                                            const std::vector<std::optional<std::string>>& ids,
                                            const std::string& owner) {
  std::vector<std::string> problems;
  const auto rows = db.query(
      "SELECT id::text, user_id::text, type, status, payload::text, result::text, error, "
      "attempts FROM tasks");
  std::map<std::string, const PgConnection::Row*> by_id;
  for (const auto& row : rows) {
    if (!by_id.emplace(*row[0], &row).second) problems.push_back("id " + *row[0] + " stored twice");
  }
  std::set<std::string> accepted;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!ids[i]) continue;
    const auto& id = *ids[i];
    if (!accepted.insert(id).second) {
      problems.push_back("task " + std::to_string(i) + " got id " + id + " already given out");
    }
    const auto found = by_id.find(id);
    if (found == by_id.end()) {
      problems.push_back("task " + std::to_string(i) + " (" + id + ") accepted but not stored");
      continue;
    }
    const auto& row = *found->second;
    const std::string where = "task " + std::to_string(i) + " (" + id + ", " + tasks[i].type + ")";
    if (row[1] != owner) problems.push_back(where + ": user_id " + show(row[1]));
    if (row[2] != tasks[i].type) problems.push_back(where + ": type " + show(row[2]));
    if (row[3] != "succeeded") {
      problems.push_back(where + ": status " + show(row[3]) + " error " + show(row[6]));
      continue;
    }
    if (parse_json(row[4]) != std::optional<json::value>(tasks[i].payload)) {
      problems.push_back(where + ": payload " + show(row[4]) + ", submitted " +
                         json::serialize(tasks[i].payload));
    }
    if (parse_json(row[5]) != std::optional<json::value>(tasks[i].expected)) {
      problems.push_back(where + ": result " + show(row[5]) + ", expected " +
                         json::serialize(tasks[i].expected));
    }
    if (row[6]) problems.push_back(where + ": error " + *row[6]);
    if (!row[7] || std::stoi(*row[7]) < 1) problems.push_back(where + ": attempts " + show(row[7]));
  }
  for (const auto& row : rows) {
    if (!accepted.count(*row[0])) {
      problems.push_back("row " + *row[0] + " (status " + show(row[3]) + ") was never accepted");
    }
  }
  return problems;
}

// A sample of tasks read back through the API agrees with the database.
std::vector<std::string> check_api_sample(unsigned short gateway, const std::string& token,
                                          const std::vector<TaskSpec>& tasks,
                                          const std::vector<std::optional<std::string>>& ids) {
  std::vector<std::string> problems;
  HttpSession session(gateway);
  for (std::size_t i = 0; i < tasks.size(); i += 97) {
    if (!ids[i]) continue;
    const auto reply =
        session.request("GET", "/v1/tasks/" + *ids[i], {}, {{"Authorization", "Bearer " + token}});
    const std::string where = "GET /v1/tasks/" + *ids[i] + " (task " + std::to_string(i) + ")";
    if (reply.status != 200) {
      problems.push_back(where + ": " + std::to_string(reply.status) + " " + reply.body);
      continue;
    }
    const auto body = reply.json().as_object();
    if (body.at("status") != json::value("succeeded") || body.at("result") != tasks[i].expected ||
        body.at("payload") != tasks[i].payload || body.at("type") != json::value(tasks[i].type)) {
      problems.push_back(where + ": " + reply.body);
    }
  }
  return problems;
}

void run_scenario(Crash crash) {
  const std::string label = crash == Crash::worker ? "worker" : "updater";
  const auto started = Clock::now();
  Cluster cluster(label + "-crash");
  try {
    const auto workers = start_pipeline(cluster, 3);
    auto& gateway = cluster.node("gateway");
    const double ready_s = seconds_since(started);

    const std::string username = "e2e_" + label + "_" + std::to_string(::getpid());
    const std::string token = login(gateway.port, username);
    PgConnection db(cluster.pg_url());
    const std::string owner = user_id(db, username);
    const auto tasks = make_tasks(label + "-" + std::to_string(::getpid()));

    const auto submit_started = Clock::now();
    Submitter submitter(gateway.port, token, tasks, kSubmittedBeforeCrash);
    // Complete rows: the completion and the pending record are both stored (the updater
    // consumes the two topics independently, so either may land first).
    const auto succeeded = [&db] {
      return db.count("SELECT count(*) FROM tasks WHERE status = 'succeeded' AND type IS NOT NULL");
    };
    await(cluster, db, std::to_string(kSucceededBeforeCrash) + " succeeded tasks before the crash",
          std::chrono::minutes(3), [&] { return succeeded() >= kSucceededBeforeCrash; });

    // The crash: the worker with the most tasks in flight, or the only updater, dies without any
    // chance to clean up.
    Node* victim = &cluster.node("updater-1");
    std::string victim_note;
    if (crash == Crash::worker) {
      await(cluster, db, "a worker with tasks in flight", std::chrono::minutes(1), [&] {
        double most = 0;
        victim_note.clear();
        for (auto* worker : workers) {
          const double in_flight = scrape_metric(worker->port, "mesh_worker_tasks_in_flight");
          victim_note += worker->name + " had " + std::to_string(static_cast<int>(in_flight)) +
                         " tasks in flight; ";
          if (in_flight > most) {
            most = in_flight;
            victim = worker;
          }
        }
        return most > 0;
      });
    }
    const long long succeeded_at_crash = succeeded();
    const std::size_t answered_at_crash = submitter.answered();
    cluster.mark_killed(*victim);
    const auto killed = victim->process->kill_now();
    if (!killed.signaled() || killed.signal() != SIGKILL) {
      fail(cluster, victim->name + " was to die by SIGKILL but: " + killed.describe());
    }
    const auto killed_at = Clock::now();
    if (crash == Crash::updater) cluster.wait_ready(cluster.start("updater-2", "updater"));
    submitter.release();
    submitter.join();
    const double submit_s = seconds_since(submit_started);
    std::string takeover_note;
    if (crash == Crash::updater) {
      // Not a timing assertion, a figure for the log: about one session timeout is expected.
      auto& restarted = cluster.node("updater-2");
      await(cluster, db, "the restarted updater to store records", std::chrono::minutes(3),
            [&] { return scrape_metric(restarted.port, "mesh_updater_records_stored_total") > 0; });
      takeover_note = "updater-2 stored its first records " +
                      std::to_string(seconds_since(killed_at)) + " s after the crash; ";
    }
    if (!submitter.errors().empty()) {
      fail(cluster, "submitting failed:\n" + join_lines(submitter.errors()));
    }
    const auto& ids = submitter.ids();
    const auto accepted = static_cast<long long>(
        std::count_if(ids.begin(), ids.end(), [](const auto& id) { return id.has_value(); }));
    if (accepted != static_cast<long long>(kTasks)) {
      fail(cluster, "only " + std::to_string(accepted) + " of " + std::to_string(kTasks) +
                        " tasks were accepted");
    }

    await(cluster, db, "all " + std::to_string(accepted) + " accepted tasks to succeed",
          std::chrono::minutes(3), [&] { return succeeded() >= accepted; });
    const double done_s = seconds_since(submit_started);

    auto problems = check_stored_tasks(db, tasks, ids, owner);
    if (!problems.empty()) {
      fail(cluster, std::to_string(problems.size()) + " problems in the tasks table:\n" +
                        join_lines(problems));
    }
    problems = check_api_sample(gateway.port, token, tasks, ids);
    if (!problems.empty()) fail(cluster, "the API disagrees:\n" + join_lines(problems));
    // Nothing failed and nothing was undecodable, so nothing went to the dead-letter topic.
    for (auto* node : cluster.live_nodes()) {
      const auto metric = node->role == "worker"    ? "mesh_worker_dead_letters_total"
                          : node->role == "updater" ? "mesh_updater_dead_letters_total"
                                                    : "";
      if (*metric != '\0' && scrape_metric(node->port, metric) != 0) {
        fail(cluster, node->name + " dead-lettered records: " + metric);
      }
    }

    // The gateway, the workers (one fewer after a worker crash) and one updater.
    const double drain_s = drain_all(cluster, crash == Crash::worker ? 4 : 5);

    std::cerr << "e2e " << label << " crash: cluster ready in " << ready_s << " s; " << victim_note
              << takeover_note << "killed " << victim->name << " at " << succeeded_at_crash
              << " succeeded / " << answered_at_crash << " accepted; " << accepted
              << " tasks accepted in " << submit_s << " s (" << submitter.retries()
              << " retries), all succeeded after " << done_s << " s; drained in " << drain_s
              << " s; total " << seconds_since(started) << " s\n";
  } catch (const std::exception& e) {
    cluster.keep_logs();
    FAIL(e.what() << "\n" << cluster.diagnostics());
  }
}

// A payload Postgres cannot hold (jsonb has no U+0000) must not stop the pipeline: the gateway
// may refuse it (4xx), or accept it and the updater must set it aside (dead-letter it) and go
// on. Either way, tasks submitted after it are stored.
void run_poison_scenario() {
  Cluster cluster("poison");
  try {
    start_pipeline(cluster, 1);
    const auto gateway = cluster.node("gateway").port;
    const std::string username = "e2e_poison_" + std::to_string(::getpid());
    const std::string token = login(gateway, username);
    PgConnection db(cluster.pg_url());
    HttpSession session(gateway);
    const auto submit = [&](const json::value& payload) {
      return session.request("POST", "/v1/tasks",
                             json::serialize(json::object{{"type", "echo"}, {"payload", payload}}),
                             {{"Authorization", "Bearer " + token}});
    };

    const auto poison = submit(json::string(std::string_view("nul \0 inside", 12)));
    if (poison.status != 202 && (poison.status < 400 || poison.status >= 500)) {
      fail(cluster, "the task with U+0000 was answered " + std::to_string(poison.status) + " " +
                        poison.body);
    }
    constexpr long long kAfter = 20;
    for (long long i = 0; i < kAfter; ++i) {
      const auto reply = submit(json::object{{"after_poison", i}});
      if (reply.status != 202) {
        fail(cluster, "a task after the poison one was answered " + std::to_string(reply.status) +
                          " " + reply.body);
      }
    }
    const std::string verdict = poison.status == 202
                                    ? "accepted with 202"
                                    : "refused with " + std::to_string(poison.status);
    await(cluster, db,
          "the " + std::to_string(kAfter) +
              " tasks submitted after a task with U+0000 in its "
              "payload (" +
              verdict + ") to be stored as succeeded",
          std::chrono::minutes(1), [&] {
            return db.count(
                       "SELECT count(*) FROM tasks WHERE status = 'succeeded' AND "
                       "payload ? 'after_poison'") == kAfter;
          });
    drain_all(cluster, 3);
  } catch (const std::exception& e) {
    cluster.keep_logs();
    FAIL(e.what() << "\n" << cluster.diagnostics());
  }
}

}  // namespace

TEST_CASE("e2e: a worker killed mid-run loses no task and duplicates none", "[e2e]") {
  run_scenario(Crash::worker);
}

TEST_CASE("e2e: the updater killed mid-run and restarted loses no task and duplicates none",
          "[e2e]") {
  run_scenario(Crash::updater);
}

TEST_CASE("e2e: a task Postgres cannot store does not stop the pipeline", "[e2e][poison]") {
  run_poison_scenario();
}

}  // namespace mesh::e2e
