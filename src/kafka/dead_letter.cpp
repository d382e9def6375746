#include "mesh/kafka/dead_letter.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace mesh::kafka {

std::string dead_letter_record(const Message& source, std::string_view reason) {
  boost::json::object record{{"reason", reason},
                             {"source_topic", source.topic},
                             {"source_partition", source.partition},
                             {"source_offset", source.offset},
                             {"key", source.key},
                             {"record", source.value}};
  return boost::json::serialize(record);
}

std::vector<Header> dead_letter_headers(std::string_view reason, std::string_view role) {
  return {Header{"reason", std::string(reason)}, Header{"source", std::string(role)}};
}

}  // namespace mesh::kafka
