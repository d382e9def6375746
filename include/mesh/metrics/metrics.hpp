#pragma once
// Prometheus metrics: one registry per process, rendered by each role's /metrics handler.
#include <memory>
#include <string>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace mesh::metrics {

std::shared_ptr<prometheus::Registry> make_registry();

// The Prometheus text exposition format of everything in `registry`, plus the process metrics
// (resident memory, CPU seconds, open file descriptors, start time) read when scraped.
std::string render(prometheus::Registry& registry);

// Resident set size of this process in bytes (from /proc/self/statm).
std::size_t resident_memory_bytes();

// Latency buckets in seconds, 100 us to 10 s, shared by every duration histogram.
const prometheus::Histogram::BucketBoundaries& latency_buckets();

}  // namespace mesh::metrics
