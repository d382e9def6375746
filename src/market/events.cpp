#include "mesh/market/events.hpp"

#include <charconv>
#include <limits>

#include <boost/json/object.hpp>
#include <boost/json/parser.hpp>

namespace mesh::market {

namespace json = boost::json;

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Days since 1970-01-01 of a proleptic Gregorian date (valid for the years used here).
std::int64_t days_from_civil(int year, unsigned month, unsigned day) {
  year -= month <= 2 ? 1 : 0;
  const int era = (year >= 0 ? year : year - 399) / 400;
  const unsigned year_of_era = static_cast<unsigned>(year - era * 400);
  const unsigned day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(day_of_era) - 719468;
}

struct Civil {
  int year;
  unsigned month;
  unsigned day;
};

Civil civil_from_days(std::int64_t days) {
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const auto day_of_era = static_cast<unsigned>(days - era * 146097);
  const unsigned year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const unsigned day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const unsigned mp = (5 * day_of_year + 2) / 153;
  const unsigned day = day_of_year - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  const auto year = static_cast<int>(static_cast<std::int64_t>(year_of_era) + era * 400);
  return {year + (month <= 2 ? 1 : 0), month, day};
}

bool leap(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

unsigned days_in_month(int year, unsigned month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && leap(year) ? 29 : kDays[month - 1];
}

// Reads exactly `count` digits at text[pos].
bool digits(std::string_view text, std::size_t pos, std::size_t count, unsigned& out) {
  if (pos + count > text.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (!is_digit(text[pos + i])) return false;
    out = out * 10 + static_cast<unsigned>(text[pos + i] - '0');
  }
  return true;
}

void append_padded(std::string& out, std::int64_t value, int width) {
  char buffer[24];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  for (int pad = width - static_cast<int>(end - buffer); pad > 0; --pad) out.push_back('0');
  out.append(buffer, end);
}

std::variant<json::object, DecodeError> parse_object(std::string_view text) {
  if (text.size() > kMaxEventBytes) {
    return DecodeError{"record of " + std::to_string(text.size()) + " bytes exceeds " +
                       std::to_string(kMaxEventBytes)};
  }
  json::parse_options options;
  options.max_depth = 4;
  json::parser parser(json::storage_ptr(), options);
  boost::system::error_code ec;
  const std::size_t consumed = parser.write(text.data(), text.size(), ec);
  if (ec) {
    return DecodeError{"invalid JSON at byte " + std::to_string(consumed) + ": " + ec.message()};
  }
  json::value value = parser.release();
  if (!value.is_object()) return DecodeError{"record must be an object"};
  return std::move(value.as_object());
}

// Field readers that record the first problem.
class Reader {
 public:
  explicit Reader(const json::object& object) : object_(object) {}

  std::string text(std::string_view name, bool (*valid)(std::string_view), const char* what) {
    const auto* value = object_.if_contains(name);
    if (value == nullptr) return fail(name, "is required"), std::string();
    if (!value->is_string()) return fail(name, "must be a string"), std::string();
    const auto& s = value->get_string();
    if (!valid(s)) return fail(name, what), std::string();
    return std::string(s);
  }

  std::string time(std::string_view name) {
    const auto* value = object_.if_contains(name);
    if (value == nullptr) return fail(name, "is required"), std::string();
    if (!value->is_string()) return fail(name, "must be a string"), std::string();
    auto canonical = normalize_time(value->get_string());
    if (!canonical) return fail(name, "must be an RFC 3339 time"), std::string();
    return std::move(*canonical);
  }

  std::int64_t integer(std::string_view name) {
    const auto* value = object_.if_contains(name);
    if (value == nullptr) return fail(name, "is required"), 0;
    if (value->is_int64() && value->get_int64() >= 0) return value->get_int64();
    if (value->is_uint64() &&
        value->get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return static_cast<std::int64_t>(value->get_uint64());
    return fail(name, "must be a non-negative integer"), 0;
  }

  Side side(std::string_view name) {
    const auto* value = object_.if_contains(name);
    if (value == nullptr) return fail(name, "is required"), Side::buy;
    if (value->is_string()) {
      if (value->get_string() == "buy") return Side::buy;
      if (value->get_string() == "sell") return Side::sell;
    }
    return fail(name, "must be \"buy\" or \"sell\""), Side::buy;
  }

  bool ok() const { return error_.empty(); }
  DecodeError error() const { return DecodeError{error_}; }

 private:
  void fail(std::string_view name, std::string_view problem) {
    if (error_.empty()) error_ = std::string(name) + ": " + std::string(problem);
  }

  const json::object& object_;
  std::string error_;
};

bool decimal_field(std::string_view text) { return is_decimal(text); }
bool product_field(std::string_view text) { return is_product(text); }

}  // namespace

bool is_decimal(std::string_view text) {
  if (text.empty() || text.size() > 40) return false;
  std::size_t i = 0;
  std::size_t integer_digits = 0;
  while (i < text.size() && is_digit(text[i])) ++i, ++integer_digits;
  if (integer_digits == 0) return false;
  if (i == text.size()) return true;
  if (text[i] != '.') return false;
  ++i;
  std::size_t fraction_digits = 0;
  while (i < text.size() && is_digit(text[i])) ++i, ++fraction_digits;
  return fraction_digits > 0 && i == text.size();
}

bool is_product(std::string_view text) {
  const auto dash = text.find('-');
  if (dash == std::string_view::npos) return false;
  auto part_ok = [](std::string_view part) {
    if (part.empty() || part.size() > 10) return false;
    for (const char c : part) {
      if (!((c >= 'A' && c <= 'Z') || is_digit(c))) return false;
    }
    return true;
  };
  return part_ok(text.substr(0, dash)) && part_ok(text.substr(dash + 1));
}

std::optional<std::string> normalize_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!digits(text, 0, 4, year) || text.size() < 20 || text[4] != '-' ||
      !digits(text, 5, 2, month) || text[7] != '-' || !digits(text, 8, 2, day) ||
      (text[10] != 'T' && text[10] != 't') || !digits(text, 11, 2, hour) || text[13] != ':' ||
      !digits(text, 14, 2, minute) || text[16] != ':' || !digits(text, 17, 2, second)) {
    return std::nullopt;
  }
  if (year < 1970 || month < 1 || month > 12 || day < 1 ||
      day > days_in_month(static_cast<int>(year), month) || hour > 23 || minute > 59 ||
      second > 59) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  std::int64_t micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    std::size_t count = 0;
    while (pos < text.size() && is_digit(text[pos])) {
      if (count < 6) micros = micros * 10 + (text[pos] - '0');
      ++count;
      ++pos;
    }
    if (count == 0 || count > 9) return std::nullopt;
    for (std::size_t i = count; i < 6; ++i) micros *= 10;
  }
  if (pos >= text.size()) return std::nullopt;
  std::int64_t offset_seconds = 0;
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    unsigned offset_hours = 0, offset_minutes = 0;
    if (!digits(text, pos + 1, 2, offset_hours) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !digits(text, pos + 4, 2, offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
      return std::nullopt;
    }
    offset_seconds = static_cast<std::int64_t>(offset_hours) * 3600 + offset_minutes * 60;
    if (text[pos] == '-') offset_seconds = -offset_seconds;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  const std::int64_t seconds = days_from_civil(static_cast<int>(year), month, day) * 86400 +
                               std::int64_t{hour} * 3600 + minute * 60 + second - offset_seconds;
  if (seconds < 0 || seconds >= 253402300800) return std::nullopt;  // 10000-01-01
  return format_time(seconds * 1'000'000 + micros);
}

std::optional<std::int64_t> time_micros(std::string_view canonical) {
  if (canonical.size() != 27) return std::nullopt;
  auto parsed = normalize_time(canonical);
  if (!parsed || *parsed != canonical) return std::nullopt;
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, high = 0, low = 0;
  digits(canonical, 0, 4, year);
  digits(canonical, 5, 2, month);
  digits(canonical, 8, 2, day);
  digits(canonical, 11, 2, hour);
  digits(canonical, 14, 2, minute);
  digits(canonical, 17, 2, second);
  digits(canonical, 20, 3, high);
  digits(canonical, 23, 3, low);
  const std::int64_t seconds = days_from_civil(static_cast<int>(year), month, day) * 86400 +
                               hour * 3600 + minute * 60 + second;
  return seconds * 1'000'000 + high * 1000 + low;
}

std::string format_time(std::int64_t micros) {
  const std::int64_t seconds = micros / 1'000'000;
  const std::int64_t fraction = micros % 1'000'000;
  const std::int64_t days = seconds / 86400;
  const std::int64_t in_day = seconds % 86400;
  const Civil civil = civil_from_days(days);
  std::string out;
  out.reserve(27);
  append_padded(out, civil.year, 4);
  out.push_back('-');
  append_padded(out, civil.month, 2);
  out.push_back('-');
  append_padded(out, civil.day, 2);
  out.push_back('T');
  append_padded(out, in_day / 3600, 2);
  out.push_back(':');
  append_padded(out, in_day / 60 % 60, 2);
  out.push_back(':');
  append_padded(out, in_day % 60, 2);
  out.push_back('.');
  append_padded(out, fraction, 6);
  out.push_back('Z');
  return out;
}

std::string_view to_string(Side side) { return side == Side::buy ? "buy" : "sell"; }

std::string encode(const Trade& trade) {
  // Every field is validated to characters that need no JSON escaping.
  std::string out;
  out.reserve(160);
  out.append(R"({"product":")").append(trade.product);
  out.append(R"(","trade_id":)").append(std::to_string(trade.trade_id));
  out.append(R"(,"price":")").append(trade.price);
  out.append(R"(","size":")").append(trade.size);
  out.append(R"(","side":")").append(to_string(trade.side));
  out.append(R"(","time":")").append(trade.time);
  out.append(R"(","sequence":)").append(std::to_string(trade.sequence));
  out.push_back('}');
  return out;
}

std::string encode(const Ticker& ticker) {
  std::string out;
  out.reserve(160);
  out.append(R"({"product":")").append(ticker.product);
  out.append(R"(","price":")").append(ticker.price);
  out.append(R"(","best_bid":")").append(ticker.best_bid);
  out.append(R"(","best_ask":")").append(ticker.best_ask);
  out.append(R"(","time":")").append(ticker.time);
  out.append(R"(","sequence":)").append(std::to_string(ticker.sequence));
  out.push_back('}');
  return out;
}

std::variant<Trade, DecodeError> decode_trade(std::string_view text) {
  auto parsed = parse_object(text);
  if (auto* error = std::get_if<DecodeError>(&parsed)) return std::move(*error);
  Reader reader(std::get<json::object>(parsed));
  Trade trade;
  trade.product = reader.text("product", product_field, "must be a product id like BTC-USD");
  trade.trade_id = reader.integer("trade_id");
  trade.price = reader.text("price", decimal_field, "must be a decimal string");
  trade.size = reader.text("size", decimal_field, "must be a decimal string");
  trade.side = reader.side("side");
  trade.time = reader.time("time");
  trade.sequence = reader.integer("sequence");
  if (!reader.ok()) return reader.error();
  return trade;
}

std::variant<Ticker, DecodeError> decode_ticker(std::string_view text) {
  auto parsed = parse_object(text);
  if (auto* error = std::get_if<DecodeError>(&parsed)) return std::move(*error);
  Reader reader(std::get<json::object>(parsed));
  Ticker ticker;
  ticker.product = reader.text("product", product_field, "must be a product id like BTC-USD");
  ticker.price = reader.text("price", decimal_field, "must be a decimal string");
  ticker.best_bid = reader.text("best_bid", decimal_field, "must be a decimal string");
  ticker.best_ask = reader.text("best_ask", decimal_field, "must be a decimal string");
  ticker.time = reader.time("time");
  ticker.sequence = reader.integer("sequence");
  if (!reader.ok()) return reader.error();
  return ticker;
}

}  // namespace mesh::market
