// mesh-kafka-mock: a librdkafka mock cluster as its own process, for multi-process tests.
// Prints one line "bootstrap=<host:port,...>" once the brokers listen and the topics exist,
// then runs until SIGTERM or SIGINT.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "mesh/kafka/mock_cluster.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: mesh-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n";

struct Options {
  int brokers = 3;
  std::vector<std::pair<std::string, int>> topics;
};

int parse_positive(std::string_view text, std::string_view what) {
  std::size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(std::string(text), &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 1) {
    throw std::invalid_argument(std::string(what) + " must be a positive integer, got '" +
                                std::string(text) + "'");
  }
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if ((arg != "--brokers" && arg != "--topic") || i + 1 == argc) {
      throw std::invalid_argument("unexpected argument '" + std::string(arg) + "'");
    }
    const std::string_view value = argv[++i];
    if (arg == "--brokers") {
      options.brokers = parse_positive(value, "--brokers");
      continue;
    }
    const auto colon = value.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      throw std::invalid_argument("--topic wants NAME:PARTITIONS, got '" + std::string(value) +
                                  "'");
    }
    options.topics.emplace_back(std::string(value.substr(0, colon)),
                                parse_positive(value.substr(colon + 1), "--topic partitions"));
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before librdkafka starts its threads, so they inherit the mask and
  // sigwait() below is the only receiver.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    const auto options = parse(argc, argv);
    mesh::kafka::MockCluster cluster(options.brokers);
    for (const auto& [name, partitions] : options.topics) {
      cluster.create_topic(name, partitions, std::min(options.brokers, 3));
    }
    std::cout << "bootstrap=" << cluster.bootstrap() << std::endl;
    int received = 0;
    sigwait(&stop_signals, &received);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mesh-kafka-mock: " << e.what() << "\n" << kUsage;
    return 2;
  }
}
