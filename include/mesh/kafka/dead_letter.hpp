#pragma once
// What goes to tasks.dlq: the original record with where it came from and why it was refused.
#include <string>
#include <string_view>
#include <vector>

#include "mesh/kafka/consumer.hpp"

namespace mesh::kafka {

std::string dead_letter_record(const Message& source, std::string_view reason);
std::vector<Header> dead_letter_headers(std::string_view reason, std::string_view role);

}  // namespace mesh::kafka
