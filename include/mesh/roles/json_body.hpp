#pragma once
// Reading a JSON request body the same way on every endpoint: 415 unless the body is declared
// application/json, 400 with the parser's reason for malformed, too deep or invalid UTF-8
// input, 400 unless the top level is an object.
#include <string_view>
#include <variant>

#include <boost/json/object.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/http/message.hpp"

namespace mesh::roles {

std::variant<boost::json::object, http::Response> read_json_object(const http::Request& request);

// 400 problem+json naming the offending field as a JSON pointer.
http::Response invalid_field(std::string_view pointer, std::string_view detail);

}  // namespace mesh::roles
