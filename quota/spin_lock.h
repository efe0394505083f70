// The lock of one tenant's counters for one feature class (internal to quota/): one word, so
// that it sits on the same cache line as the counters it guards. Taking it uncontended is one
// atomic exchange and giving it back one release store; a waiter spins briefly and then
// yields its core, so that a holder that was preempted (the machine may have fewer cores than
// threads) gets to finish. Critical sections under it are short and never block: no
// allocation other than a rare history widening, no I/O, no other lock.
//
// Thread safety: a lock; ThreadSanitizer sees it through its atomics.
#ifndef ANYAI_QUOTA_SPIN_LOCK_H_
#define ANYAI_QUOTA_SPIN_LOCK_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace anyai::quota {

class ABSL_LOCKABLE SpinLock {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if (!word_.exchange(1, std::memory_order_acquire)) return;
    for (int spins = 0;; ++spins) {
      if (word_.load(std::memory_order_relaxed) == 0 &&
          !word_.exchange(1, std::memory_order_acquire)) {
        return;
      }
      if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() { word_.store(0, std::memory_order_release); }

 private:
  std::atomic<uint32_t> word_{0};
};

class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* const lock_;
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_SPIN_LOCK_H_
