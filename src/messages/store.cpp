#include "mesh/messages/store.hpp"

#include <charconv>

#include <boost/json/serialize.hpp>

#include "mesh/core/ids.hpp"

namespace mesh::messages {
namespace {

// Session-local and emptied at every commit, so a pooled connection carries nothing over.
constexpr std::string_view kCreateIncoming = R"sql(
CREATE TEMP TABLE IF NOT EXISTS incoming_messages (
  id uuid NOT NULL,
  publisher_id uuid NOT NULL,
  ts text NOT NULL,
  sender text NOT NULL,
  message_attributes json NOT NULL,
  sent_from_ip text NOT NULL,
  priority smallint NOT NULL,
  published_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS)sql";

constexpr std::string_view kCopyIncoming =
    "COPY incoming_messages (id, publisher_id, ts, sender, message_attributes, sent_from_ip, "
    "priority, published_at) FROM STDIN";

constexpr std::string_view kInsert = R"sql(
WITH inserted AS (
  INSERT INTO messages (id, publisher_id, ts, sender, message_attributes, sent_from_ip,
                        priority, published_at)
  SELECT id, publisher_id, ts, sender, message_attributes, sent_from_ip, priority, published_at
  FROM incoming_messages
  ORDER BY id
  ON CONFLICT (id) DO NOTHING
  RETURNING 1
)
SELECT count(*) FROM inserted)sql";

// COPY text format: backslash, tab and line breaks are escaped so that no value can spill into
// the next column or row.
void append_field(std::string& out, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
}

}  // namespace

std::string copy_rows(std::span<const Message> messages) {
  std::string out;
  for (const auto& message : messages) {
    append_field(out, message.id);
    out.push_back('\t');
    append_field(out, message.publisher_id);
    out.push_back('\t');
    append_field(out, message.ts);
    out.push_back('\t');
    append_field(out, message.sender);
    out.push_back('\t');
    append_field(out, boost::json::serialize(message.attributes));
    out.push_back('\t');
    append_field(out, message.sent_from_ip);
    out.push_back('\t');
    out += std::to_string(message.priority);
    out.push_back('\t');
    out += core::rfc3339_ms(message.published_at_ms);
    out.push_back('\n');
  }
  return out;
}

MessageStore::MessageStore(pg::Pool& pool, std::chrono::milliseconds timeout)
    : pool_(pool), timeout_(timeout) {}

Task<std::size_t> MessageStore::store(std::span<const Message> messages) {
  if (messages.empty()) co_return 0;
  const std::string rows = copy_rows(messages);
  auto body = [&](pg::Lease& lease) -> Task<std::size_t> {
    co_await lease.execute_script(kCreateIncoming, timeout_);
    co_await lease.copy_in(kCopyIncoming, rows, timeout_);
    const pg::Result inserted = co_await lease.query(kInsert, {}, timeout_);
    std::size_t count = 0;
    const std::string_view text = inserted.get(0, 0);
    std::from_chars(text.data(), text.data() + text.size(), count);
    co_return count;
  };
  const std::size_t inserted = co_await pool_.transaction(std::move(body));
  co_return inserted;
}

}  // namespace mesh::messages
