#pragma once
// Every failure of the pg module is an Error carrying a SQLSTATE, so callers map outcomes
// (a unique violation to 409, an exhausted pool to 503) by code instead of by message.
#include <stdexcept>
#include <string>
#include <string_view>

namespace mesh::pg {

// The codes this module produces itself, next to the server codes callers usually test for.
namespace sqlstate {
inline constexpr std::string_view kUniqueViolation = "23505";
inline constexpr std::string_view kForeignKeyViolation = "23503";
inline constexpr std::string_view kSerializationFailure = "40001";
inline constexpr std::string_view kDeadlockDetected = "40P01";
// A query ran past its timeout (the connection was closed) or the awaiting call was cancelled.
inline constexpr std::string_view kQueryCanceled = "57014";
// No connection could be established (refused, unreachable, timed out, bad credentials).
inline constexpr std::string_view kUnableToConnect = "08001";
// An established connection broke during a call; the statement may or may not have run.
inline constexpr std::string_view kConnectionFailure = "08006";
// The pool is closed: shutting down.
inline constexpr std::string_view kPoolClosed = "08003";
// acquire() refused without waiting: max_waiters callers were already waiting.
inline constexpr std::string_view kPoolExhausted = "53300";
// acquire() waited acquire_timeout and no connection became free.
inline constexpr std::string_view kAcquireTimeout = "53000";
// The server asked for something this client does not do (COPY through query()).
inline constexpr std::string_view kFeatureNotSupported = "0A000";
// A migration already applied has a different checksum than the one given to migrate().
inline constexpr std::string_view kMigrationChecksumMismatch = "MS001";
// Server errors without a code and client-side failures of libpq.
inline constexpr std::string_view kInternalError = "XX000";
}  // namespace sqlstate

class Error : public std::runtime_error {
 public:
  Error(std::string_view sqlstate, const std::string& message);

  const std::string& sqlstate() const noexcept { return sqlstate_; }
  // The text without the code that what() appends.
  const std::string& message() const noexcept { return message_; }
  // Class 08: the connection is gone; the caller may retry if the statement is idempotent.
  bool connection_error() const noexcept { return sqlstate_.starts_with("08"); }

 private:
  std::string sqlstate_;
  std::string message_;
};

}  // namespace mesh::pg
