#pragma once
// JSON-lines logging: one named spdlog logger per module, every line one JSON object
// {"ts","level","logger","msg", ...fields}.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/logger.h>
#include <boost/json/value.hpp>

namespace mesh::log {

using Logger = std::shared_ptr<spdlog::logger>;

// Sets the level ("trace".."critical", "off") of every logger, now and later. Throws on an
// unknown level name.
void set_level(std::string_view level);

// The logger of one module ("http", "kafka", ...), created on first use, writing to stderr.
Logger get(std::string_view module);

// A field value: text or a number, converted implicitly so call sites stay short.
struct Value {
  Value(std::string_view text) : json(boost::json::string_view(text.data(), text.size())) {}
  Value(const std::string& text) : Value(std::string_view(text)) {}
  Value(const char* text) : Value(std::string_view(text)) {}
  Value(std::int64_t number) : json(number) {}
  Value(int number) : json(number) {}
  Value(unsigned number) : json(number) {}
  Value(std::uint64_t number) : json(number) {}
  Value(double number) : json(number) {}
  Value(bool flag) : json(flag) {}
  boost::json::value json;
};
using Field = std::pair<std::string_view, Value>;

// One line with extra structured fields, such as the request id of an access log.
void event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view msg,
           std::initializer_list<Field> fields);

}  // namespace mesh::log
