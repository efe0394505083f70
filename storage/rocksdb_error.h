// What a RocksDB error means for a caller, and what is logged of it. Internal to storage/
// (includes RocksDB).
//
// A RocksDB message names files ("While appending to file: /var/lib/anyai/000012.log") and the
// stores' context names tenants and keys: neither may reach a client (SPEC: errors say what
// and why, never where). So a failed operation becomes UNAVAILABLE with a message that says
// only what kind of fault it was:
//
//   storage is unavailable (disk full); try again later
//
// and the full story (what the store was doing and RocksDB's own message) goes to stderr,
// rate-limited: at most one line per kind of fault every kLogInterval, the next one saying
// how many were left out.
//
// Thread safety: thread-safe.
#ifndef ANYAI_STORAGE_ROCKSDB_ERROR_H_
#define ANYAI_STORAGE_ROCKSDB_ERROR_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rocksdb/status.h"

namespace anyai::storage {

enum class StorageFault {
  kDiskFull,      // no space left (ENOSPC), or RocksDB's space limit
  kIOError,       // any other I/O error: the device or file system failed
  kCorruption,    // what is stored does not read back as written
  kReadOnly,      // opened read-only
  kBusy,          // RocksDB asks to retry (busy, timed out, try again)
  kShuttingDown,  // the database is closing
  kOther,
  kRecovery,  // not an error: the error handler's own progress lines (for the log limiter)
};
inline constexpr int kStorageFaultKinds = 8;

inline constexpr absl::Duration kLogInterval = absl::Seconds(5);

StorageFault FaultOf(const rocksdb::Status& status);

// "disk full", "I/O error", ... (for messages).
const char* FaultName(StorageFault fault);

// UNAVAILABLE "storage is unavailable (<fault>); try again later" ("... (read only)" without
// the advice when it cannot help).
absl::Status UnavailableFor(StorageFault fault);

// Writes "anyai storage: <line>" to stderr unless a line of the same kind was written less
// than kLogInterval ago (then it is only counted, and the next line written says how many were
// left out).
void LogRateLimited(StorageFault kind, std::string_view line);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_ROCKSDB_ERROR_H_
