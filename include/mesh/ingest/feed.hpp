#pragma once
// The Coinbase Exchange websocket feed protocol: classifies each raw message and turns matches
// and tickers into the normalized market records. Pure (no I/O); never throws on bad input.
//
// Gaps: Coinbase's `sequence` counts every message of a product across all channels, so with
// only some channels subscribed it is not contiguous. Trade ids are contiguous per product, so
// gaps are found from them: a match whose trade_id jumps by more than one, or a heartbeat whose
// last_trade_id is ahead of the last trade seen, reports the trades missed. A match whose
// trade_id is not above the last one seen for its product (replayed after a reconnect) is a
// duplicate and dropped.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mesh/market/events.hpp"

namespace mesh::ingest {

// Messages above this size are dropped unread (a match is about 300 bytes).
inline constexpr std::size_t kMaxFeedMessageBytes = 64 * 1024;

enum class MessageType { subscriptions, heartbeat, match, last_match, ticker, error, unknown };
std::string_view to_string(MessageType type);

enum class DropReason { malformed, oversized, wrong_type, duplicate };
std::string_view to_string(DropReason reason);

struct FeedEvent {
  // The message's type, when it could be read.
  std::optional<MessageType> type;
  // Set when the message is not used; `detail` says why.
  std::optional<DropReason> dropped;
  // A trade (match, last_match) or a ticker to publish; empty otherwise.
  std::variant<std::monostate, market::Trade, market::Ticker> record;
  // The product of a match, ticker or heartbeat.
  std::string product;
  // Trades missed just before this message (a trade_id gap); 0 when none.
  std::int64_t missing_trades = 0;
  // The reason of a drop, or the text of an `error` message.
  std::string detail;
};

class FeedParser {
 public:
  FeedEvent parse(std::string_view message);

  // The highest trade id seen for `product`, if any.
  std::optional<std::int64_t> last_trade_id(std::string_view product) const;

 private:
  std::map<std::string, std::int64_t, std::less<>> last_trade_ids_;
};

// The subscribe request for `products` on the matches, ticker and heartbeat channels.
std::string subscribe_message(const std::vector<std::string>& products);

}  // namespace mesh::ingest
