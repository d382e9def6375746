#include "mesh/core/health.hpp"

namespace mesh::core {

void Health::add_check(std::string name, Check check) {
  std::lock_guard lock(mutex_);
  checks_.emplace_back(std::move(name), std::move(check));
}

Health::Readiness Health::readiness() const {
  Readiness result;
  if (!started_) result.failing.emplace_back("starting");
  if (draining_) result.failing.emplace_back("draining");
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, check] : checks_) {
      if (!check()) result.failing.push_back(name);
    }
  }
  result.ready = result.failing.empty();
  return result;
}

}  // namespace mesh::core
