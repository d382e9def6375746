#include "mesh/core/lifecycle.hpp"

#include <exception>

#include "mesh/core/log.hpp"

namespace mesh::core {

Task<void> Lifecycle::start(std::string name, Action start, Action stop) {
  auto logger = log::get("core");
  logger->debug("starting {}", name);
  co_await start();
  logger->debug("started {}", name);
  started_.push_back({std::move(name), std::move(stop)});
}

void Lifecycle::on_stop(std::string name, Action stop) {
  started_.push_back({std::move(name), std::move(stop)});
}

Task<void> Lifecycle::stop_all() {
  auto logger = log::get("core");
  while (!started_.empty()) {
    Entry entry = std::move(started_.back());
    started_.pop_back();
    try {
      logger->debug("stopping {}", entry.name);
      co_await entry.stop();
    } catch (const std::exception& e) {
      logger->error("stopping {} failed: {}", entry.name, e.what());
    }
  }
}

}  // namespace mesh::core
