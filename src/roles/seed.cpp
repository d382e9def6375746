#include "mesh/roles/seed.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <set>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/auth/jwt.hpp"
#include "mesh/auth/password.hpp"
#include "mesh/core/ids.hpp"
#include "mesh/core/log.hpp"
#include "mesh/core/runtime.hpp"
#include "mesh/metrics/metrics.hpp"
#include "mesh/pg/migrate.hpp"
#include "mesh/pg/pool.hpp"
#include "mesh/roles/schema.hpp"

namespace mesh::roles {
namespace json = boost::json;

namespace {

struct SeedOptions {
  int users = 10;
  int profiles = 5;
  std::string pg_url = "postgresql://mesh@127.0.0.1:5432/mesh";
  std::string base_url = "http://127.0.0.1:8080";
  std::vector<std::string> products{"BTC-USD", "ETH-USD"};
  std::string jwt_issuer = "mesh";
};

Task<json::object> seed(const SeedOptions& options, core::Runtime& runtime) {
  auto registry = metrics::make_registry();
  pg::PoolOptions pool_options;
  pool_options.url = options.pg_url;
  pool_options.size = 2;
  pg::Pool pool(runtime.io().get_executor(), pool_options, *registry);
  co_await pool.start();
  co_await pg::migrate(pool, migrations());

  std::mt19937_64 random(std::random_device{}());
  const std::string password = core::random_hex(8);
  // One hash for every seeded user: argon2 is slow on purpose.
  const std::string hash = auth::hash_password(password);
  const std::string batch = core::random_hex(3);

  json::array users;
  std::vector<std::string> user_ids;
  for (int i = 0; i < options.users; ++i) {
    const std::string id = core::uuid_v7();
    const std::string name = "seed_" + batch + "_" + std::to_string(i + 1);
    co_await pool.query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)",
                        pg::params(id, name, hash));
    users.push_back(json::object{{"id", id}, {"username", name}});
    user_ids.push_back(id);
  }

  json::array profiles;
  std::vector<std::pair<std::string, std::vector<std::string>>> memberships;
  for (int i = 0; i < options.profiles; ++i) {
    const std::string id = core::uuid_v7();
    const std::string name = "Seed profile " + batch + " " + std::to_string(i + 1);
    std::string watchlist = "{";
    json::array watch;
    for (const auto& product : options.products) {
      if (random() % 2 == 0 && watch.size() + 1 < options.products.size()) continue;
      watchlist += std::string(watch.empty() ? "" : ",") + "\"" + product + "\"";
      watch.push_back(json::value(product));
    }
    watchlist += "}";
    // Between one and three members, picked at random: with more profiles than users / 3,
    // some users belong to several profiles.
    std::set<std::string> members;
    const std::size_t wanted = 1 + random() % 3;
    while (members.size() < std::min(wanted, user_ids.size())) {
      members.insert(user_ids[random() % user_ids.size()]);
    }
    const std::string creator = *members.begin();
    co_await pool.query(
        "INSERT INTO profiles (id, name, watchlist, created_by) VALUES ($1, $2, $3::text[], $4)",
        pg::params(id, name, watchlist, creator));
    json::array member_list;
    for (const auto& member : members) {
      co_await pool.query("INSERT INTO profile_members (profile_id, user_id) VALUES ($1, $2)",
                          pg::params(id, member));
      member_list.push_back(json::value(member));
    }
    profiles.push_back(
        json::object{{"id", id}, {"name", name}, {"watchlist", watch}, {"members", member_list}});
    memberships.emplace_back(id, std::vector<std::string>(members.begin(), members.end()));
  }
  co_await pool.close(std::chrono::seconds(5));

  std::optional<auth::JwtCodec> jwt;
  if (const char* secret = std::getenv("MESH_JWT_SECRET"); secret && std::strlen(secret) >= 32) {
    jwt.emplace(secret, options.jwt_issuer, std::chrono::hours(24));
  }
  json::array pairs;
  for (const auto& [profile_id, members] : memberships) {
    for (const auto& user_id : members) {
      std::string username;
      for (const auto& user : users) {
        if (user.at("id") == json::value(user_id)) username = user.at("username").as_string();
      }
      json::object pair{{"user_id", user_id}, {"username", username}, {"profile_id", profile_id}};
      const std::string url = options.base_url + "/v1/stream/sessions/" + profile_id;
      pair["stream_url"] = url;
      if (jwt) {
        const auto token = jwt->issue(user_id, username, "user", std::chrono::system_clock::now());
        pair["token"] = token;
        pair["try"] = "curl -N -H 'Authorization: Bearer " + token + "' " + url;
      }
      pairs.push_back(std::move(pair));
    }
  }
  co_return json::object{{"password", password},
                         {"users", std::move(users)},
                         {"profiles", std::move(profiles)},
                         {"pairs", std::move(pairs)}};
}

}  // namespace

int run_seed(const std::vector<std::string>& args) {
  SeedOptions options;
  CLI::App app{"mesh seed: create random users and profiles with overlapping memberships",
               "mesh seed"};
  app.add_option("--users", options.users, "Users to create")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--profiles", options.profiles, "Profiles to create")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--pg-url", options.pg_url, "Postgres libpq URI (env MESH_PG_URL)")
      ->envname("MESH_PG_URL")
      ->capture_default_str();
  app.add_option("--base-url", options.base_url, "Where the printed session URLs point")
      ->capture_default_str();
  app.add_option("--products", options.products, "Products watchlists are drawn from")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--jwt-issuer", options.jwt_issuer, "Issuer of the printed tokens")
      ->envname("MESH_JWT_ISSUER")
      ->capture_default_str();
  std::vector<std::string> rest(args.begin() + 2, args.end());
  std::reverse(rest.begin(), rest.end());
  try {
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  log::set_level("warn");
  core::Runtime runtime(1, 1);
  return runtime.run([&]() -> Task<int> {
    try {
      const auto result = co_await seed(options, runtime);
      std::cout << json::serialize(result) << "\n";
      co_return 0;
    } catch (const std::exception& e) {
      std::cerr << "mesh seed: " << e.what() << "\n";
      co_return 1;
    }
  });
}

}  // namespace mesh::roles
