#pragma once
// Writes messages from the messages topic to Postgres: one transaction per batch, each id once
// (ON CONFLICT DO NOTHING), so a redelivered record changes nothing, and a message deleted
// since (its row kept with deleted_at) stays deleted.
#include <chrono>
#include <cstddef>
#include <span>
#include <string>

#include "mesh/core/asio.hpp"
#include "mesh/messages/records.hpp"
#include "mesh/pg/pool.hpp"

namespace mesh::messages {

// The rows of `messages` in COPY text format.
std::string copy_rows(std::span<const Message> messages);

class MessageStore {
 public:
  // `timeout` bounds each statement.
  MessageStore(pg::Pool& pool, std::chrono::milliseconds timeout);

  // How many of `messages` were new. Throws pg::Error (class 22/23 when Postgres refuses a
  // row, so that retrying the same batch cannot help).
  Task<std::size_t> store(std::span<const Message> messages);

 private:
  pg::Pool& pool_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mesh::messages
