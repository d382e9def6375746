#pragma once
// Connection settings shared by every Kafka client of a role.
#include <map>
#include <string>

#include "mesh/kafka/handles.hpp"

namespace mesh::kafka {

struct ClientConfig {
  std::string brokers;  // bootstrap.servers, "host:port,host:port"
  std::string client_id = "mesh";
  // Extra librdkafka properties (security.protocol, sasl.*, linger.ms, ...), applied last.
  std::map<std::string, std::string> properties;
};

using Properties = std::map<std::string, std::string>;

// A librdkafka configuration: bootstrap.servers and client.id from `config`, then `defaults`
// (a client's own defaults), then config.properties, so the caller can override any default.
// librdkafka logs go to the "kafka" logger. Throws std::runtime_error naming the property and
// librdkafka's reason when a property is unknown or its value invalid.
ConfPtr make_conf(const ClientConfig& config, const Properties& defaults = {});

}  // namespace mesh::kafka
