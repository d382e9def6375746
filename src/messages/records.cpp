#include "mesh/messages/records.hpp"

#include <algorithm>
#include <array>

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "mesh/core/asio.hpp"
#include "mesh/core/ids.hpp"

namespace mesh::messages {
namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, 5> kBodyFields = {"ts", "sender", "messageAttributes",
                                                         "sent_from_ip", "priority"};
constexpr std::array<std::string_view, 3> kRecordOnlyFields = {"id", "publisher_id",
                                                               "published_at_ms"};

// RFC 6901: '~' and '/' inside a member name are escaped.
std::string pointer_to(std::string_view name) {
  std::string pointer = "/";
  for (const char c : name) {
    if (c == '~') {
      pointer += "~0";
    } else if (c == '/') {
      pointer += "~1";
    } else {
      pointer.push_back(c);
    }
  }
  return pointer;
}

bool digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int number(std::string_view text) {
  int value = 0;
  for (const char c : text) value = value * 10 + (c - '0');
  return value;
}

bool leap_year(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

bool real_date(int year, int month, int day) {
  constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const int last = month == 2 && leap_year(year) ? 29 : kDays[static_cast<std::size_t>(month - 1)];
  return day <= last;
}

// "YYYYMMDD", as the seed's "19941114".
bool compact_date(std::string_view ts) {
  return ts.size() == 8 && digits(ts) &&
         real_date(number(ts.substr(0, 4)), number(ts.substr(4, 2)), number(ts.substr(6, 2)));
}

// Two digits at `at` within [0, max].
bool two_digits(std::string_view text, std::size_t at, int max) {
  const auto part = text.substr(at, 2);
  return part.size() == 2 && digits(part) && number(part) <= max;
}

// RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); seconds up to 60 (a leap
// second), 'T' and 'Z' in either case.
bool rfc3339(std::string_view ts) {
  if (ts.size() < 20 || !digits(ts.substr(0, 4)) || ts[4] != '-' || ts[7] != '-') return false;
  if (!digits(ts.substr(5, 2)) || !digits(ts.substr(8, 2))) return false;
  if (!real_date(number(ts.substr(0, 4)), number(ts.substr(5, 2)), number(ts.substr(8, 2))))
    return false;
  if (ts[10] != 'T' && ts[10] != 't') return false;
  if (!two_digits(ts, 11, 23) || ts[13] != ':' || !two_digits(ts, 14, 59) || ts[16] != ':' ||
      !two_digits(ts, 17, 60)) {
    return false;
  }
  std::size_t at = 19;
  if (ts[at] == '.') {
    const std::size_t start = ++at;
    while (at < ts.size() && ts[at] >= '0' && ts[at] <= '9') ++at;
    if (at == start) return false;
  }
  const auto zone = ts.substr(at);
  if (zone == "Z" || zone == "z") return true;
  return zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && two_digits(zone, 1, 23) &&
         zone[3] == ':' && two_digits(zone, 4, 59);
}

// Levels of containers in `value` (0 for a scalar), counting no further than `limit` + 1.
int depth(const json::value& value, int limit) {
  if (limit < 0) return 1;
  int deepest = 0;
  if (const auto* object = value.if_object()) {
    for (const auto& member : *object)
      deepest = std::max(deepest, depth(member.value(), limit - 1));
    return deepest + 1;
  }
  if (const auto* array = value.if_array()) {
    for (const auto& element : *array) deepest = std::max(deepest, depth(element, limit - 1));
    return deepest + 1;
  }
  return 0;
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). JSON strings
// are checked by the parser already; query parameters are not, and Postgres refuses them.
bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    if (byte < 0x80) {
      ++i;
      continue;
    }
    if (byte >= 0xc2 && byte <= 0xdf) {
      length = 1;
    } else if (byte >= 0xe0 && byte <= 0xef) {
      length = 2;
      if (byte == 0xe0) low = 0xa0;
      if (byte == 0xed) high = 0x9f;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      length = 3;
      if (byte == 0xf0) low = 0x90;
      if (byte == 0xf4) high = 0x8f;
    } else {
      return false;
    }
    if (i + length >= text.size()) return false;  // truncated
    for (std::size_t k = 1; k <= length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xbf)) return false;
    }
    i += length + 1;
  }
  return true;
}

FieldError field_error(std::string_view field, std::string detail) {
  return FieldError{pointer_to(field), std::move(detail)};
}

}  // namespace

bool is_valid_ts(std::string_view ts) {
  return ts.size() <= kMaxTsBytes && (compact_date(ts) || rfc3339(ts));
}

bool is_valid_sender(std::string_view sender) {
  if (!valid_utf8(sender)) return false;
  std::size_t characters = 0;
  for (std::size_t i = 0; i < sender.size(); ++i) {
    const auto byte = static_cast<unsigned char>(sender[i]);
    if (byte < 0x20 || byte == 0x7f) return false;
    // C1 controls, U+0080..U+009F, are 0xC2 0x80..0x9F in UTF-8.
    if (byte == 0xc2 && i + 1 < sender.size()) {
      const auto next = static_cast<unsigned char>(sender[i + 1]);
      if (next >= 0x80 && next <= 0x9f) return false;
    }
    if ((byte & 0xc0) != 0x80) ++characters;
  }
  return characters >= 1 && characters <= kMaxSenderChars;
}

bool is_valid_ip(std::string_view address) {
  // make_address would accept a zone id ("fe80::1%eth0"): a zone means nothing off the host.
  if (address.empty() || address.size() > 64 || address.find('%') != std::string_view::npos)
    return false;
  error_code ec;
  asio::ip::make_address(std::string(address), ec);
  return !ec;
}

std::variant<Fields, FieldError> validate(const json::object& body) {
  for (const auto& member : body) {
    if (std::find(kBodyFields.begin(), kBodyFields.end(), member.key()) == kBodyFields.end())
      return field_error(member.key(), "unknown field");
  }
  for (const auto field : kBodyFields) {
    if (!body.contains(field)) return field_error(field, "required");
  }
  Fields fields;

  const auto* ts = body.at("ts").if_string();
  if (!ts) return field_error("ts", "must be a string");
  if (ts->size() > kMaxTsBytes) return field_error("ts", "at most 64 bytes");
  if (!is_valid_ts(*ts)) {
    return field_error("ts", "a calendar date YYYYMMDD or an RFC 3339 timestamp");
  }
  fields.ts = std::string(*ts);

  const auto* sender = body.at("sender").if_string();
  if (!sender) return field_error("sender", "must be a string");
  if (!is_valid_sender(*sender)) {
    return field_error("sender", "1 to 128 characters, no control characters");
  }
  fields.sender = std::string(*sender);

  const auto* attributes = body.at("messageAttributes").if_object();
  if (!attributes) return field_error("messageAttributes", "must be a JSON object");
  if (json::serialize(*attributes).size() > kMaxAttributesBytes) {
    return field_error("messageAttributes", "at most 16384 bytes serialized");
  }
  if (depth(body.at("messageAttributes"), kMaxAttributesDepth) > kMaxAttributesDepth) {
    return field_error("messageAttributes", "nested at most 8 levels deep");
  }
  fields.attributes = *attributes;

  const auto* ip = body.at("sent_from_ip").if_string();
  if (!ip) return field_error("sent_from_ip", "must be a string");
  if (!is_valid_ip(*ip)) {
    return field_error("sent_from_ip", "an IPv4 or IPv6 address, without zone, brackets or port");
  }
  fields.sent_from_ip = std::string(*ip);

  // Boost.JSON gives int64 for a number without fraction or exponent (uint64 past INT64_MAX)
  // and double otherwise: 1.0 and 1e1 are doubles and refused, like "1" and true.
  const auto& priority = body.at("priority");
  if (!priority.is_int64() || priority.get_int64() < kMinPriority ||
      priority.get_int64() > kMaxPriority) {
    return field_error("priority", "an integer from 0 to 9");
  }
  fields.priority = static_cast<int>(priority.get_int64());
  return fields;
}

std::string encode(const Message& message) {
  json::object record;
  record["id"] = message.id;
  record["publisher_id"] = message.publisher_id;
  record["ts"] = message.ts;
  record["sender"] = message.sender;
  record["messageAttributes"] = message.attributes;
  record["sent_from_ip"] = message.sent_from_ip;
  record["priority"] = message.priority;
  record["published_at_ms"] = message.published_at_ms;
  return json::serialize(record);
}

std::variant<Message, DecodeError> decode(std::string_view text) {
  if (text.size() > kMaxBodyBytes) {
    return DecodeError{"record of " + std::to_string(text.size()) + " bytes exceeds " +
                       std::to_string(kMaxBodyBytes)};
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  error_code ec;
  json::value parsed = json::parse(text, ec, {}, options);
  if (ec) return DecodeError{"invalid JSON: " + ec.message()};
  auto* record = parsed.if_object();
  if (!record) return DecodeError{"record must be an object"};

  Message message;
  json::object body;
  for (auto& member : *record) {
    const auto key = member.key();
    if (std::find(kRecordOnlyFields.begin(), kRecordOnlyFields.end(), key) ==
        kRecordOnlyFields.end()) {
      body.emplace(key, std::move(member.value()));
    }
  }
  for (const auto field : {"id", "publisher_id"}) {
    const auto* value = record->if_contains(field);
    const auto* id = value ? value->if_string() : nullptr;
    if (!id || !core::is_uuid(*id)) {
      return DecodeError{pointer_to(field) + ": must be a canonical UUID"};
    }
  }
  message.id = std::string(record->at("id").as_string());
  message.publisher_id = std::string(record->at("publisher_id").as_string());
  const auto* published = record->if_contains("published_at_ms");
  if (!published || !published->is_int64() || published->get_int64() < 0) {
    return DecodeError{"/published_at_ms: must be a non-negative integer"};
  }
  message.published_at_ms = published->get_int64();

  auto validated = validate(body);
  if (const auto* error = std::get_if<FieldError>(&validated)) {
    return DecodeError{error->pointer + ": " + error->detail};
  }
  auto& fields = std::get<Fields>(validated);
  message.ts = std::move(fields.ts);
  message.sender = std::move(fields.sender);
  message.attributes = std::move(fields.attributes);
  message.sent_from_ip = std::move(fields.sent_from_ip);
  message.priority = fields.priority;
  return message;
}

}  // namespace mesh::messages
