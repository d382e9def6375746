#pragma once
// The message service's records (seed 004): the body of POST /v1/messages and the Kafka record
// on the messages topic.
//
//   POST body  {"ts","sender","messageAttributes","sent_from_ip","priority"}, nothing else
//   messages   {"id","publisher_id","ts","sender","messageAttributes","sent_from_ip",
//               "priority","published_at_ms"}
//
// The record repeats the five published fields as the client sent them (messageAttributes with
// its key order), so the consumer stores exactly what was accepted. decode() never throws: a
// poison record gets a DecodeError with a reason for the dead-letter topic.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include <boost/json/object.hpp>

namespace mesh::messages {

inline constexpr const char* kMessagesTopic = "messages";
inline constexpr const char* kMessagesDeadLetterTopic = "messages.dlq";

inline constexpr std::size_t kMaxTsBytes = 64;
inline constexpr std::size_t kMaxSenderChars = 128;            // Unicode code points
inline constexpr std::size_t kMaxAttributesBytes = 16 * 1024;  // serialized
// messageAttributes itself is level 1; each object or array inside it adds one.
inline constexpr int kMaxAttributesDepth = 8;
inline constexpr int kMinPriority = 0;
inline constexpr int kMaxPriority = 9;
// Bounds a POST body and a Kafka record: the largest valid one is far smaller.
inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;
// Parser depth for bodies and records: enough for a valid message, small enough to stop a
// hostile one early.
inline constexpr unsigned kMaxJsonDepth = 16;

// The five fields a client publishes, validated.
struct Fields {
  std::string ts;
  std::string sender;
  boost::json::object attributes;
  std::string sent_from_ip;
  int priority = 0;
};

struct Message {
  std::string id;            // UUIDv7, canonical text
  std::string publisher_id;  // canonical UUID: the publishing user
  std::string ts;
  std::string sender;
  boost::json::object attributes;
  std::string sent_from_ip;
  int priority = 0;
  std::int64_t published_at_ms = 0;  // when the gateway accepted it
};

// Why a body is refused: the JSON pointer of the field at fault ("" for the whole body) and
// what is expected there.
struct FieldError {
  std::string pointer;
  std::string detail;
};

std::variant<Fields, FieldError> validate(const boost::json::object& body);

// The single field rules, for query parameters and tests.
bool is_valid_ts(std::string_view ts);
bool is_valid_sender(std::string_view sender);
bool is_valid_ip(std::string_view address);

// The Kafka record of a message built from validated fields.
std::string encode(const Message& message);

struct DecodeError {
  std::string reason;
};

// Rejects records over kMaxBodyBytes, invalid JSON, any field missing, unknown or breaking the
// rules above, and ids that are not canonical UUIDs.
std::variant<Message, DecodeError> decode(std::string_view text);

}  // namespace mesh::messages
