#pragma once
// The normalized market-data records every market role shares, as JSON text on Kafka (keyed by
// product):
//
//   market.trades  {"product","trade_id","price","size","side","time","sequence"}
//   market.ticker  {"product","price","best_bid","best_ask","time","sequence"}
//
// Prices and sizes are exact decimal strings ("27012.35", "0.00120000"): they are never turned
// into binary floating point anywhere (Postgres stores them as numeric). Times are RFC 3339 UTC
// with exactly six fractional digits ("2026-11-30T14:03:07.123456Z"), the precision Postgres
// timestamptz keeps, so a time survives a round trip through the database byte for byte.
//
// Decoders never throw on bad input; they return a reason to log and count.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace mesh::market {

inline constexpr const char* kTradesTopic = "market.trades";
inline constexpr const char* kTickerTopic = "market.ticker";
inline constexpr const char* kDeadLetterTopic = "market.dlq";

// Decimal strings: an optional '-' is refused (prices and sizes are never negative), digits,
// optionally '.' and digits; at most 40 characters; no exponent, no leading '+', no spaces.
bool is_decimal(std::string_view text);

// Product ids as exchanges name them: "BTC-USD". Two parts of 1 to 10 characters [A-Z0-9]
// joined by '-'.
bool is_product(std::string_view text);

// Parses an RFC 3339 time ("2026-11-30T14:03:07.1Z", "...+01:00", up to 9 fractional digits)
// and returns it in the canonical UTC form with six fractional digits (truncated, not rounded).
// nullopt when it is not a valid time between years 1970 and 9999.
std::optional<std::string> normalize_time(std::string_view text);

// Microseconds since the Unix epoch of a canonical time; nullopt if not canonical.
std::optional<std::int64_t> time_micros(std::string_view canonical);
// The canonical form of a microsecond timestamp.
std::string format_time(std::int64_t micros);

enum class Side { buy, sell };
std::string_view to_string(Side side);

struct Trade {
  std::string product;    // is_product
  std::int64_t trade_id;  // >= 0
  std::string price;      // is_decimal
  std::string size;       // is_decimal
  Side side = Side::buy;  // the maker order's side, as the exchange reports it
  std::string time;       // canonical time
  std::int64_t sequence;  // >= 0; per product, from the feed
};

struct Ticker {
  std::string product;
  std::string price;
  std::string best_bid;
  std::string best_ask;
  std::string time;
  std::int64_t sequence;
};

struct DecodeError {
  std::string reason;  // "<field>: <problem>" or "invalid JSON ..."
};

// Records above this size are refused by the decoders (a trade is about 150 bytes).
inline constexpr std::size_t kMaxEventBytes = 4096;

std::string encode(const Trade& trade);
std::string encode(const Ticker& ticker);
std::variant<Trade, DecodeError> decode_trade(std::string_view text);
std::variant<Ticker, DecodeError> decode_ticker(std::string_view text);

}  // namespace mesh::market
