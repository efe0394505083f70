// The lock of one tenant's counters for one feature class (internal to quota/): one word, so
// that it sits on the same cache line as the counters it guards. Taking it uncontended is one
// compare-and-swap and giving it back one exchange. A waiter spins briefly (critical sections
// under it are a few hundred instructions) and then sleeps in the kernel (a futex) until the
// holder gives the lock back, so that a holder preempted on a machine with fewer cores than
// threads (a gateway's worker pool) gets the core back instead of waiters burning it. Critical
// sections never block: no I/O, no other lock, no allocation but a rare history widening.
// The word: 0 free, 1 held, 2 held and someone may sleep on it (the holder then wakes one).
//
// Thread safety: a lock; ThreadSanitizer sees it through its atomics.
#ifndef ANYAI_QUOTA_SPIN_LOCK_H_
#define ANYAI_QUOTA_SPIN_LOCK_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace anyai::quota {

class ABSL_LOCKABLE SpinLock {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    uint32_t free = 0;
    if (word_.compare_exchange_strong(free, 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      return;
    }
    for (int spins = 0; spins < kSpins; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      free = 0;
      if (word_.load(std::memory_order_relaxed) == 0 &&
          word_.compare_exchange_weak(free, 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return;
      }
    }
    // Marked "someone may sleep" whoever ends up holding it, so that its Unlock() wakes one.
    while (word_.exchange(2, std::memory_order_acquire) != 0) Sleep();
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    if (word_.exchange(0, std::memory_order_release) == 2) WakeOne();
  }

 private:
  static constexpr int kSpins = 64;

  // Until the word may have changed from 2 (or at once if it already has).
  void Sleep() {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr,
            0);
#else
    std::this_thread::yield();
#endif
  }
  void WakeOne() {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
            0);
#endif
  }

  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
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
