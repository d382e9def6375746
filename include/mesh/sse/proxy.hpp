#pragma once
// The gateway's route to a stream role running in another process.
#include <prometheus/registry.h>

#include "mesh/config/config.hpp"
#include "mesh/http/router.hpp"

namespace mesh::sse {

// Registers GET /v1/stream/markets/{product}, forwarded to config.stream_url
// ("http://host:port"): the request goes upstream (with X-Request-Id and Last-Event-ID), a
// non-stream answer (400, 404, 503...) is relayed as it is, and a stream is relayed both ways
// with bounded buffers. Deadlines: 2 s to connect, 5 s to the response head, a write to the
// client pending over 30 s or an upstream silent for twice the heartbeat plus 5 s closes both
// sides. An upstream that cannot be reached or answers nothing gets 502 problem+json (always
// before any byte of the stream was sent). Throws std::invalid_argument if stream_url is not
// http://host:port.
void add_proxy_routes(http::Router& router, const config::Config& config,
                      prometheus::Registry& registry);

}  // namespace mesh::sse
