// A small, bounded pool of libpq connections to one PostgreSQL database, shared by the cluster
// mode's stores (PostgresKeyStore, the hand-off writer of handoff_usage.h), and the one way they
// run SQL: parameterised statements only (PQexecParams; user data never becomes SQL text), with
// results in binary format.
//
//   auto pool = PostgresPool::Create({.dsn = "host=db port=5432 dbname=anyai user=anyai"});
//   absl::StatusOr<PgResult> rows = (*pool)->Exec("SELECT x FROM t WHERE k = $1", {PgParam(k)});
//
// Connections are opened on demand, at most `max_connections` at a time; a caller that finds
// them all busy waits up to `acquire_timeout`. A connection that breaks (PostgreSQL restarted,
// the network cut) is dropped; when the broken one came from the pool (it died while idle) Exec
// drops every idle connection and retries the statement once on a fresh one, so after an outage
// the first call heals without a restart. Statements must therefore be idempotent or safe to repeat
// (every statement of the stores is: inserts with ON CONFLICT, updates to a fixed value).
//
// Errors: every failure (cannot connect, a statement fails, PostgreSQL shuts down, the pool stays
// busy) is UNAVAILABLE with a message that says what failed and not where ("the PostgreSQL
// database is unavailable (cannot connect)"): never the DSN, host, user or password. libpq's
// own message is logged to stderr instead (at most one line per second per kind).
// Timeouts: libpq's connect_timeout (default `connect_timeout` below, unless the DSN sets one)
// and tcp_user_timeout / keepalives bound a call against a dead peer; `statement_timeout` bounds
// a statement on the server.
//
// Thread safety: thread-safe; Exec may be called from any number of threads. A PgResult is a
// plain value owned by its caller.
#ifndef ANYAI_STORAGE_POSTGRES_CONNECTION_H_
#define ANYAI_STORAGE_POSTGRES_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::storage {

struct PostgresPoolOptions {
  std::string dsn = {};  // a libpq connection string or URI; must not be empty
  int max_connections = 4;
  absl::Duration acquire_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(5);  // unless the DSN sets connect_timeout
  absl::Duration statement_timeout = absl::Seconds(10);
  // Named in log lines ("anyai postgres (<what>): ...") and errors, e.g. "key registry".
  std::string what = "PostgreSQL database";
};

// One parameter of a statement: SQL NULL, or bytes sent as text (format 0: for text, integer and
// boolean parameters written in their text form) or as binary (format 1: for bytea).
struct PgParam {
  std::optional<std::string> value;
  bool binary = false;

  static PgParam Null() { return {.value = std::nullopt, .binary = false}; }
  static PgParam Text(std::string_view s) { return {.value = std::string(s), .binary = false}; }
  static PgParam Bytes(std::string_view s) { return {.value = std::string(s), .binary = true}; }
  static PgParam Int(int64_t v);
  static PgParam Bool(bool v) { return Text(v ? "true" : "false"); }
};

// The rows of a statement, in binary format, copied out of libpq.
struct PgResult {
  struct Cell {
    bool null = false;
    std::string bytes;  // the column's binary representation
  };
  std::vector<std::vector<Cell>> rows;
  int64_t affected = 0;  // rows inserted/updated/deleted (PQcmdTuples)

  // Decoders for the binary representations (DATA_LOSS if the cell does not have that shape).
  static absl::StatusOr<int64_t> Int8(const Cell& cell);
  static absl::StatusOr<bool> Bool(const Cell& cell);
};

class PostgresPool {
 public:
  // Validates the options only; connects on first use, so a database that is down at start does
  // not stop the server (calls fail with UNAVAILABLE until it is back).
  static absl::StatusOr<std::unique_ptr<PostgresPool>> Create(PostgresPoolOptions options);
  ~PostgresPool();
  PostgresPool(const PostgresPool&) = delete;
  PostgresPool& operator=(const PostgresPool&) = delete;

  // Runs one statement (several statements in one string only without parameters, e.g. a schema
  // script) in its own implicit transaction; see the errors above.
  absl::StatusOr<PgResult> Exec(std::string_view sql, const std::vector<PgParam>& params = {});

  // Connections open now (idle or in use), for tests.
  int open_connections() const;

 private:
  struct Connection;
  explicit PostgresPool(PostgresPoolOptions options);

  // A connection to use: an idle one (`reused` set), else a new one if below the cap, else waits.
  absl::StatusOr<std::unique_ptr<Connection>> Acquire(bool& reused) ABSL_LOCKS_EXCLUDED(mu_);
  void Release(std::unique_ptr<Connection> connection) ABSL_LOCKS_EXCLUDED(mu_);
  // Closes every idle connection.
  void DropIdle() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::unique_ptr<Connection>> Connect();
  absl::Status Unavailable(std::string_view kind, std::string_view detail) const;

  const PostgresPoolOptions options_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_POSTGRES_CONNECTION_H_
