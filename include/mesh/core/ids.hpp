#pragma once
#include <chrono>
#include <string>
#include <string_view>

namespace mesh::core {

// A UUIDv7 (RFC 9562) in canonical lowercase text: time-ordered, so ids sort by creation.
std::string uuid_v7(std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// True for the canonical 8-4-4-4-12 lowercase hex form.
bool is_uuid(std::string_view text);

// A random token of `bytes` bytes, hex-encoded (request ids, lock tokens).
std::string random_hex(std::size_t bytes);

// Milliseconds since the Unix epoch.
std::int64_t unix_ms(std::chrono::system_clock::time_point t = std::chrono::system_clock::now());

// RFC 3339 UTC text with milliseconds: 2026-11-22T06:33:47.123Z.
std::string rfc3339_ms(std::int64_t unix_ms);

}  // namespace mesh::core
