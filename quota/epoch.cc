#include "quota/epoch.h"

#include <atomic>
#include <chrono>
#include <cstdint>

#include "absl/base/config.h"

#if defined(__linux__) && !defined(ABSL_HAVE_THREAD_SANITIZER)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ANYAI_EPOCH_MEMBARRIER 1
#endif

namespace anyai::quota {
namespace {

// One per thread that ever entered a guard; never freed, reused after the thread exits.
struct alignas(64) Record {
  // 0 when the thread is outside any guard, else the epoch it announced.
  std::atomic<uint64_t> announced{0};
  std::atomic<bool> in_use{true};
  Record* next = nullptr;
};

std::atomic<uint64_t> g_epoch{1};
std::atomic<Record*> g_records{nullptr};

Record* AcquireRecord() {
  for (Record* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    bool expected = false;
    if (!r->in_use.load(std::memory_order_relaxed) &&
        r->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      return r;
    }
  }
  Record* r = new Record;  // lives for the process: readers of the list never see it freed
  Record* head = g_records.load(std::memory_order_relaxed);
  do {
    r->next = head;
  } while (!g_records.compare_exchange_weak(head, r, std::memory_order_release,
                                            std::memory_order_relaxed));
  return r;
}

struct ThreadState {
  Record* record = nullptr;
  int depth = 0;
  ~ThreadState() {
    if (record != nullptr) {
      record->announced.store(0, std::memory_order_release);
      record->in_use.store(false, std::memory_order_release);
    }
  }
};

thread_local ThreadState t_state;

// True once this process is registered for membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): the
// reclaimer then issues the barriers and readers need none of their own. Decided once, before
// the first guard or reclamation uses it; false without the system call (an old kernel, a
// seccomp filter) and under ThreadSanitizer, which does not model it.
bool ReclaimerFences() {
#if defined(ANYAI_EPOCH_MEMBARRIER)
  static const bool registered = [] {
    const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return commands > 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return registered;
#else
  return false;
#endif
}

// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): every running thread of the process, this one
// too, executes a full memory barrier before it returns (a thread not running has passed one
// when it was switched out). False if it failed, which registration makes unexpected.
bool FenceEveryThread() {
#if defined(ANYAI_EPOCH_MEMBARRIER)
  return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
  return false;
#endif
}

// True when no thread inside a guard announces an epoch other than `e`.
bool EveryReaderSees(uint64_t e) {
  for (Record* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    const uint64_t a = r->announced.load(std::memory_order_seq_cst);
    if (a != 0 && a != e) return false;
  }
  return true;
}

}  // namespace

EpochGuard::EpochGuard() {
  ThreadState& ts = t_state;
  if (ts.depth++ > 0) return;
  if (ts.record == nullptr) ts.record = AcquireRecord();
  uint64_t e = g_epoch.load(std::memory_order_relaxed);
  if (ReclaimerFences()) {
    // The reclaimer's membarrier() stands in for a fence here: only the compiler must keep the
    // announcement before the loads this guard covers.
    for (;;) {
      ts.record->announced.store(e, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      const uint64_t now = g_epoch.load(std::memory_order_acquire);
      if (now == e) return;
      e = now;
    }
  }
  for (;;) {
    // seq_cst store then seq_cst load (a Dekker pair with TryAdvanceEpoch): either the
    // reclaimer sees this announcement, or this load sees the reclaimer's newer epoch.
    ts.record->announced.store(e, std::memory_order_seq_cst);
    const uint64_t now = g_epoch.load(std::memory_order_seq_cst);
    if (now == e) break;
    e = now;
  }
}

EpochGuard::~EpochGuard() {
  ThreadState& ts = t_state;
  if (--ts.depth > 0) return;
  // Release: every read made under the guard happens before the reclaimer sees us leave.
  ts.record->announced.store(0, std::memory_order_release);
}

uint64_t CurrentEpoch() { return g_epoch.load(std::memory_order_seq_cst); }

void TryAdvanceEpoch() {
  uint64_t e = g_epoch.load(std::memory_order_seq_cst);
  // A first look, without a barrier: when some reader is seen on an older epoch, nothing can
  // advance, and the barrier is spared.
  if (!EveryReaderSees(e)) return;
  if (ReclaimerFences()) {
    // Every running thread of the process executes a full barrier: an announcement made before
    // it is visible to the look below; loads made after it see everything done before it.
    if (!FenceEveryThread()) return;
    if (!EveryReaderSees(e)) return;
  }
  g_epoch.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst);
}

void TryAdvanceEpochThrottled() {
  if (ReclaimerFences()) {
    // A membarrier() costs microseconds (an interrupt to each other core running one of our
    // threads, a VM exit under virtualization): once a millisecond at most, so that a flood of
    // new tenants at the resident cap does not pay it per tenant. One thread tries at a time;
    // the others go on without.
    static std::atomic<int64_t> last_try_ns{0};
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_try_ns.load(std::memory_order_relaxed);
    if (now - last < 1'000'000 ||
        !last_try_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      return;
    }
  }
  TryAdvanceEpoch();
}

bool EpochReadersFenceFree() { return ReclaimerFences(); }

bool SafeToFree(uint64_t retire_epoch) {
  return g_epoch.load(std::memory_order_acquire) >= retire_epoch + 2;
}

}  // namespace anyai::quota
