#include "storage/postgres_connection.h"

#include <libpq-fe.h>

#include <atomic>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace anyai::storage {
namespace {

// One log line per second at most per pool (libpq's messages may repeat for every call during an
// outage); the count of lines left out is reported with the next one.
class LogLimiter {
 public:
  void Log(std::string_view what, std::string_view line) {
    const int64_t now = absl::ToUnixMicros(absl::Now());
    int64_t next = next_.load(std::memory_order_relaxed);
    if (now < next || !next_.compare_exchange_strong(next, now + 1'000'000)) {
      suppressed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const int64_t left_out = suppressed_.exchange(0, std::memory_order_relaxed);
    std::string text =
        absl::StrCat("anyai postgres (", std::string(what), "): ", std::string(line));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (left_out > 0) absl::StrAppend(&text, " (", left_out, " more like it left out)");
    text.push_back('\n');
    std::fwrite(text.data(), 1, text.size(), stderr);
  }

 private:
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> suppressed_{0};
};

LogLimiter& Limiter() {
  static LogLimiter* limiter = new LogLimiter;
  return *limiter;
}

std::string Seconds(absl::Duration d) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Seconds(d + absl::Milliseconds(999))));
}

}  // namespace

struct PostgresPool::Connection {
  explicit Connection(PGconn* c) : conn(c) {}
  ~Connection() {
    if (conn != nullptr) PQfinish(conn);
  }
  PGconn* conn;
};

PgParam PgParam::Int(int64_t v) { return Text(absl::StrCat(v)); }

absl::StatusOr<int64_t> PgResult::Int8(const Cell& cell) {
  if (cell.null || cell.bytes.size() != 8) {
    return absl::DataLossError("a PostgreSQL bigint column does not decode");
  }
  uint64_t bits = 0;
  for (char c : cell.bytes) bits = (bits << 8) | static_cast<uint8_t>(c);
  return static_cast<int64_t>(bits);
}

absl::StatusOr<bool> PgResult::Bool(const Cell& cell) {
  if (cell.null || cell.bytes.size() != 1) {
    return absl::DataLossError("a PostgreSQL boolean column does not decode");
  }
  return cell.bytes[0] != 0;
}

absl::StatusOr<std::unique_ptr<PostgresPool>> PostgresPool::Create(PostgresPoolOptions options) {
  if (options.dsn.empty()) return absl::InvalidArgumentError("the PostgreSQL DSN is empty");
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("max_connections must be at least 1");
  }
  return std::unique_ptr<PostgresPool>(new PostgresPool(std::move(options)));
}

PostgresPool::PostgresPool(PostgresPoolOptions options) : options_(std::move(options)) {}

PostgresPool::~PostgresPool() = default;

int PostgresPool::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

absl::Status PostgresPool::Unavailable(std::string_view kind, std::string_view detail) const {
  Limiter().Log(options_.what, absl::StrCat(std::string(kind), ": ", std::string(detail)));
  return absl::UnavailableError(absl::StrCat("the ", options_.what, " is unavailable (",
                                             std::string(kind), "); try again later"));
}

absl::StatusOr<std::unique_ptr<PostgresPool::Connection>> PostgresPool::Connect() {
  const std::string connect_timeout = Seconds(options_.connect_timeout);
  const std::string options =
      absl::StrCat("-c statement_timeout=", absl::ToInt64Milliseconds(options_.statement_timeout));
  const std::string user_timeout = absl::StrCat(
      absl::ToInt64Milliseconds(options_.connect_timeout + options_.statement_timeout));
  // Later keywords win, and `dbname` expands the DSN: whatever the DSN sets overrides these.
  const char* keywords[] = {"connect_timeout",
                            "tcp_user_timeout",
                            "keepalives",
                            "keepalives_idle",
                            "keepalives_interval",
                            "keepalives_count",
                            "options",
                            "application_name",
                            "dbname",
                            nullptr};
  const char* values[] = {
      connect_timeout.c_str(), user_timeout.c_str(), "1",    "10", "5", "3", options.c_str(),
      "anyai-server",          options_.dsn.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Unavailable("out of memory", "PQconnectdbParams returned null");
  auto connection = std::make_unique<Connection>(conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    return Unavailable("cannot connect", PQerrorMessage(conn));
  }
  // NOTICEs ("relation already exists, skipping") are not worth a log line.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return connection;
}

absl::StatusOr<std::unique_ptr<PostgresPool::Connection>> PostgresPool::Acquire(bool& reused) {
  reused = false;
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.max_connections;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&available), options_.acquire_timeout)) {
      return Unavailable("busy", "every connection stayed in use");
    }
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      reused = true;
      return connection;
    }
    ++open_;  // reserved while connecting, outside the lock
  }
  absl::StatusOr<std::unique_ptr<Connection>> connection = Connect();
  if (!connection.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
  }
  return connection;
}

void PostgresPool::DropIdle() {
  std::vector<std::unique_ptr<Connection>> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped.swap(idle_);
    open_ -= static_cast<int>(dropped.size());
  }
  // Closed here, outside the lock.
}

void PostgresPool::Release(std::unique_ptr<Connection> connection) {
  absl::MutexLock lock(&mu_);
  if (connection != nullptr && PQstatus(connection->conn) == CONNECTION_OK &&
      PQtransactionStatus(connection->conn) == PQTRANS_IDLE) {
    idle_.push_back(std::move(connection));
    return;
  }
  --open_;  // dropped: closed when `connection` goes out of scope
}

absl::StatusOr<PgResult> PostgresPool::Exec(std::string_view sql,
                                            const std::vector<PgParam>& params) {
  const std::string query(sql);
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  for (const PgParam& p : params) {
    values.push_back(p.value.has_value() ? p.value->data() : nullptr);
    lengths.push_back(p.value.has_value() ? static_cast<int>(p.value->size()) : 0);
    formats.push_back(p.binary ? 1 : 0);
  }
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire(reused);
    if (!connection.ok()) return connection.status();
    PGresult* res =
        PQexecParams((*connection)->conn, query.c_str(), static_cast<int>(params.size()),
                     /*paramTypes=*/nullptr, values.data(), lengths.data(), formats.data(),
                     /*resultFormat=*/1);
    const ExecStatusType status = res == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      PgResult result;
      const int rows = PQntuples(res);
      const int columns = PQnfields(res);
      result.rows.resize(rows);
      for (int r = 0; r < rows; ++r) {
        result.rows[r].resize(columns);
        for (int c = 0; c < columns; ++c) {
          PgResult::Cell& cell = result.rows[r][c];
          cell.null = PQgetisnull(res, r, c) != 0;
          if (!cell.null) cell.bytes.assign(PQgetvalue(res, r, c), PQgetlength(res, r, c));
        }
      }
      const char* affected = PQcmdTuples(res);
      if (affected != nullptr && *affected != '\0') result.affected = std::atoll(affected);
      PQclear(res);
      Release(*std::move(connection));
      return result;
    }
    const bool broken = PQstatus((*connection)->conn) != CONNECTION_OK;
    std::string detail = res != nullptr ? PQresultErrorMessage(res) : "";
    if (detail.empty()) detail = PQerrorMessage((*connection)->conn);
    if (res != nullptr) PQclear(res);
    Release(*std::move(connection));  // drops it if broken
    if (broken && reused && attempt == 0) {
      // It died while idle (PostgreSQL restarted, the network was cut): the other idle ones
      // most likely did too. Drop them all and try once more on a fresh connection.
      DropIdle();
      continue;
    }
    return Unavailable(broken ? "connection lost" : "statement failed", detail);
  }
}

}  // namespace anyai::storage
