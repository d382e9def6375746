#include "mesh/metrics/metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <sys/resource.h>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <prometheus/collectable.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

namespace mesh::metrics {
namespace {

prometheus::MetricFamily gauge_family(std::string name, std::string help, double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
  return family;
}

double open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double count = 0;
  while (readdir(dir) != nullptr) ++count;
  closedir(dir);
  return count - 3;  // ".", ".." and the directory's own descriptor
}

class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    families.push_back(gauge_family("process_resident_memory_bytes",
                                    "Resident memory size in bytes.",
                                    static_cast<double>(resident_memory_bytes())));
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
      auto family =
          gauge_family("process_cpu_seconds_total", "User and system CPU time spent.", cpu);
      family.type = prometheus::MetricType::Counter;
      family.metric[0].counter.value = cpu;
      families.push_back(std::move(family));
    }
    families.push_back(gauge_family("process_open_fds", "Open file descriptors.", open_fds()));
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
      families.push_back(gauge_family("process_max_fds", "Maximum number of open file descriptors.",
                                      static_cast<double>(files.rlim_cur)));
    }
    families.push_back(gauge_family("process_start_time_seconds",
                                    "Start time of the process since the Unix epoch.",
                                    start_time_));
    return families;
  }

 private:
  double start_time_ = static_cast<double>(std::time(nullptr));
};

}  // namespace

std::shared_ptr<prometheus::Registry> make_registry() {
  return std::make_shared<prometheus::Registry>();
}

std::string render(prometheus::Registry& registry) {
  static const ProcessCollector process;
  auto families = registry.Collect();
  auto extra = process.Collect();
  families.insert(families.end(), std::make_move_iterator(extra.begin()),
                  std::make_move_iterator(extra.end()));
  return prometheus::TextSerializer().Serialize(families);
}

std::size_t resident_memory_bytes() {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  const int read = std::fscanf(file, "%lu %lu", &size, &resident);
  std::fclose(file);
  if (read != 2) return 0;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries buckets{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
  return buckets;
}

}  // namespace mesh::metrics
