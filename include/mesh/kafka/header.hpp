#pragma once
#include <string>

namespace mesh::kafka {

// One Kafka record header. Keys may repeat; order is kept.
struct Header {
  std::string key, value;
};

}  // namespace mesh::kafka
