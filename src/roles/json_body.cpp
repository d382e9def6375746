#include "mesh/roles/json_body.hpp"

#include <boost/json/parse.hpp>

#include "mesh/tasks/task_types.hpp"

namespace mesh::roles {
namespace {

bool is_json_media_type(std::string_view content_type) {
  const auto semicolon = content_type.find(';');
  auto media = content_type.substr(0, semicolon);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  if (media.size() != 16) return false;
  constexpr std::string_view expected = "application/json";
  for (std::size_t i = 0; i < media.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(media[i])) != expected[i]) return false;
  }
  return true;
}

}  // namespace

std::variant<boost::json::object, http::Response> read_json_object(const http::Request& request) {
  const auto content_type = request.header("content-type");
  if (!content_type || !is_json_media_type(*content_type)) {
    return http::problem(415, "the body must be application/json");
  }
  boost::json::parse_options options;
  options.max_depth = tasks::kMaxJsonDepth;
  error_code ec;
  boost::json::value value = boost::json::parse(request.body, ec, {}, options);
  if (ec) return http::problem(400, "malformed JSON body: " + ec.message());
  if (!value.is_object()) return http::problem(400, "the JSON body must be an object");
  return std::move(value.as_object());
}

http::Response invalid_field(std::string_view pointer, std::string_view detail) {
  boost::json::object extra;
  boost::json::array errors;
  errors.push_back(boost::json::object{{"field", pointer}, {"detail", detail}});
  extra["errors"] = std::move(errors);
  return http::problem(400, std::string(pointer) + ": " + std::string(detail), "Invalid request",
                       std::move(extra));
}

}  // namespace mesh::roles
