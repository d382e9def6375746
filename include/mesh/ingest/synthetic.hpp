#pragma once
// A synthetic exchange feed for demos with no network: random-walk trades in the Coinbase
// message schema, so they go through the same parser as the real feed. Prices and sizes are
// integers of cents and 1e-8 units formatted as decimal strings (no floating point).
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace mesh::ingest {

class SyntheticFeed {
 public:
  // Trade ids start at `first_trade_id` for every product. The ingester starts them at the
  // current time in microseconds, so a restarted synthetic feed never reuses an id that the
  // consumer has already stored (it would be dropped there as a duplicate).
  SyntheticFeed(std::vector<std::string> products, std::uint64_t seed,
                std::int64_t first_trade_id = 1);

  std::size_t products() const { return markets_.size(); }

  // The next trade of product `index` at `time_micros` (Unix epoch): a `match` message followed
  // by its `ticker`. Trade ids are contiguous per product.
  std::vector<std::string> trade(std::size_t index, std::int64_t time_micros);
  // A `heartbeat` of product `index` naming its last trade id.
  std::string heartbeat(std::size_t index, std::int64_t time_micros);

 private:
  struct Market {
    std::string product;
    std::int64_t price_cents;
    std::int64_t last_trade_id = 0;
    std::int64_t sequence = 0;
  };
  std::vector<Market> markets_;
  std::mt19937_64 random_;
};

}  // namespace mesh::ingest
