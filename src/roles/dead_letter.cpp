#include "mesh/roles/dead_letter.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace mesh::roles {

std::string dead_letter_record(const kafka::Message& source, std::string_view reason) {
  boost::json::object record{{"reason", reason},
                             {"source_topic", source.topic},
                             {"source_partition", source.partition},
                             {"source_offset", source.offset},
                             {"key", source.key},
                             {"record", source.value}};
  return boost::json::serialize(record);
}

std::vector<kafka::Header> dead_letter_headers(std::string_view reason, std::string_view role) {
  return {kafka::Header{"reason", std::string(reason)}, kafka::Header{"source", std::string(role)}};
}

}  // namespace mesh::roles
