#include "connection.hpp"

#include <poll.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "mesh/pg/error.hpp"

namespace mesh::pg::detail {
namespace {

// libpq caps a statement at 65535 parameters; refusing earlier keeps the connection.
constexpr std::size_t kMaxParams = 65535;
// Beyond this many distinct statements (generated SQL), the rest run unprepared so that the
// cache of one connection stays bounded.
constexpr std::size_t kMaxPreparedStatements = 256;

struct FreeOptions {
  void operator()(PQconninfoOption* options) const noexcept { PQconninfoFree(options); }
};
struct FreeMem {
  void operator()(void* memory) const noexcept { PQfreemem(memory); }
};

std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  return std::string(text);
}

// The keyword/value pairs given to PQconnectStartParams.
class ConnInfo {
 public:
  explicit ConnInfo(const std::string& url) {
    char* raw_error = nullptr;
    std::unique_ptr<PQconninfoOption, FreeOptions> options(
        PQconninfoParse(url.c_str(), &raw_error));
    std::unique_ptr<char, FreeMem> error(raw_error);
    if (!options) {
      throw Error(sqlstate::kUnableToConnect,
                  "invalid connection string: " + trimmed(error ? error.get() : "out of memory"));
    }
    for (const PQconninfoOption* option = options.get(); option->keyword != nullptr; ++option) {
      if (option->val != nullptr) set(option->keyword, option->val);
    }
  }

  void set(std::string_view keyword, std::string value) {
    for (auto& [key, current] : entries_) {
      if (key == keyword) {
        current = std::move(value);
        return;
      }
    }
    entries_.emplace_back(std::string(keyword), std::move(value));
  }

  const std::string* find(std::string_view keyword) const {
    for (const auto& [key, value] : entries_) {
      if (key == keyword) return &value;
    }
    return nullptr;
  }

  // user@host:port/dbname: enough to tell which server, never the password.
  std::string describe() const {
    const auto value = [this](std::string_view keyword, std::string_view fallback) {
      const std::string* found = find(keyword);
      return found != nullptr ? *found : std::string(fallback);
    };
    const std::string* user = find("user");
    return (user != nullptr ? *user + "@" : "") + value("host", "localhost") + ":" +
           value("port", "5432") + "/" + value("dbname", "");
  }

  // NUL-terminated arrays pointing into this object.
  std::pair<std::vector<const char*>, std::vector<const char*>> arrays() const {
    std::vector<const char*> keywords;
    std::vector<const char*> values;
    for (const auto& [key, value] : entries_) {
      keywords.push_back(key.c_str());
      values.push_back(value.c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
    return {std::move(keywords), std::move(values)};
  }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

bool needs_lookup(const std::string& host) {
  // Socket directories, host lists and numeric addresses need no name service.
  if (host.empty() || host.front() == '/' || host.front() == '@' ||
      host.find(',') != std::string::npos) {
    return false;
  }
  error_code ec;
  asio::ip::make_address(host, ec);
  return ec.failed();
}

// libpq resolves host names with a blocking getaddrinfo inside PQconnectStart. Asio's resolver
// runs it on its own thread instead; libpq then gets the addresses as hostaddr, one per copy of
// the host name (which it still uses for TLS and messages), and tries them in order.
Task<void> resolve_host(ConnInfo& info, const std::string& description) {
  const std::string* host = info.find("host");
  if (host == nullptr || info.find("hostaddr") != nullptr || !needs_lookup(*host)) co_return;
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  asio::ip::tcp::resolver::results_type endpoints;
  try {
    endpoints = co_await resolver.async_resolve(*host, "5432", asio::use_awaitable);
  } catch (const boost::system::system_error& e) {
    throw Error(sqlstate::kUnableToConnect, "cannot connect to " + description +
                                                ": cannot resolve " + *host + ": " +
                                                e.code().message());
  }
  std::vector<std::string> seen;
  std::string hosts;
  std::string addresses;
  for (const auto& entry : endpoints) {
    std::string address = entry.endpoint().address().to_string();
    if (std::find(seen.begin(), seen.end(), address) != seen.end()) continue;
    if (!seen.empty()) {
      hosts += ',';
      addresses += ',';
    }
    hosts += *host;
    addresses += address;
    seen.push_back(std::move(address));
  }
  info.set("host", std::move(hosts));
  info.set("hostaddr", std::move(addresses));
}

std::string error_text(const PGconn* conn) { return trimmed(PQerrorMessage(conn)); }

Error error_of(const PGresult* result) {
  const char* code = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
  std::string message = primary != nullptr ? primary : trimmed(PQresultErrorMessage(result));
  if (detail != nullptr) message += std::string(" (") + detail + ")";
  return Error(code != nullptr ? code : sqlstate::kInternalError, message);
}

bool fired(const error_code& ec) { return ec != asio::error::operation_aborted; }

}  // namespace

Connection::Connection(asio::any_io_executor executor, ConnPtr conn, std::string description)
    : conn_(std::move(conn)),
      description_(std::move(description)),
      socket_(executor),
      timer_(executor),
      logger_(log::get("pg")) {}

Connection::~Connection() { close(); }

Task<std::unique_ptr<Connection>> Connection::open(asio::any_io_executor executor,
                                                   const std::string& url,
                                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ConnInfo info(url);
  const std::string description = info.describe();
  co_await resolve_host(info, description);
  const auto [keywords, values] = info.arrays();
  ConnPtr conn(PQconnectStartParams(keywords.data(), values.data(), 0));
  if (!conn) throw Error(sqlstate::kUnableToConnect, "out of memory connecting to " + description);
  std::unique_ptr<Connection> connection(
      new Connection(std::move(executor), std::move(conn), description));
  connection->timer_.expires_at(deadline);
  co_await connection->connect(timeout);
  co_return connection;
}

Task<void> Connection::connect(std::chrono::milliseconds timeout) {
  // As documented for PQconnectStart: start as if PQconnectPoll had asked for writability.
  PostgresPollingStatusType polled = PGRES_POLLING_WRITING;
  while (polled != PGRES_POLLING_OK) {
    if (polled == PGRES_POLLING_FAILED || PQstatus(conn_.get()) == CONNECTION_BAD) {
      throw Error(sqlstate::kUnableToConnect,
                  "cannot connect to " + description_ + ": " + error_text(conn_.get()));
    }
    watch_socket();
    const Ready ready = co_await wait(polled == PGRES_POLLING_READING ? Want::read : Want::write);
    if (ready == Ready::timeout) {
      throw Error(sqlstate::kUnableToConnect, "cannot connect to " + description_ +
                                                  ": timed out after " +
                                                  std::to_string(timeout.count()) + " ms");
    }
    if (ready == Ready::cancelled) {
      throw Error(sqlstate::kUnableToConnect, "cancelled while connecting to " + description_);
    }
    polled = PQconnectPoll(conn_.get());
  }
  if (PQsetnonblocking(conn_.get(), 1) != 0) {
    throw Error(sqlstate::kUnableToConnect, "cannot make the connection to " + description_ +
                                                " non-blocking: " + error_text(conn_.get()));
  }
  PQsetNoticeReceiver(conn_.get(), &Connection::on_notice, this);
  watch_socket();
}

void Connection::watch_socket() {
  // libpq may replace its socket at any PQconnectPoll (next address, retry without TLS), even
  // under the same number, so the descriptor is registered afresh each time.
  if (socket_.is_open()) socket_.release();
  const int fd = PQsocket(conn_.get());
  if (fd < 0) {
    throw Error(sqlstate::kUnableToConnect,
                "no socket connecting to " + description_ + ": " + error_text(conn_.get()));
  }
  error_code ec;
  socket_.assign(fd, ec);
  if (ec) {
    throw Error(sqlstate::kUnableToConnect,
                "cannot watch the socket to " + description_ + ": " + ec.message());
  }
}

Task<Connection::Ready> Connection::wait(Want want) {
  using asio::experimental::make_parallel_group;
  using asio::experimental::wait_for_one;
  using Wait = asio::posix::stream_descriptor::wait_type;
  error_code readable = asio::error::operation_aborted;
  error_code writable = asio::error::operation_aborted;
  error_code expired;
  switch (want) {
    case Want::read: {
      auto [order, read, timer] =
          co_await make_parallel_group(socket_.async_wait(Wait::wait_read, asio::deferred),
                                       timer_.async_wait(asio::deferred))
              .async_wait(wait_for_one(), asio::use_awaitable);
      readable = read;
      expired = timer;
      break;
    }
    case Want::write: {
      auto [order, write, timer] =
          co_await make_parallel_group(socket_.async_wait(Wait::wait_write, asio::deferred),
                                       timer_.async_wait(asio::deferred))
              .async_wait(wait_for_one(), asio::use_awaitable);
      writable = write;
      expired = timer;
      break;
    }
    case Want::read_or_write: {
      auto [order, read, write, timer] =
          co_await make_parallel_group(socket_.async_wait(Wait::wait_read, asio::deferred),
                                       socket_.async_wait(Wait::wait_write, asio::deferred),
                                       timer_.async_wait(asio::deferred))
              .async_wait(wait_for_one(), asio::use_awaitable);
      readable = read;
      writable = write;
      expired = timer;
      break;
    }
  }
  // Socket errors count as readiness: libpq reports the actual failure on its next call. Data
  // that arrived together with the deadline is still taken.
  if (fired(readable)) co_return Ready::read;
  if (fired(writable)) co_return Ready::write;
  if (fired(expired)) co_return Ready::timeout;
  co_return Ready::cancelled;
}

Task<Result> Connection::query(std::string_view sql, const Params& params,
                               std::chrono::milliseconds timeout) {
  ensure_open();
  if (params.size() > kMaxParams) {
    throw Error("54023", "too many parameters: " + std::to_string(params.size()));
  }
  timer_.expires_after(timeout);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& param : params) values.push_back(param ? param->c_str() : nullptr);
  const int count = static_cast<int>(params.size());

  auto statement = statements_.find(sql);
  if (statement == statements_.end() && statements_.size() < kMaxPreparedStatements) {
    std::string name = "mesh_" + std::to_string(next_statement_++);
    std::string text(sql);
    check_sent(PQsendPrepare(conn_.get(), name.c_str(), text.c_str(), 0, nullptr));
    co_await complete(timeout);
    statement = statements_.emplace(std::move(text), std::move(name)).first;
  }
  if (statement == statements_.end()) {
    const std::string text(sql);
    check_sent(PQsendQueryParams(conn_.get(), text.c_str(), count, nullptr, values.data(), nullptr,
                                 nullptr, 0));
    co_return co_await complete(timeout);
  }
  check_sent(PQsendQueryPrepared(conn_.get(), statement->second.c_str(), count, values.data(),
                                 nullptr, nullptr, 0));
  try {
    co_return co_await complete(timeout);
  } catch (const Error& e) {
    // The server forgets statements on DISCARD/DEALLOCATE (26000) and refuses ones whose result
    // type changed under them (0A000, e.g. SELECT * after ALTER TABLE): prepare afresh next time.
    if (conn_ && (e.sqlstate() == "26000" || e.sqlstate() == "0A000")) {
      statements_.erase(statement);
    }
    throw;
  }
}

Task<Result> Connection::execute_script(std::string_view sql, std::chrono::milliseconds timeout) {
  ensure_open();
  timer_.expires_after(timeout);
  const std::string text(sql);
  check_sent(PQsendQuery(conn_.get(), text.c_str()));
  co_return co_await complete(timeout);
}

Task<Result> Connection::copy_in(std::string_view sql, std::string_view data,
                                 std::chrono::milliseconds timeout) {
  ensure_open();
  timer_.expires_after(timeout);
  const std::string text(sql);
  check_sent(PQsendQuery(conn_.get(), text.c_str()));
  co_await start_copy(timeout);
  // Chunks bound what libpq buffers at once; it flushes by itself as its buffer fills, and
  // answers 0 (nothing queued) when the socket cannot take more yet.
  constexpr std::size_t kChunk = 256 * 1024;
  std::size_t sent = 0;
  while (sent < data.size()) {
    const std::size_t length = std::min(kChunk, data.size() - sent);
    const int queued = PQputCopyData(conn_.get(), data.data() + sent, static_cast<int>(length));
    if (queued < 0) lost();
    if (queued == 0) {
      co_await wait_writable(timeout);
      if (PQflush(conn_.get()) < 0) lost();
      continue;
    }
    sent += length;
  }
  for (;;) {
    const int ended = PQputCopyEnd(conn_.get(), nullptr);
    if (ended < 0) lost();
    if (ended == 1) break;
    co_await wait_writable(timeout);
    if (PQflush(conn_.get()) < 0) lost();
  }
  // The server reports bad rows (and the row count) only now.
  co_return co_await complete(timeout);
}

Task<void> Connection::start_copy(std::chrono::milliseconds timeout) {
  co_await flush(timeout);
  while (PQisBusy(conn_.get()) != 0) {
    check_progress(co_await wait(Want::read), timeout);
    if (PQconsumeInput(conn_.get()) == 0) lost();
  }
  PGresult* first = PQgetResult(conn_.get());
  if (first == nullptr) lost();
  Result result(first);
  const ExecStatusType status = PQresultStatus(first);
  if (status == PGRES_COPY_IN) co_return;
  if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR ||
      status == PGRES_BAD_RESPONSE) {
    // A bad statement (syntax, missing table): the connection stays usable once the results
    // that follow are read.
    Error failure = error_of(first);
    co_await complete(timeout);
    throw failure;
  }
  // Another statement, or COPY TO: leaving its protocol state cleanly is not worth it here.
  close();
  throw Error(sqlstate::kFeatureNotSupported,
              std::string("copy_in() needs COPY ... FROM STDIN, the statement gave ") +
                  PQresStatus(status));
}

void Connection::check_sent(int sent) {
  if (sent != 0) return;
  if (PQstatus(conn_.get()) != CONNECTION_OK) lost();
  // libpq refused before sending anything, for a reason unknown to this client: start afresh.
  const std::string reason = error_text(conn_.get());
  close();
  throw Error(sqlstate::kInternalError, "libpq refused the statement: " + reason);
}

Task<void> Connection::flush(std::chrono::milliseconds timeout) {
  for (;;) {
    const int flushed = PQflush(conn_.get());
    if (flushed == 0) break;
    if (flushed < 0) lost();
    co_await wait_writable(timeout);
  }
}

Task<void> Connection::wait_writable(std::chrono::milliseconds timeout) {
  // Reading while our send buffer is full keeps a server that is itself blocked writing to
  // us (notices, an early error) from deadlocking with us.
  const Ready ready = co_await wait(Want::read_or_write);
  check_progress(ready, timeout);
  if (ready == Ready::read && PQconsumeInput(conn_.get()) == 0) lost();
}

Task<Result> Connection::complete(std::chrono::milliseconds timeout) {
  co_await flush(timeout);
  Result last;
  std::optional<Error> failure;
  for (;;) {
    while (PQisBusy(conn_.get()) != 0) {
      check_progress(co_await wait(Want::read), timeout);
      if (PQconsumeInput(conn_.get()) == 0) lost();
    }
    PGresult* next = PQgetResult(conn_.get());
    if (next == nullptr) break;
    Result result(next);
    const ExecStatusType status = PQresultStatus(next);
    switch (status) {
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
      case PGRES_EMPTY_QUERY:
        last = std::move(result);
        break;
      case PGRES_FATAL_ERROR:
      case PGRES_NONFATAL_ERROR:
      case PGRES_BAD_RESPONSE:
        if (!failure) failure = error_of(next);
        break;
      default:
        // A COPY stream needs its own protocol; dropping the connection is the only clean
        // way out of one.
        close();
        throw Error(sqlstate::kFeatureNotSupported,
                    std::string("query() cannot handle a ") + PQresStatus(status) + " result");
    }
  }
  if (PQstatus(conn_.get()) != CONNECTION_OK) lost();
  if (failure) throw std::move(*failure);
  co_return last;
}

void Connection::check_progress(Ready ready, std::chrono::milliseconds timeout) {
  if (ready != Ready::timeout && ready != Ready::cancelled) return;
  // The server is still busy with the statement and libpq has no non-blocking cancel here;
  // closing is the only way to have the connection free again at once. The pool reconnects.
  close();
  logger_->warn("query to {} {}; connection closed", description_,
                ready == Ready::timeout
                    ? "timed out after " + std::to_string(timeout.count()) + " ms"
                    : std::string("cancelled"));
  throw Error(sqlstate::kQueryCanceled,
              ready == Ready::timeout
                  ? "query timed out after " + std::to_string(timeout.count()) + " ms"
                  : std::string("query cancelled"));
}

void Connection::lost() {
  const std::string reason = error_text(conn_.get());
  close();
  logger_->warn("connection to {} lost: {}", description_, reason);
  throw Error(sqlstate::kConnectionFailure, "connection to " + description_ + " lost: " + reason);
}

void Connection::close() noexcept {
  // The descriptor belongs to libpq: take it back from the reactor so only PQfinish closes it.
  if (socket_.is_open()) socket_.release();
  conn_.reset();
}

void Connection::ensure_open() const {
  if (!conn_) {
    throw Error(sqlstate::kConnectionFailure,
                "connection to " + description_ + " was closed after an earlier failure");
  }
}

bool Connection::idle() const {
  return conn_ && !doomed_ && PQstatus(conn_.get()) == CONNECTION_OK &&
         PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
}

bool Connection::in_transaction() const {
  if (!conn_) return false;
  const PGTransactionStatusType status = PQtransactionStatus(conn_.get());
  return status == PQTRANS_INTRANS || status == PQTRANS_INERROR;
}

bool Connection::still_open() {
  if (!conn_) return false;
  // A terminated backend sends a FATAL message (a notice to libpq while idle), then closes;
  // either tells that the session is over.
  for (int reads = 0; reads < 4 && !doomed_; ++reads) {
    pollfd watched{PQsocket(conn_.get()), POLLIN, 0};
    if (::poll(&watched, 1, 0) <= 0) break;
    if (PQconsumeInput(conn_.get()) == 0) break;
  }
  // Nobody LISTENs through the pool: drop what arrived rather than let it pile up.
  for (std::unique_ptr<PGnotify, FreeMem> notify(PQnotifies(conn_.get())); notify;
       notify.reset(PQnotifies(conn_.get()))) {
  }
  if (!doomed_ && PQstatus(conn_.get()) == CONNECTION_OK) return true;
  logger_->info("idle connection to {} was closed by the server: {}", description_,
                error_text(conn_.get()));
  close();
  return false;
}

int Connection::backend_pid() const { return conn_ ? PQbackendPID(conn_.get()) : 0; }

void Connection::on_notice(void* self, const PGresult* notice) {
  auto* connection = static_cast<Connection*>(self);
  const char* severity = PQresultErrorField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* text = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
  const std::string_view level = severity != nullptr ? severity : "";
  if (level == "FATAL" || level == "PANIC") connection->doomed_ = true;
  const bool warning =
      level != "NOTICE" && level != "INFO" && level != "LOG" && !level.starts_with("DEBUG");
  connection->logger_->log(warning ? spdlog::level::warn : spdlog::level::debug,
                           "server {} on {}: {}", level, connection->description_,
                           text != nullptr ? text : "");
}

}  // namespace mesh::pg::detail
