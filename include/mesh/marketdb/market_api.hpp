#pragma once
// The gateway's public market read API, over what the consumer stores:
//
//   GET /v1/markets                                  products, last price and time
//   GET /v1/markets/{product}/trades?limit&before    newest first, records as on market.trades
//   GET /v1/markets/{product}/candles?interval&from&to&limit
//                                                    OHLCV, oldest first; 1m, 5m, 15m or 1h
//
// A product is known when it has traded (the markets table) or is configured
// (--ingester-products): others are 404. Bad parameters are 400 problem+json naming the
// parameter. No authentication.
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::marketdb {

class MarketApi {
 public:
  MarketApi(const config::Config& config, pg::Pool& pool, prometheus::Registry& registry);

  void add_routes(http::Router& router);

  Task<http::Response> list_markets(http::Request& request);
  Task<http::Response> list_trades(http::Request& request);
  Task<http::Response> list_candles(http::Request& request);

 private:
  // 400 naming `parameter`, counted by parameter.
  http::Response invalid(std::string_view parameter, std::string_view detail);
  // A configured product, or one with a row in markets.
  Task<bool> known(const std::string& product);

  std::vector<std::string> configured_products_;
  pg::Pool& pool_;
  prometheus::Family<prometheus::Counter>& invalid_requests_;
};

}  // namespace mesh::marketdb
