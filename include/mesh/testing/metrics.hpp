#pragma once
// Test helpers shared by every test program: reading a metric from a registry, and waiting on a
// condition with a deadline while the io_context keeps running.
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <prometheus/registry.h>

#include "mesh/core/asio.hpp"

namespace mesh::testing {

// The value of a counter or gauge, or the sample count of a histogram, of the first series
// whose labels include all of `labels`; nullopt if there is none.
std::optional<double> metric(prometheus::Registry& registry, const std::string& name,
                             const std::map<std::string, std::string>& labels = {});

// Polls `done` every 5 ms on the calling coroutine's executor (which keeps serving everything
// else) until it holds or `timeout` passes; returns its last answer.
Task<bool> eventually(std::function<bool()> done,
                      std::chrono::milliseconds timeout = std::chrono::seconds(25));

}  // namespace mesh::testing
