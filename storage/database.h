// The gateway's one RocksDB database, at a data directory (created if missing), with its column
// families:
//   keys     key records and their key_id index (RocksDbKeyStore)
//   usage    per-tenant usage counters (UsageStore): merged by CounterAddOperator, expired rows
//            dropped by compaction (UsageCompactionFilterFactory)
//   default  unused; RocksDB requires it
// A Database owns the rocksdb::DB and every column family handle. Stores borrow it
// (`RocksDbKeyStore::Open(db)`, `UsageStore::Open(db, ...)`) and must be destroyed first.
//
//   absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = "/var/lib/anyai"});
//
// Durability. Every write goes through RocksDB's write-ahead log (never disabled). The mode
// chooses what happens before a usage write returns; key records are always written as in
// kFsync, whatever the mode (SPEC §6: durably before CreateKey answers).
//
// Failures. Every RocksDB error becomes UNAVAILABLE with a message that says what kind of fault
// it was and nothing of where ("storage is unavailable (disk full); try again later": no file
// path, tenant or key), while the full RocksDB message and what the store was doing go to
// stderr, rate-limited (rocksdb_error.h). A row RocksDB returns but the stores cannot decode is
// DATA_LOSS. Nothing aborts the process: RocksDB's info log is written by InfoLog (info_log.h),
// whose RocksDB counterpart aborted on the second line after a failed write.
//
// Faults that heal. After a write error (no space, an I/O error, a failing sync) RocksDB refuses
// every write; the Database keeps calling DB::Resume() every `resume_interval` until it succeeds
// (error_recovery.h: without RocksDB's SstFileManager, which waits for 64 MB free), and
// healthy() is false meanwhile (the server's /readyz says 503). Acknowledged writes are never
// lost to this (each is in the WAL or a table), and a refused write is not applied — with one
// exception RocksDB cannot avoid: a write whose WAL record reached the file but whose sync
// failed comes back on the next open if the process stops before storage resumed (a resume
// flushes the memtables and drops that WAL). Tests inject faults through `env` (a FileSystem
// that fails on demand).
//
// For tests of the server's fail-closed / fail-open
// policy there are two ways to make storage fail: open with `read_only = true` (every write
// then gets RocksDB's real "read only" error), or call InjectFailure() on a live database (the
// next reads and/or writes fail with UNAVAILABLE "injected storage failure", without reaching
// RocksDB, until InjectFailure(kNone)). Neither changes healthy().
//
// Thread safety: every method may be called from any number of threads; RocksDB's DB and column
// family handles are thread-safe. Open() takes RocksDB's lock file, so a second process (or a
// second Open in this one) on the same directory fails with UNAVAILABLE.
#ifndef ANYAI_STORAGE_DATABASE_H_
#define ANYAI_STORAGE_DATABASE_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class Status;
class WriteBatch;
struct WriteOptions;
}  // namespace rocksdb

namespace anyai::storage {

class ErrorRecovery;
struct UsageRetention;
class UsageCompactionFilterFactory;

enum class Durability {
  // WriteOptions::sync = false. When a write returns, its WAL record has been handed to the
  // kernel (one write(2) on the WAL file; RocksDB's manual_wal_flush stays off), so it
  // survives the process dying in any way: kill -9, a crash, an OOM kill. It does not survive
  // the kernel crashing or the machine losing power before the kernel writes the page cache
  // back (on Linux, dirty pages are written within about 30 s by default). Cost: a few
  // microseconds per write, no wait on the device. The default.
  kProcessCrash,
  // WriteOptions::sync = true. A write returns only after the WAL is fdatasync()ed, so it
  // survives power loss as well. Cost: one device cache flush per write: roughly 50 µs-1 ms on
  // SSD/NVMe (least with a power-safe write cache), up to ~10 ms on spinning disks. RocksDB
  // groups concurrent writers into one flush, so throughput under concurrency degrades less
  // than the single-write latency suggests.
  kFsync,
};

struct DatabaseOptions {
  std::string data_dir = {};  // created, with its parents, if missing
  Durability durability = Durability::kProcessCrash;
  // Opens an existing database without the right to write (RocksDB's OpenForReadOnly): every
  // write and compaction fails with UNAVAILABLE. For inspection tools and failure tests. Must
  // not be used while another process has the directory open for writing.
  bool read_only = false;
  // The Env (and through it the FileSystem) RocksDB does its I/O with; borrowed, must outlive
  // the Database. nullptr: RocksDB's default (the local file system). Tests inject faults here.
  rocksdb::Env* env = nullptr;
  // How often a failing database retries DB::Resume().
  absl::Duration resume_interval = absl::Seconds(1);
};

// What InjectFailure() makes fail.
enum class InjectedFailure { kNone, kWrites, kReadsAndWrites };

class Database {
 public:
  // UNAVAILABLE if the directory cannot be created or RocksDB cannot open it (already open,
  // unreadable, corrupt); INVALID_ARGUMENT for an empty data_dir.
  static absl::StatusOr<std::unique_ptr<Database>> Open(DatabaseOptions options);

  // Syncs the WAL (so a clean shutdown in kProcessCrash mode also survives a later power loss;
  // skipped while storage is failing, when RocksDB cannot sync it) and closes the database.
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  const DatabaseOptions& options() const { return options_; }

  // For the stores of storage/; borrowed, valid for the Database's lifetime.
  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* keys() const { return keys_; }
  rocksdb::ColumnFamilyHandle* usage() const { return usage_; }
  // The write options of the configured Durability, and ones that always sync.
  const rocksdb::WriteOptions& write_options() const { return *write_options_; }
  const rocksdb::WriteOptions& synced_write_options() const { return *synced_write_options_; }

  // Writes `batch`; on failure UNAVAILABLE as FromRocksDb (`what` is logged, not returned), and a
  // storage fault makes the database unhealthy until it resumes. The stores write through here.
  absl::Status Write(const rocksdb::WriteOptions& options, rocksdb::WriteBatch& batch,
                     std::string_view what);

  // False while storage is failing: from a write error until RocksDB has resumed. Cheap (one
  // atomic load), for /readyz and per request.
  bool healthy() const;

  // Installs the rule by which compactions of the usage column family drop expired rows
  // (UsageStore does this); nullptr keeps every row. A compaction already running keeps the
  // rule it started with.
  void SetUsageRetention(std::shared_ptr<const UsageRetention> retention);

  // Test hook: see "Failures" above.
  void InjectFailure(InjectedFailure failure);
  // UNAVAILABLE if an injected failure covers this operation; the stores call it first.
  absl::Status CheckInjectedFailure(bool write) const;

 private:
  explicit Database(DatabaseOptions options);

  DatabaseOptions options_;
  // Before db_: RocksDB holds its listener until db_ is closed and destroyed.
  std::unique_ptr<ErrorRecovery> recovery_;
  std::shared_ptr<UsageCompactionFilterFactory> usage_filter_factory_;
  std::unique_ptr<rocksdb::WriteOptions> write_options_;
  std::unique_ptr<rocksdb::WriteOptions> synced_write_options_;
  std::unique_ptr<rocksdb::DB> db_;
  // Every column family handle opened (including ones this version does not use), owned here
  // and destroyed before db_ closes.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* keys_ = nullptr;
  rocksdb::ColumnFamilyHandle* usage_ = nullptr;
  std::atomic<InjectedFailure> injected_failure_{InjectedFailure::kNone};
};

// OK for an OK RocksDB status; otherwise UNAVAILABLE "storage is unavailable (<kind of
// fault>)...", and "<what>: <RocksDB's message>" logged to stderr (rate-limited). `what` may
// name tenants and keys: it never reaches the status.
absl::Status FromRocksDb(const rocksdb::Status& status, std::string_view what);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_DATABASE_H_
