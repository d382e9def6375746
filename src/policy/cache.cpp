#include "mesh/policy/cache.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include "mesh/core/log.hpp"

namespace mesh::policy {
namespace {

constexpr std::size_t kMaxIfNoneMatch = 8 * 1024;

prometheus::Family<prometheus::Counter>& requests_family(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("mesh_market_cache_requests_total")
      .Help("Cacheable market requests by what the cache did: hit, miss, bypass, error.")
      .Register(registry);
}

// A stored entry: "<etag>\n<content type>\n<body>" (neither of the first two holds a newline).
std::string encode_entry(std::string_view etag, std::string_view content_type,
                         std::string_view body) {
  std::string entry;
  entry.reserve(etag.size() + content_type.size() + body.size() + 2);
  entry.append(etag).append(1, '\n').append(content_type).append(1, '\n').append(body);
  return entry;
}

struct Entry {
  std::string etag;
  std::string content_type;
  std::string body;
};

std::optional<Entry> decode_entry(std::string_view entry) {
  const auto first = entry.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = entry.find('\n', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  return Entry{std::string(entry.substr(0, first)),
               std::string(entry.substr(first + 1, second - first - 1)),
               std::string(entry.substr(second + 1))};
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

}  // namespace

bool market_cacheable(const http::Request& request) {
  return (request.method == "GET" || request.method == "HEAD") &&
         (request.path == "/v1/markets" || request.path.starts_with("/v1/markets/"));
}

std::optional<std::string> market_cache_key(const http::Request& request, std::size_t max_target) {
  if (request.target.size() > max_target) return std::nullopt;
  const std::string_view target = request.target;
  std::string key(target.substr(0, target.find('?')));
  std::vector<std::string_view> params;
  std::string_view query = request.query;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    if (!param.empty()) params.push_back(param);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  const auto name = [](std::string_view param) { return param.substr(0, param.find('=')); };
  std::stable_sort(params.begin(), params.end(),
                   [&](std::string_view a, std::string_view b) { return name(a) < name(b); });
  char separator = '?';
  for (const auto param : params) {
    key += separator;
    key += param;
    separator = '&';
  }
  return key;
}

std::string strong_etag(std::string_view body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(body.data(), body.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length < 16) {
    throw std::runtime_error("SHA-256 of a cached body failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string etag = "\"";
  for (std::size_t i = 0; i < 16; ++i) {
    etag += kHex[digest[i] >> 4];
    etag += kHex[digest[i] & 0xf];
  }
  etag += '"';
  return etag;
}

bool if_none_match(std::string_view header, std::string_view etag) {
  if (header.size() > kMaxIfNoneMatch) return false;
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  std::size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (is_space(header[i]) || header[i] == ',')) ++i;
    if (i == header.size()) break;
    if (header[i] == '*') return true;
    if (header.compare(i, 2, "W/") == 0) i += 2;
    if (i >= header.size() || header[i] != '"') return false;
    const auto close = header.find('"', i + 1);
    if (close == std::string_view::npos) return false;
    if (header.substr(i, close - i + 1) == etag) return true;
    i = close + 1;
  }
  return false;
}

MarketCache::MarketCache(redis::Client& redis, MarketCacheOptions options,
                         prometheus::Registry& registry)
    : redis_(redis),
      options_(std::move(options)),
      cache_control_("public, max-age=" +
                     std::to_string(std::max<long long>(1, (options_.ttl.count() + 999) / 1000))),
      hits_(requests_family(registry).Add({{"result", "hit"}})),
      misses_(requests_family(registry).Add({{"result", "miss"}})),
      bypasses_(requests_family(registry).Add({{"result", "bypass"}})),
      errors_(requests_family(registry).Add({{"result", "error"}})) {}

http::Response MarketCache::finish(const http::Request& request, http::Response response,
                                   const std::string& etag) const {
  const auto condition = request.header("if-none-match");
  if (condition && if_none_match(*condition, etag)) {
    response = http::Response::empty(304);
  }
  response.set_header("ETag", etag);
  response.set_header("Cache-Control", cache_control_);
  return response;
}

http::Middleware MarketCache::middleware() {
  return [this](http::Request& request, const http::Next& next) -> Task<http::Response> {
    if (!market_cacheable(request)) co_return co_await next(request);
    auto key = market_cache_key(request, options_.max_target);
    if (!key) {
      bypasses_.Increment();
      co_return co_await next(request);
    }
    *key = options_.key_prefix + *key;

    std::vector<std::string> get{"GET", *key};
    const redis::Result cached = co_await redis_.command(std::move(get));
    if (!cached.ok()) {
      errors_.Increment();
      redis_warning_.warn(*log::get("policy"), "market cache unavailable: serving uncached",
                          cached.error ? cached.error.message() : cached.reply.string);
      co_return co_await next(request);
    }
    if (cached.reply.kind == redis::Reply::Kind::string) {
      if (auto entry = decode_entry(cached.reply.string)) {
        hits_.Increment();
        auto response =
            http::Response::text(200, std::move(entry->body), std::move(entry->content_type));
        co_return finish(request, std::move(response), entry->etag);
      }
    }

    misses_.Increment();
    auto response = co_await next(request);
    if (response.status != 200 || response.take_over || response.body.size() > options_.max_body ||
        response.content_type.find('\n') != std::string::npos) {
      co_return response;
    }
    const std::string etag = strong_etag(response.body);
    std::vector<std::string> set{"SET", *key,
                                 encode_entry(etag, response.content_type, response.body), "PX",
                                 std::to_string(options_.ttl.count())};
    const redis::Result stored = co_await redis_.command(std::move(set));
    if (!stored.ok()) {
      errors_.Increment();
      redis_warning_.warn(*log::get("policy"), "market cache unavailable: answer not stored",
                          stored.error ? stored.error.message() : stored.reply.string);
    }
    co_return finish(request, std::move(response), etag);
  };
}

}  // namespace mesh::policy
