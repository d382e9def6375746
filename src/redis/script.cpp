#include <string>
#include <utility>

#include "mesh/redis/client.hpp"
#include "sha1.hpp"

namespace mesh::redis {
namespace {

bool is_noscript(const Result& result) {
  return !result.error && result.reply.is_error() && result.reply.string.starts_with("NOSCRIPT");
}

}  // namespace

Script::Script(std::string lua) : lua_(std::move(lua)), sha1_(detail::sha1_hex(lua_)) {}

Task<Result> Script::run(Client& client, std::vector<std::string> keys,
                         std::vector<std::string> args) const {
  std::vector<std::string> evalsha;
  evalsha.reserve(3 + keys.size() + args.size());
  evalsha.push_back("EVALSHA");
  evalsha.push_back(sha1_);
  evalsha.push_back(std::to_string(keys.size()));
  for (auto& key : keys) evalsha.push_back(std::move(key));
  for (auto& arg : args) evalsha.push_back(std::move(arg));

  // Only the rare NOSCRIPT path needs the command twice; copy it rather than rebuild it.
  Result result = co_await client.command(evalsha);
  if (!is_noscript(result)) co_return result;

  std::vector<std::string> load{"SCRIPT", "LOAD", lua_};
  Result loaded = co_await client.command(std::move(load));
  if (!loaded.ok()) co_return loaded;
  // Redis names scripts by the same SHA-1, so the retry uses the name it just answered with.
  evalsha[1] = std::move(loaded.reply.string);
  co_return co_await client.command(std::move(evalsha));
}

}  // namespace mesh::redis
