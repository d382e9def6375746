#pragma once
// What /healthz and /readyz report: alive while the process runs; ready once started, while
// every dependency check passes and the process is not draining.
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace mesh::core {

class Health {
 public:
  using Check = std::function<bool()>;

  // Checks must be cheap and non-blocking (they read state the clients keep up to date).
  void add_check(std::string name, Check check);
  void set_started() { started_ = true; }
  void set_draining() { draining_ = true; }
  bool draining() const { return draining_; }

  struct Readiness {
    bool ready = false;
    std::vector<std::string> failing;  // names of failing checks, or "starting"/"draining"
  };
  Readiness readiness() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, Check>> checks_;
  std::atomic<bool> started_{false};
  std::atomic<bool> draining_{false};
};

}  // namespace mesh::core
