#include "mesh/kafka/mock_cluster.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "internal.hpp"

namespace mesh::kafka {
namespace {

std::vector<std::string_view> split_brokers(std::string_view list) {
  std::vector<std::string_view> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    auto item = list.substr(0, comma);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

// The mock clusters alive in this process, so ensure_topics() can create topics on them (the
// mock cannot serve CreateTopics). The mutex also keeps a cluster alive while it is used.
struct LocalMocks {
  std::mutex mutex;
  std::vector<std::pair<std::string, rd_kafka_mock_cluster_t*>> clusters;
};

LocalMocks& local_mocks() {
  static LocalMocks instance;
  return instance;
}

void check(rd_kafka_resp_err_t err, const std::string& what) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error("kafka mock cluster: " + what + ": " + rd_kafka_err2str(err));
  }
}

}  // namespace

MockCluster::MockCluster(int brokers) {
  if (brokers < 1) throw std::invalid_argument("kafka mock cluster: brokers must be >= 1");
  ClientConfig host_config;
  host_config.client_id = "mesh-mock-cluster";
  // The host handle never connects anywhere: silence its "no bootstrap.servers" notice.
  auto conf = make_conf(host_config, {{"log_level", "4"}});
  char errstr[512];
  host_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr)));
  if (!host_) throw std::runtime_error(std::string("kafka mock cluster: host handle: ") + errstr);
  conf.release();  // rd_kafka_new took it
  cluster_ = rd_kafka_mock_cluster_new(host_.get(), brokers);
  if (cluster_ == nullptr) throw std::runtime_error("kafka mock cluster: could not start brokers");
  bootstrap_ = rd_kafka_mock_cluster_bootstraps(cluster_);
  auto& mocks = local_mocks();
  std::lock_guard lock(mocks.mutex);
  mocks.clusters.emplace_back(bootstrap_, cluster_);
}

MockCluster::~MockCluster() {
  {
    auto& mocks = local_mocks();
    std::lock_guard lock(mocks.mutex);
    std::erase_if(mocks.clusters, [this](const auto& entry) { return entry.second == cluster_; });
  }
  rd_kafka_mock_cluster_destroy(cluster_);
}

std::string MockCluster::bootstrap() const { return bootstrap_; }

Properties MockCluster::client_properties() {
  return {{"session.timeout.ms", "5000"},
          {"heartbeat.interval.ms", "300"},
          {"reconnect.backoff.ms", "20"},
          {"reconnect.backoff.max.ms", "200"}};
}

void MockCluster::create_topic(const std::string& name, int partitions, int replication) {
  check(rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, replication),
        "create topic " + name);
}

void MockCluster::set_broker_down(int32_t broker_id, bool down) {
  check(down ? rd_kafka_mock_broker_set_down(cluster_, broker_id)
             : rd_kafka_mock_broker_set_up(cluster_, broker_id),
        "set broker " + std::to_string(broker_id) + (down ? " down" : " up"));
}

void MockCluster::push_request_errors(int16_t api_key, std::vector<rd_kafka_resp_err_t> errors) {
  rd_kafka_mock_push_request_errors_array(cluster_, api_key, errors.size(), errors.data());
}

namespace detail {

std::optional<rd_kafka_resp_err_t> create_topic_on_local_mock(std::string_view brokers,
                                                              const std::string& topic,
                                                              int partitions, int replication) {
  const auto wanted = split_brokers(brokers);
  auto& mocks = local_mocks();
  std::lock_guard lock(mocks.mutex);
  for (const auto& [bootstrap, cluster] : mocks.clusters) {
    const auto own = split_brokers(bootstrap);
    const bool shared = std::any_of(wanted.begin(), wanted.end(), [&](std::string_view broker) {
      return std::find(own.begin(), own.end(), broker) != own.end();
    });
    if (shared) return rd_kafka_mock_topic_create(cluster, topic.c_str(), partitions, replication);
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace mesh::kafka
