#pragma once
// Where an OidcVerifier's keys come from: a JWKS file or an http(s) URL, loaded at start and
// refreshed in the background, early when a token names an unknown key (key rotation).
#include <chrono>
#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "mesh/auth/oidc.hpp"
#include "mesh/core/asio.hpp"

namespace mesh::config {
struct Config;
}

namespace mesh::auth {

struct JwksSourceOptions {
  std::string location;  // a file path, file://PATH, http://URL or https://URL
  std::chrono::milliseconds refresh_interval{300'000};
  // Early refreshes for unknown kids start at most this often after the last fetch, so a flood
  // of tokens with made-up kids cannot turn mesh into a load generator against the provider.
  std::chrono::milliseconds min_early_refresh_gap{30'000};
  std::chrono::milliseconds fetch_timeout{5'000};  // one URL fetch: resolve to the last byte
  std::string ca_file;  // extra trusted CA bundle (PEM) for https; empty: the system store
};

class JwksSource {
 public:
  // Options from config.oidc_jwks and config.oidc_jwks_refresh.
  JwksSource(asio::any_io_executor executor, const config::Config& config, OidcVerifier& verifier,
             prometheus::Registry& registry);
  JwksSource(asio::any_io_executor executor, JwksSourceOptions options, OidcVerifier& verifier,
             prometheus::Registry& registry);
  ~JwksSource();
  JwksSource(const JwksSource&) = delete;
  JwksSource& operator=(const JwksSource&) = delete;

  // Loads the keys once into the verifier, throwing std::runtime_error with the reason when
  // that fails (serving with no keys would reject every external token), then refreshes in the
  // background until stop(). A failed refresh keeps the keys the verifier has.
  Task<void> start();
  // Ends the background refresh, cancelling a fetch in flight, and waits for it to finish.
  Task<void> stop();

  // Asks for an early refresh, as the verifier does on an unknown kid. Returns false when the
  // request is dropped: not started, stopped, or within min_early_refresh_gap of the last fetch.
  bool request_refresh();

 private:
  struct State;
  std::shared_ptr<State> state_;
  OidcVerifier& verifier_;
};

}  // namespace mesh::auth
