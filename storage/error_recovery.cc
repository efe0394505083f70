#include "storage/error_recovery.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "storage/rocksdb_error.h"

namespace anyai::storage {
namespace {

const char* ReasonName(rocksdb::BackgroundErrorReason reason) {
  switch (reason) {
    case rocksdb::BackgroundErrorReason::kFlush:
    case rocksdb::BackgroundErrorReason::kFlushNoWAL:
      return "flush";
    case rocksdb::BackgroundErrorReason::kCompaction:
      return "compaction";
    case rocksdb::BackgroundErrorReason::kWriteCallback:
      return "write";
    case rocksdb::BackgroundErrorReason::kMemTable:
      return "memtable switch";
    case rocksdb::BackgroundErrorReason::kManifestWrite:
    case rocksdb::BackgroundErrorReason::kManifestWriteNoWAL:
      return "MANIFEST write";
  }
  return "background work";
}

}  // namespace

class ErrorRecovery::Listener final : public rocksdb::EventListener {
 public:
  explicit Listener(ErrorRecovery& recovery) : recovery_(recovery) {}

  const char* Name() const override { return "AnyaiErrorRecovery"; }

  // Called before RocksDB records the error; `error` may be changed (error_handler.cc).
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    if (error->ok()) return;
    if (error->severity() == rocksdb::Status::Severity::kFatalError && error->IsIOError() &&
        !error->IsIOFenced()) {
      *error = rocksdb::Status(*error, rocksdb::Status::Severity::kHardError);
    }
    LogRateLimited(FaultOf(*error),
                   absl::StrCat("RocksDB background error (", ReasonName(reason),
                                "): ", error->ToString(), "; writes are refused until it resumes"));
    recovery_.MarkFailed();
  }

  // Only for errors RocksDB means to recover from by itself (ENOSPC through its
  // SstFileManager): the resume thread does it instead, without the SstFileManager's reserve.
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status /*error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }

 private:
  ErrorRecovery& recovery_;
};

ErrorRecovery::ErrorRecovery(absl::Duration retry_interval)
    : retry_interval_(retry_interval), listener_(std::make_shared<Listener>(*this)) {}

ErrorRecovery::~ErrorRecovery() { Stop(); }

void ErrorRecovery::Start(rocksdb::DB* db) {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || stopping_) return;
  db_ = db;
  thread_ = std::thread([this] { Run(); });
}

void ErrorRecovery::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ErrorRecovery::ReportFailure(const rocksdb::Status& status) {
  if (status.IsIOError() || status.IsCorruption()) MarkFailed();
}

void ErrorRecovery::MarkFailed() {
  absl::MutexLock lock(&mu_);
  ++generation_;
  healthy_.store(false, std::memory_order_release);
}

void ErrorRecovery::Run() {
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(
        +[](ErrorRecovery* r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return r->stopping_ || !r->healthy_.load(std::memory_order_relaxed);
        },
        this));
    if (stopping_) break;
    // Not at once: a fault rarely clears within microseconds, and RocksDB calls the listener
    // before it records the error (with its mutex released), so a Resume() right away could
    // find nothing to resume yet and report success.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), retry_interval_);
    if (stopping_) break;
    const uint64_t generation = generation_;
    rocksdb::DB* const db = db_;
    mu_.Unlock();
    const rocksdb::Status resumed = db->Resume();
    mu_.Lock();
    if (!resumed.ok()) {
      LogRateLimited(StorageFault::kRecovery,
                     absl::StrCat("resuming after a storage error failed: ", resumed.ToString(),
                                  "; retrying every ", absl::FormatDuration(retry_interval_)));
    } else if (generation == generation_) {
      healthy_.store(true, std::memory_order_release);
      // Not rate-limited: one line per recovery.
      std::fputs("anyai storage: storage resumed: writes are accepted again\n", stderr);
    }
    // Else an error was reported while Resume() ran, which it may not have covered: again.
  }
  mu_.Unlock();
}

}  // namespace anyai::storage
