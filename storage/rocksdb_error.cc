#include "storage/rocksdb_error.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace anyai::storage {
namespace {

// Per kind: when the next line may be written (steady clock, µs) and how many were left out
// since the last one. A line claims its slot with a CAS on `next`, so of racing threads one
// writes and the others count; the count is taken (exchanged to 0) by the writer.
struct LogSlot {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> suppressed{0};
};
LogSlot log_slots[kStorageFaultKinds];

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

StorageFault FaultOf(const rocksdb::Status& status) {
  if (status.IsNoSpace() || status.subcode() == rocksdb::Status::kSpaceLimit) {
    return StorageFault::kDiskFull;
  }
  if (status.IsIOError()) return StorageFault::kIOError;
  if (status.IsCorruption()) return StorageFault::kCorruption;
  if (status.IsNotSupported() && absl::StrContains(status.ToString(), "read only")) {
    return StorageFault::kReadOnly;
  }
  if (status.IsBusy() || status.IsTimedOut() || status.IsTryAgain() || status.IsIncomplete()) {
    return StorageFault::kBusy;
  }
  if (status.IsShutdownInProgress()) return StorageFault::kShuttingDown;
  return StorageFault::kOther;
}

const char* FaultName(StorageFault fault) {
  switch (fault) {
    case StorageFault::kDiskFull:
      return "disk full";
    case StorageFault::kIOError:
      return "I/O error";
    case StorageFault::kCorruption:
      return "stored data is corrupt";
    case StorageFault::kReadOnly:
      return "read only";
    case StorageFault::kBusy:
      return "busy";
    case StorageFault::kShuttingDown:
      return "shutting down";
    case StorageFault::kOther:
      return "internal error";
    case StorageFault::kRecovery:
      return "recovering";
  }
  return "internal error";
}

absl::Status UnavailableFor(StorageFault fault) {
  if (fault == StorageFault::kReadOnly || fault == StorageFault::kShuttingDown) {
    return absl::UnavailableError(absl::StrCat("storage is unavailable (", FaultName(fault), ")"));
  }
  return absl::UnavailableError(
      absl::StrCat("storage is unavailable (", FaultName(fault), "); try again later"));
}

void LogRateLimited(StorageFault kind, std::string_view line) {
  LogSlot& slot = log_slots[static_cast<int>(kind)];
  const int64_t now = SteadyMicros();
  int64_t next = slot.next.load(std::memory_order_relaxed);
  if (now < next ||
      !slot.next.compare_exchange_strong(next, now + absl::ToInt64Microseconds(kLogInterval),
                                         std::memory_order_relaxed)) {
    slot.suppressed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t left_out = slot.suppressed.exchange(0, std::memory_order_relaxed);
  const std::string text = left_out == 0 ? absl::StrCat("anyai storage: ", std::string(line), "\n")
                                         : absl::StrCat("anyai storage: ", std::string(line), " (",
                                                        left_out, " more like it left out)\n");
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace anyai::storage
