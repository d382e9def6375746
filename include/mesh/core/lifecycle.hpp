#pragma once
// One lifecycle for every long-lived object: started in order, stopped in reverse.
#include <functional>
#include <string>
#include <vector>

#include "mesh/core/asio.hpp"

namespace mesh::core {

class Lifecycle {
 public:
  using Action = std::function<Task<void>()>;

  // Runs `start` now; once it succeeds, `stop` is recorded to run during stop_all(). A failing
  // start propagates its exception, so the caller stops what had already started.
  Task<void> start(std::string name, Action start, Action stop);

  // Records a stop action for something already running.
  void on_stop(std::string name, Action stop);

  // Runs the recorded stop actions in reverse order. A failing action is logged and the rest
  // still run, so one broken dependency cannot keep the others from flushing.
  Task<void> stop_all();

 private:
  struct Entry {
    std::string name;
    Action stop;
  };
  std::vector<Entry> started_;
};

}  // namespace mesh::core
