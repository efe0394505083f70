// The engine's slow-path mutex (tenant insertion and eviction): std::mutex with Abseil's
// thread-safety annotations, so that clang's -Wthread-safety checks ABSL_GUARDED_BY uses.
// Why not absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, so TSan cannot see
// absl::Mutex's synchronization and reports false races in the TSan configuration, whereas it
// intercepts the pthread mutex under std::mutex. Thread-safe, as a mutex is.
#ifndef ANYAI_QUOTA_MUTEX_H_
#define ANYAI_QUOTA_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace anyai::quota {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_MUTEX_H_
