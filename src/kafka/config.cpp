#include "mesh/kafka/config.hpp"

#include <stdexcept>

#include "internal.hpp"

namespace mesh::kafka {
namespace {

bool is_other_client_type_property(std::string_view message) {
  return message.find("will be ignored by this") != std::string_view::npos;
}

void forward_log(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  // librdkafka levels are syslog levels: 0 emergency .. 7 debug. One ClientConfig serves both
  // producers and consumers, so a consumer-only property on a producer is expected, not a
  // warning.
  const auto spd_level = is_other_client_type_property(message) ? spdlog::level::debug
                         : level <= 3                           ? spdlog::level::err
                         : level == 4                           ? spdlog::level::warn
                         : level <= 6                           ? spdlog::level::info
                                                                : spdlog::level::debug;
  log::event(*detail::logger(), spd_level, message,
             {{"client", rd_kafka_name(rk)}, {"facility", facility}});
}

void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    throw std::runtime_error("kafka config " + key + "=" + value + ": " + errstr);
  }
}

}  // namespace

ConfPtr make_conf(const ClientConfig& config, const Properties& defaults) {
  ConfPtr conf(rd_kafka_conf_new());
  if (!config.brokers.empty()) set(conf.get(), "bootstrap.servers", config.brokers);
  set(conf.get(), "client.id", config.client_id);
  // A broker that comes back is used within a second (librdkafka's default backoff reaches 10 s).
  set(conf.get(), "reconnect.backoff.ms", "50");
  set(conf.get(), "reconnect.backoff.max.ms", "1000");
  for (const auto& [key, value] : defaults) set(conf.get(), key, value);
  for (const auto& [key, value] : config.properties) set(conf.get(), key, value);
  rd_kafka_conf_set_log_cb(conf.get(), forward_log);
  return conf;
}

}  // namespace mesh::kafka
