// Keeps a RocksDB database coming back after a storage fault that heals (a full disk freed, a
// failing device or sync that works again), and says whether it is healthy now. Internal to
// storage/ (includes RocksDB); Database owns one and exposes healthy().
//
// RocksDB stops every write after a write error (a "background error" of hard or fatal
// severity) until DB::Resume() succeeds. Left to itself, Debian's RocksDB 7.8 heals badly:
//  - a full disk (ENOSPC) is handed to its SstFileManager, which resumes only once the free
//    space reaches its reserve, the largest write buffer (64 MB by default): never, on a small
//    volume; and meanwhile DB::Resume() answers Busy;
//  - a plain I/O error on the WAL, the MANIFEST, a flush or a compaction, and any failure to
//    switch to a new WAL while resuming, is "fatal": Resume() refuses it for good.
// So ErrorRecovery's listener turns RocksDB's own automatic recovery off (OnErrorRecoveryBegin
// sets auto_recovery = false; DBOptions::max_bgerror_resume_count = 0 is the caller's part),
// lowers a fatal I/O error to a hard one (the severity RocksDB itself gives ENOSPC, which it
// resumes from the same way: switch to a new WAL, flush the memtables, rewrite the MANIFEST if
// it failed), and its own thread calls DB::Resume() every retry_interval while the database is
// failing, until it succeeds. Errors that mean lost or corrupt data (RocksDB's
// "unrecoverable" severity) and a fenced I/O error are left alone: Resume() keeps failing and
// the database stays unhealthy, as it should.
//
// healthy() is false from the moment a write error is reported (by RocksDB's listener call,
// made before the failing write returns, or by ReportFailure) until a Resume() that started
// after the last report succeeds. A "generation" counts reports, so a Resume() that was
// already running when a new error arrived cannot clear it.
//
// Thread safety: thread-safe. The listener's callbacks run on RocksDB's threads (writers,
// flushes, compactions, and the resume thread inside Resume()) without RocksDB's mutex held;
// they only take mu_ briefly. healthy() is one atomic load.
#ifndef ANYAI_STORAGE_ERROR_RECOVERY_H_
#define ANYAI_STORAGE_ERROR_RECOVERY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"

namespace anyai::storage {

class ErrorRecovery {
 public:
  explicit ErrorRecovery(absl::Duration retry_interval);
  // Stop()s.
  ~ErrorRecovery();
  ErrorRecovery(const ErrorRecovery&) = delete;
  ErrorRecovery& operator=(const ErrorRecovery&) = delete;

  // For DBOptions::listeners, before DB::Open. It refers to this object: the database must be
  // closed before this object is destroyed.
  std::shared_ptr<rocksdb::EventListener> listener() const { return listener_; }

  // Starts the resume thread on `db` (borrowed until Stop()). At most once.
  void Start(rocksdb::DB* db) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the resume thread (waits for a Resume() under way). Call before closing the database.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // An operation failed with `status`: if it is a storage fault (an I/O error, no space,
  // corruption), the database is unhealthy until a Resume() succeeds. Other errors (busy, not
  // supported, invalid argument) are ignored.
  void ReportFailure(const rocksdb::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

  bool healthy() const { return healthy_.load(std::memory_order_acquire); }

 private:
  class Listener;

  // A storage fault: unhealthy, and the resume thread wakes.
  void MarkFailed() ABSL_LOCKS_EXCLUDED(mu_);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration retry_interval_;
  const std::shared_ptr<rocksdb::EventListener> listener_;  // a Listener
  // Written under mu_; read without it by healthy() (acquire pairs with the release stores).
  std::atomic<bool> healthy_{true};
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // storage faults reported so far
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  rocksdb::DB* db_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;  // started by Start(), joined by Stop()
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_ERROR_RECOVERY_H_
