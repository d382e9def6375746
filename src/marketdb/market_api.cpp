#include "mesh/marketdb/market_api.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "mesh/market/events.hpp"

namespace mesh::marketdb {
namespace json = boost::json;
using http::Request;
using http::Response;

namespace {

constexpr int kMaxLimit = 1000;
constexpr int kDefaultTradesLimit = 100;
constexpr int kDefaultCandlesLimit = 300;

// Canonical RFC 3339 UTC, whatever the session's TimeZone.
#define MESH_MICROS_UTC(column) \
  "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define MESH_SECONDS_UTC(column) \
  "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

constexpr std::string_view kMarkets = "SELECT product, last_price::text, " MESH_MICROS_UTC(
    "last_time") " FROM markets ORDER BY product LIMIT 10000";  // products are few: only a bound

constexpr std::string_view kKnownProduct = "SELECT 1 FROM markets WHERE product = $1";

constexpr std::string_view kTrades =
    "SELECT product, trade_id, price::text, size::text, side, " MESH_MICROS_UTC(
        "time") ", sequence FROM trades"
                " WHERE product = $1 AND ($2::bigint IS NULL OR trade_id < $2::bigint)"
                " ORDER BY trade_id DESC LIMIT $3::int";

// One-minute candles as stored. $2/$3: [from, to) on start, either NULL for unbounded.
#define MESH_MINUTE_CANDLES(order) \
  "SELECT " MESH_SECONDS_UTC(                                                                \
      "start") ", open::text, high::text, low::text, close::text, volume::text"              \
               " FROM candles_1m WHERE product = $1"                                         \
               " AND start >= coalesce($2::timestamptz, '-infinity')"                        \
               " AND start < coalesce($3::timestamptz, 'infinity')"                          \
               " ORDER BY start " order " LIMIT $4::int"

// Wider candles from the one-minute ones: open of the first minute, close of the last. $2 is the
// interval; a bucket is in [from, to) by its start, and takes every minute it holds.
#define MESH_BUCKET_CANDLES(order) \
  "SELECT " MESH_SECONDS_UTC(                                                                    \
      "bucket") ", open::text, high::text, low::text, close::text, volume::text FROM ("          \
                " SELECT date_bin($2::interval, start, timestamptz '1970-01-01 00:00:00+00')"    \
                " AS bucket, (array_agg(open ORDER BY start))[1] AS open, max(high) AS high,"    \
                " min(low) AS low, (array_agg(close ORDER BY start DESC))[1] AS close,"          \
                " sum(volume) AS volume"                                                         \
                " FROM candles_1m WHERE product = $1"                                            \
                " AND start >= coalesce($3::timestamptz, '-infinity')"                           \
                " AND start < coalesce($4::timestamptz + $2::interval, 'infinity')"              \
                " GROUP BY 1) buckets"                                                           \
                " WHERE bucket >= coalesce($3::timestamptz, '-infinity')"                        \
                " AND bucket < coalesce($4::timestamptz, 'infinity')"                            \
                " ORDER BY bucket " order " LIMIT $5::int"

constexpr std::string_view kMinuteCandlesFirst = MESH_MINUTE_CANDLES("ASC");
constexpr std::string_view kMinuteCandlesLatest = MESH_MINUTE_CANDLES("DESC");
constexpr std::string_view kBucketCandlesFirst = MESH_BUCKET_CANDLES("ASC");
constexpr std::string_view kBucketCandlesLatest = MESH_BUCKET_CANDLES("DESC");

#undef MESH_MINUTE_CANDLES
#undef MESH_BUCKET_CANDLES
#undef MESH_MICROS_UTC
#undef MESH_SECONDS_UTC

std::optional<std::int64_t> parse_integer(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<std::string_view> interval_sql(std::string_view name) {
  if (name == "1m") return "1 minute";
  if (name == "5m") return "5 minutes";
  if (name == "15m") return "15 minutes";
  if (name == "1h") return "1 hour";
  return std::nullopt;
}

std::int64_t integer_cell(const pg::Result& rows, int row, int column) {
  return parse_integer(rows.get(row, column)).value_or(0);
}

Response not_found(std::string_view product) {
  return http::problem(404, "no market " + std::string(product));
}

// Sends JSON text built by hand (records already encoded as on Kafka).
Response json_text(std::string body) {
  return Response::text(200, std::move(body), "application/json");
}

}  // namespace

MarketApi::MarketApi(const config::Config& config, pg::Pool& pool, prometheus::Registry& registry)
    : configured_products_(config.ingester_products),
      pool_(pool),
      invalid_requests_(prometheus::BuildCounter()
                            .Name("mesh_market_api_invalid_requests_total")
                            .Help("Market API requests answered 400, by the parameter at fault.")
                            .Register(registry)) {}

void MarketApi::add_routes(http::Router& router) {
  router.add("GET", "/v1/markets", [this](Request& r) { return list_markets(r); });
  router.add("GET", "/v1/markets/{product}/trades", [this](Request& r) { return list_trades(r); });
  router.add("GET", "/v1/markets/{product}/candles",
             [this](Request& r) { return list_candles(r); });
}

Response MarketApi::invalid(std::string_view parameter, std::string_view detail) {
  invalid_requests_.Add({{"parameter", std::string(parameter)}}).Increment();
  json::object extra;
  json::array errors;
  errors.push_back(json::object{{"field", parameter}, {"detail", detail}});
  extra["errors"] = std::move(errors);
  return http::problem(400, std::string(parameter) + ": " + std::string(detail), "Invalid request",
                       std::move(extra));
}

Task<bool> MarketApi::known(const std::string& product) {
  if (std::find(configured_products_.begin(), configured_products_.end(), product) !=
      configured_products_.end()) {
    co_return true;
  }
  const pg::Result rows = co_await pool_.query(kKnownProduct, pg::params(product));
  co_return rows.rows() > 0;
}

Task<Response> MarketApi::list_markets(Request&) {
  const pg::Result rows = co_await pool_.query(kMarkets);
  std::map<std::string, json::object> markets;
  for (int row = 0; row < rows.rows(); ++row) {
    markets[std::string(rows.get(row, 0))] = json::object{{"product", rows.get(row, 0)},
                                                          {"last_price", rows.get(row, 1)},
                                                          {"last_time", rows.get(row, 2)}};
  }
  for (const auto& product : configured_products_) {
    markets.try_emplace(
        product,
        json::object{{"product", product}, {"last_price", nullptr}, {"last_time", nullptr}});
  }
  json::array items;
  items.reserve(markets.size());
  for (auto& [product, market] : markets) items.push_back(std::move(market));
  co_return Response::json(200, json::object{{"items", std::move(items)}});
}

Task<Response> MarketApi::list_trades(Request& request) {
  const std::string product(request.param("product"));
  if (!market::is_product(product)) {
    co_return invalid("product", "a product id like BTC-USD");
  }
  std::int64_t limit = kDefaultTradesLimit;
  if (const auto text = request.query_param("limit")) {
    const auto parsed = parse_integer(*text);
    if (!parsed || *parsed < 1 || *parsed > kMaxLimit) {
      co_return invalid("limit", "an integer from 1 to 1000");
    }
    limit = *parsed;
  }
  std::optional<std::string> before;
  if (const auto text = request.query_param("before")) {
    const auto parsed = parse_integer(*text);
    if (!parsed || *parsed < 0) co_return invalid("before", "a trade_id (non-negative integer)");
    before = std::to_string(*parsed);
  }
  const pg::Result rows =
      co_await pool_.query(kTrades, pg::params(product, before, std::to_string(limit)));
  if (rows.rows() == 0) {
    const bool exists = co_await known(product);
    if (!exists) co_return not_found(product);
  }
  std::string body = R"({"items":[)";
  for (int row = 0; row < rows.rows(); ++row) {
    market::Trade trade;
    trade.product = rows.get(row, 0);
    trade.trade_id = integer_cell(rows, row, 1);
    trade.price = rows.get(row, 2);
    trade.size = rows.get(row, 3);
    trade.side = rows.get(row, 4) == "sell" ? market::Side::sell : market::Side::buy;
    trade.time = rows.get(row, 5);
    trade.sequence = integer_cell(rows, row, 6);
    if (row > 0) body.push_back(',');
    body += market::encode(trade);
  }
  body += "]}";
  co_return json_text(std::move(body));
}

Task<Response> MarketApi::list_candles(Request& request) {
  const std::string product(request.param("product"));
  if (!market::is_product(product)) {
    co_return invalid("product", "a product id like BTC-USD");
  }
  std::string_view interval = "1 minute";
  if (const auto text = request.query_param("interval")) {
    const auto sql = interval_sql(*text);
    if (!sql) co_return invalid("interval", "one of 1m, 5m, 15m, 1h");
    interval = *sql;
  }
  std::optional<std::string> from;
  if (const auto text = request.query_param("from")) {
    from = market::normalize_time(*text);
    if (!from) co_return invalid("from", "an RFC 3339 time like 2026-11-30T14:05:00Z");
  }
  std::optional<std::string> to;
  if (const auto text = request.query_param("to")) {
    to = market::normalize_time(*text);
    if (!to) co_return invalid("to", "an RFC 3339 time like 2026-11-30T15:05:00Z");
  }
  // Canonical times compare as text.
  if (from && to && *from > *to) co_return invalid("from", "must not be later than to");
  std::int64_t limit = kDefaultCandlesLimit;
  if (const auto text = request.query_param("limit")) {
    const auto parsed = parse_integer(*text);
    if (!parsed || *parsed < 1 || *parsed > kMaxLimit) {
      co_return invalid("limit", "an integer from 1 to 1000");
    }
    limit = *parsed;
  }
  // With `from`: the first candles from there on. Without: the latest ones (before `to`).
  const bool latest = !from;
  pg::Result rows;
  if (interval == "1 minute") {
    const std::string_view sql = latest ? kMinuteCandlesLatest : kMinuteCandlesFirst;
    rows = co_await pool_.query(sql, pg::params(product, from, to, std::to_string(limit)));
  } else {
    const std::string_view sql = latest ? kBucketCandlesLatest : kBucketCandlesFirst;
    rows = co_await pool_.query(
        sql, pg::params(product, std::string(interval), from, to, std::to_string(limit)));
  }
  if (rows.rows() == 0) {
    const bool exists = co_await known(product);
    if (!exists) co_return not_found(product);
  }
  json::array items;
  items.reserve(static_cast<std::size_t>(rows.rows()));
  for (int row = 0; row < rows.rows(); ++row) {
    items.push_back(json::object{{"start", rows.get(row, 0)},
                                 {"open", rows.get(row, 1)},
                                 {"high", rows.get(row, 2)},
                                 {"low", rows.get(row, 3)},
                                 {"close", rows.get(row, 4)},
                                 {"volume", rows.get(row, 5)}});
  }
  if (latest) std::reverse(items.begin(), items.end());
  co_return Response::json(200, json::object{{"items", std::move(items)}});
}

}  // namespace mesh::marketdb
