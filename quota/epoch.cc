#include "quota/epoch.h"

#include <atomic>

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

}  // namespace

EpochGuard::EpochGuard() {
  ThreadState& ts = t_state;
  if (ts.depth++ > 0) return;
  if (ts.record == nullptr) ts.record = AcquireRecord();
  uint64_t e = g_epoch.load(std::memory_order_relaxed);
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
  for (Record* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    const uint64_t a = r->announced.load(std::memory_order_seq_cst);
    if (a != 0 && a != e) return;
  }
  g_epoch.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst);
}

bool SafeToFree(uint64_t retire_epoch) {
  return g_epoch.load(std::memory_order_acquire) >= retire_epoch + 2;
}

}  // namespace anyai::quota
