#include "mesh/core/log.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>

#include <spdlog/details/os.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace mesh::log {
namespace {

// Structured events carry their fields as a serialized JSON object behind this marker, so the
// formatter can splice them in instead of quoting them as text.
constexpr char kFieldsMarker = '\x1e';

void append_escaped(spdlog::memory_buf_t& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          const char escaped[] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xf], kHex[c & 0xf]};
          out.append(escaped, escaped + sizeof(escaped));
        } else {
          out.push_back(c);
        }
    }
  }
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = duration_cast<seconds>(since_epoch);
    const auto micros = duration_cast<microseconds>(since_epoch - secs).count();
    const std::time_t tt = secs.count();
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char ts[40];
    const auto n = std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                 tm.tm_min, tm.tm_sec, static_cast<long>(micros));
    dest.append(std::string_view("{\"ts\":\""));
    dest.append(ts, ts + n);
    dest.append(std::string_view("\",\"level\":\""));
    const auto level = spdlog::level::to_string_view(msg.level);
    dest.append(level.data(), level.data() + level.size());
    dest.append(std::string_view("\",\"logger\":\""));
    append_escaped(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    dest.append(std::string_view("\",\"msg\":\""));
    std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string_view fields;
    if (const auto at = payload.find(kFieldsMarker); at != std::string_view::npos) {
      fields = payload.substr(at + 1);
      payload = payload.substr(0, at);
    }
    append_escaped(dest, payload);
    dest.push_back('"');
    // fields is a serialized JSON object: drop its braces and splice its members.
    if (fields.size() > 2) {
      dest.push_back(',');
      dest.append(fields.data() + 1, fields.data() + fields.size() - 1);
    }
    dest.append(std::string_view("}\n"));
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::mutex registry_mutex;
std::atomic<spdlog::level::level_enum> current_level{spdlog::level::info};

}  // namespace

void set_level(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    throw std::invalid_argument("unknown log level '" + std::string(level) +
                                "' (trace, debug, info, warn, error, critical, off)");
  }
  current_level = parsed;
  std::lock_guard lock(registry_mutex);
  spdlog::apply_all([parsed](const Logger& logger) { logger->set_level(parsed); });
}

Logger get(std::string_view module) {
  std::lock_guard lock(registry_mutex);
  const std::string name(module);
  if (auto existing = spdlog::get(name)) return existing;
  static const auto sink = [] {
    auto s = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    s->set_formatter(std::make_unique<JsonFormatter>());
    return s;
  }();
  auto logger = std::make_shared<spdlog::logger>(name, sink);
  logger->set_level(current_level.load());
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

void event(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view msg,
           std::initializer_list<Field> fields) {
  if (!logger.should_log(level)) return;
  boost::json::object object;
  for (const auto& [key, value] : fields) object[key] = value.json;
  std::string text(msg);
  text.push_back(kFieldsMarker);
  text += boost::json::serialize(object);
  logger.log(level, text);
}

}  // namespace mesh::log
