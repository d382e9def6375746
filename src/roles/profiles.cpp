#include "mesh/roles/profiles.hpp"

#include <charconv>
#include <mutex>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/market/events.hpp"
#include "mesh/pg/error.hpp"
#include "mesh/policy/authenticate.hpp"
#include "mesh/roles/json_body.hpp"

namespace mesh::roles {
namespace json = boost::json;
using http::problem;
using http::Request;
using http::Response;

namespace {

constexpr std::size_t kMaxNameLength = 100;  // code points
constexpr std::size_t kMaxWatchlist = 50;    // products per profile
constexpr int kMaxProfilesListed = 1000;     // per user, in listings and the overview

std::int64_t to_int(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool valid_name(std::string_view name) {
  std::size_t code_points = 0;
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return false;
    if ((byte & 0xc0) != 0x80) ++code_points;
  }
  return code_points >= 1 && code_points <= kMaxNameLength;
}

// The columns profile_view reads, for `FROM profiles p`.
constexpr std::string_view kProfileColumns =
    "p.id::text, p.name, array_to_json(p.watchlist)::text, p.created_by::text, "
    "(extract(epoch from p.created_at) * 1000)::bigint, "
    "(SELECT json_agg(m.user_id::text ORDER BY m.added_at, m.user_id) FROM profile_members m "
    "WHERE m.profile_id = p.id)::text";

json::object profile_view(const pg::Result& rows, int row) {
  json::object profile;
  profile["id"] = rows.get(row, 0);
  profile["name"] = rows.get(row, 1);
  profile["watchlist"] = json::parse(rows.get(row, 2));
  profile["created_by"] = rows.get(row, 3);
  profile["created_at"] = core::rfc3339_ms(to_int(rows.get(row, 4)));
  const auto members = rows.get_optional(row, 5);
  profile["members"] = members ? json::parse(*members) : json::value(json::array());
  return profile;
}

// '{"BTC-USD","ETH-USD"}': product ids are validated ([A-Z0-9]+-[A-Z0-9]+), so quoting each
// is enough to make a Postgres array literal.
std::string array_literal(const std::vector<std::string>& items) {
  std::string literal = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) literal += ',';
    literal += '"' + items[i] + '"';
  }
  return literal + "}";
}

bool may_see_user(const http::Principal& caller, std::string_view user_id) {
  return caller.user_id == user_id || caller.role == "admin";
}

// What a profile lookup found for the caller.
enum class Access { unknown_profile, not_member, member };

Task<Access> access(pg::Pool& pg, const std::string& profile_id, const std::string& user_id) {
  const auto rows = co_await pg.query(
      "SELECT EXISTS (SELECT 1 FROM profiles WHERE id = $1), "
      "EXISTS (SELECT 1 FROM profile_members WHERE profile_id = $1 AND user_id = $2)",
      pg::params(profile_id, user_id));
  if (rows.get(0, 0) != "t") co_return Access::unknown_profile;
  co_return rows.get(0, 1) == "t" ? Access::member : Access::not_member;
}

Response denied(Access found) {
  return found == Access::unknown_profile
             ? problem(404, "no such profile")
             : problem(403, "only members of this profile may do that");
}

// The profiles `user_id` belongs to, oldest first (at most kMaxProfilesListed), as JSON.
Task<json::value> load_profiles(pg::Pool& pg, std::string user_id) {
  const auto rows =
      co_await pg.query("SELECT " + std::string(kProfileColumns) +
                            " FROM profiles p JOIN profile_members pm ON pm.profile_id = p.id"
                            " WHERE pm.user_id = $1 ORDER BY p.created_at, p.id LIMIT $2",
                        pg::params(user_id, std::to_string(kMaxProfilesListed)));
  json::array items;
  for (int row = 0; row < rows.rows(); ++row) items.push_back(profile_view(rows, row));
  co_return items;
}

}  // namespace

ProfilesApi::ProfilesApi(const config::Config& config, pg::Pool& pg, SessionLister sessions,
                         prometheus::Registry& registry)
    : config_(config),
      pg_(pg),
      sessions_(std::move(sessions)),
      overview_partial_(prometheus::BuildCounter()
                            .Name("mesh_gateway_overview_partial_total")
                            .Help("Overview answers missing a source that failed or was late.")
                            .Register(registry)) {}

void ProfilesApi::add_routes(http::Router& router) {
  auto route = [this](Task<Response> (ProfilesApi::*handler)(Request&)) {
    return policy::require_user(
        [this, handler](Request& request) { return (this->*handler)(request); });
  };
  router.add("GET", "/v1/users/me", route(&ProfilesApi::me));
  router.add("GET", "/v1/users/me/overview", route(&ProfilesApi::overview));
  router.add("GET", "/v1/users/{id}/profiles", route(&ProfilesApi::user_profiles));
  router.add("POST", "/v1/profiles", route(&ProfilesApi::create));
  router.add("GET", "/v1/profiles/{id}", route(&ProfilesApi::get));
  router.add("POST", "/v1/profiles/{id}/members", route(&ProfilesApi::add_member));
  router.add("DELETE", "/v1/profiles/{id}/members/{user_id}", route(&ProfilesApi::remove_member));
}

Task<bool> ProfilesApi::is_member(pg::Pool& pg, const std::string& profile_id,
                                  const std::string& user_id) {
  co_return co_await access(pg, profile_id, user_id) == Access::member;
}

Task<Response> ProfilesApi::me(Request& request) {
  const auto& caller = *request.principal;
  const auto rows = co_await pg_.query(
      "SELECT id::text, username, role, (extract(epoch from created_at) * 1000)::bigint "
      "FROM users WHERE id = $1",
      pg::params(caller.user_id));
  if (rows.rows() != 1) co_return problem(404, "this account no longer exists");
  co_return Response::json(200,
                           json::object{{"id", rows.get(0, 0)},
                                        {"username", rows.get(0, 1)},
                                        {"role", rows.get(0, 2)},
                                        {"created_at", core::rfc3339_ms(to_int(rows.get(0, 3)))}});
}

Task<Response> ProfilesApi::user_profiles(Request& request) {
  const std::string user_id(request.param("id"));
  if (!core::is_uuid(user_id)) co_return invalid_field("id", "a user id (UUID)");
  if (!may_see_user(*request.principal, user_id)) {
    co_return problem(403, "only the user themselves or an admin may list their profiles");
  }
  auto items = co_await load_profiles(pg_, user_id);
  co_return Response::json(200, json::object{{"items", std::move(items)}});
}

Task<Response> ProfilesApi::create(Request& request) {
  auto body = read_json_object(request);
  if (auto* error = std::get_if<Response>(&body)) co_return std::move(*error);
  const auto& fields = std::get<json::object>(body);
  for (const auto& [key, value] : fields) {
    if (key != "name" && key != "watchlist") {
      co_return invalid_field("/" + std::string(key), "unknown field");
    }
  }
  const auto* name = fields.if_contains("name");
  if (name == nullptr || !name->is_string() || !valid_name(name->as_string())) {
    co_return invalid_field("/name", "a string of 1 to 100 characters without control characters");
  }
  std::vector<std::string> watchlist;
  if (const auto* list = fields.if_contains("watchlist")) {
    if (!list->is_array() || list->as_array().size() > kMaxWatchlist) {
      co_return invalid_field("/watchlist", "an array of at most 50 product ids");
    }
    std::set<std::string, std::less<>> seen;
    for (std::size_t i = 0; i < list->as_array().size(); ++i) {
      const auto& item = list->as_array()[i];
      if (!item.is_string() || !market::is_product(item.as_string())) {
        co_return invalid_field("/watchlist/" + std::to_string(i), "a product id like BTC-USD");
      }
      std::string product(item.as_string());
      if (!seen.insert(product).second) {
        co_return invalid_field("/watchlist/" + std::to_string(i), "a repeated product");
      }
      watchlist.push_back(std::move(product));
    }
  }
  const std::string id = core::uuid_v7();
  const std::string name_text(name->as_string());
  const auto& caller = request.principal->user_id;
  bool unknown_user = false;
  try {
    // One statement, so the profile never exists without its creator as a member.
    co_await pg_.query(
        "WITH p AS (INSERT INTO profiles (id, name, watchlist, created_by) "
        "VALUES ($1, $2, $3::text[], $4) RETURNING id) "
        "INSERT INTO profile_members (profile_id, user_id) SELECT id, $4 FROM p",
        pg::params(id, name_text, array_literal(watchlist), caller));
  } catch (const pg::Error& e) {
    if (e.sqlstate() != pg::sqlstate::kForeignKeyViolation) throw;
    unknown_user = true;
  }
  if (unknown_user) co_return problem(403, "this account no longer exists");
  const auto rows = co_await pg_.query(
      "SELECT " + std::string(kProfileColumns) + " FROM profiles p WHERE p.id = $1",
      pg::params(id));
  auto response = Response::json(201, profile_view(rows, 0));
  response.set_header("Location", "/v1/profiles/" + id);
  co_return response;
}

Task<Response> ProfilesApi::get(Request& request) {
  const std::string id(request.param("id"));
  if (!core::is_uuid(id)) co_return problem(404, "no such profile");
  const auto found = co_await access(pg_, id, request.principal->user_id);
  if (found != Access::member &&
      !(found == Access::not_member && request.principal->role == "admin")) {
    co_return denied(found);
  }
  const auto rows = co_await pg_.query(
      "SELECT " + std::string(kProfileColumns) + " FROM profiles p WHERE p.id = $1",
      pg::params(id));
  if (rows.rows() != 1) co_return problem(404, "no such profile");
  co_return Response::json(200, profile_view(rows, 0));
}

Task<Response> ProfilesApi::add_member(Request& request) {
  const std::string id(request.param("id"));
  if (!core::is_uuid(id)) co_return problem(404, "no such profile");
  auto body = read_json_object(request);
  if (auto* error = std::get_if<Response>(&body)) co_return std::move(*error);
  const auto& fields = std::get<json::object>(body);
  for (const auto& [key, value] : fields) {
    if (key != "user_id") co_return invalid_field("/" + std::string(key), "unknown field");
  }
  const auto* user = fields.if_contains("user_id");
  if (user == nullptr || !user->is_string() || !core::is_uuid(user->as_string())) {
    co_return invalid_field("/user_id", "a user id (UUID)");
  }
  const std::string user_id(user->as_string());
  const auto found = co_await access(pg_, id, request.principal->user_id);
  if (found != Access::member) co_return denied(found);
  // Adding a member twice is not an error: the answer is the same state.
  const auto rows = co_await pg_.query(
      "WITH u AS (SELECT id FROM users WHERE id = $2), "
      "ins AS (INSERT INTO profile_members (profile_id, user_id) SELECT $1, id FROM u "
      "ON CONFLICT DO NOTHING) SELECT count(*) FROM u",
      pg::params(id, user_id));
  if (rows.get(0, 0) == "0") co_return problem(404, "no such user: " + user_id);
  co_return Response::empty(204);
}

Task<Response> ProfilesApi::remove_member(Request& request) {
  const std::string id(request.param("id"));
  const std::string user_id(request.param("user_id"));
  if (!core::is_uuid(id)) co_return problem(404, "no such profile");
  if (!core::is_uuid(user_id)) co_return problem(404, "no such member");
  const auto found = co_await access(pg_, id, request.principal->user_id);
  if (found != Access::member) co_return denied(found);
  enum class Outcome { removed, not_member, last_member };
  const auto outcome = co_await pg_.transaction([&](pg::Lease& lease) -> Task<Outcome> {
    // The profile row lock serializes removals, so two concurrent ones cannot both pass the
    // last-member check.
    co_await lease.query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE", pg::params(id));
    const auto counts = co_await lease.query(
        "SELECT count(*), count(*) FILTER (WHERE user_id = $2) FROM profile_members "
        "WHERE profile_id = $1",
        pg::params(id, user_id));
    if (counts.get(0, 1) == "0") co_return Outcome::not_member;
    if (counts.get(0, 0) == "1") co_return Outcome::last_member;
    co_await lease.query("DELETE FROM profile_members WHERE profile_id = $1 AND user_id = $2",
                         pg::params(id, user_id));
    co_return Outcome::removed;
  });
  if (outcome == Outcome::not_member) co_return problem(404, "no such member");
  if (outcome == Outcome::last_member) {
    co_return problem(409, "the last member of a profile cannot be removed");
  }
  co_return Response::empty(204);
}

namespace {

// The overview's sources run in parallel, each under its own deadline. A source that fails or
// is late leaves its part null and is named in "partial"; its coroutine may still finish later
// and then writes into the shared state nobody reads any more.
struct Gather {
  std::mutex mutex;
  std::optional<json::value> parts[3];
  bool failed[3] = {false, false, false};
  int pending = 3;
  std::optional<asio::steady_timer> wake;  // cancelled when every source is in
};

// Coroutine parameters are copied into the frame; lambda captures would not be.
Task<json::value> load_task_counts(pg::Pool& pg, std::string user_id) {
  const auto rows = co_await pg.query(
      "SELECT status, count(*) FROM tasks WHERE user_id = $1 GROUP BY status", pg::params(user_id));
  json::object counts{{"queued", 0}, {"running", 0}, {"succeeded", 0}, {"failed", 0}};
  for (int row = 0; row < rows.rows(); ++row) counts[rows.get(row, 0)] = to_int(rows.get(row, 1));
  co_return counts;
}

Task<json::value> load_sessions(SessionLister lister, std::string user_id) {
  if (!lister) throw std::runtime_error("no session store");
  auto listed = co_await lister(user_id);
  if (!listed) throw std::runtime_error("session store unavailable");
  co_return json::value(std::move(*listed));
}

}  // namespace

Task<Response> ProfilesApi::overview(Request& request) {
  const std::string user_id = request.principal->user_id;
  auto executor = co_await asio::this_coro::executor;
  auto gather = std::make_shared<Gather>();
  gather->wake.emplace(executor);
  gather->wake->expires_after(config_.overview_timeout);

  auto finish = [gather, executor](int index, std::optional<json::value> value) {
    // Runs on the source's coroutine; the timer is touched on the handler's executor.
    std::lock_guard lock(gather->mutex);
    if (value) {
      gather->parts[index] = std::move(*value);
    } else {
      gather->failed[index] = true;
    }
    if (--gather->pending == 0) asio::post(executor, [gather] { gather->wake->cancel(); });
  };
  auto launch = [&](int index, Task<json::value> source) {
    asio::co_spawn(executor, std::move(source),
                   [finish, index](std::exception_ptr error, json::value value) {
                     if (error) {
                       finish(index, std::nullopt);
                     } else {
                       finish(index, std::move(value));
                     }
                   });
  };
  launch(0, load_profiles(pg_, user_id));
  launch(1, load_sessions(sessions_, user_id));
  launch(2, load_task_counts(pg_, user_id));
  // The sources run on this executor too, so none can finish (and cancel the timer) before
  // this wait has begun.
  error_code ignored;
  co_await gather->wake->async_wait(asio::redirect_error(asio::use_awaitable, ignored));

  static constexpr const char* kNames[3] = {"profiles", "sessions", "tasks"};
  json::object body;
  json::array partial;
  {
    std::lock_guard lock(gather->mutex);
    for (int i = 0; i < 3; ++i) {
      if (gather->parts[i]) {
        body[kNames[i]] = *gather->parts[i];
      } else {
        body[kNames[i]] = nullptr;
        partial.push_back(json::value(kNames[i]));
        overview_partial_
            .Add({{"source", kNames[i]}, {"reason", gather->failed[i] ? "error" : "timeout"}})
            .Increment();
      }
    }
  }
  body["partial"] = std::move(partial);
  co_return Response::json(200, body);
}

}  // namespace mesh::roles

namespace mesh::roles {
namespace {
constexpr std::size_t kMaxKnownExternalUsers = 100'000;
constexpr std::string_view kNoPassword = "!external";
}  // namespace

http::Middleware ExternalUsers::middleware() {
  return [this](Request& request, const http::Next& next) -> Task<Response> {
    const auto& principal = request.principal;
    if (principal && core::is_uuid(principal->user_id) && principal->user_id[14] == '8') {
      bool known = false;
      {
        std::lock_guard lock(mutex_);
        known = known_.count(principal->user_id) == 1;
      }
      if (!known) co_await provision(*principal);
    }
    co_return co_await next(request);
  };
}

Task<void> ExternalUsers::provision(const http::Principal& principal) {
  // The display name may be taken (usernames are unique case-insensitively): then the id's
  // first block makes it unique.
  const std::string names[2] = {principal.username,
                                principal.username + "#" + principal.user_id.substr(0, 8)};
  for (const auto& name : names) {
    const auto rows = co_await pg_.query(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        pg::params(principal.user_id, name, std::string(kNoPassword)));
    const auto exists =
        co_await pg_.query("SELECT 1 FROM users WHERE id = $1", pg::params(principal.user_id));
    if (rows.rows() == 1 || exists.rows() == 1) break;
  }
  std::lock_guard lock(mutex_);
  if (known_.size() >= kMaxKnownExternalUsers) known_.clear();
  known_.insert(principal.user_id);
}

}  // namespace mesh::roles
