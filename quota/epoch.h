// Epoch-based reclamation for the engine's lock-free reads (internal to quota/).
//
// Readers of lock-free structures (the tenant table's slot arrays and tenants) hold an
// EpochGuard while they use pointers loaded from them. A writer that unlinks an object
// retires it with the epoch it read from CurrentEpoch() *after* unlinking, and frees it only
// once SafeToFree(epoch) is true: by then every thread that could still hold the pointer has
// left its guard. Process-wide: all engines share one epoch and one list of thread records.
//
// Thread safety: EpochGuard is per thread (nestable). TryAdvanceEpoch, CurrentEpoch and
// SafeToFree may be called from any thread.
//
// Why it is correct (Fraser's scheme): entering announces the global epoch E in the thread's
// record with a seq_cst store and re-reads the global epoch with a seq_cst load, re-announcing
// until the two agree. The epoch moves from E to E+1 (seq_cst CAS) only when every active
// record announces E (seq_cst loads). In the single total order of seq_cst operations, a
// reader either is seen by the reclaimer or sees the newer epoch. (No standalone fences:
// ThreadSanitizer does not model them.) So when the global epoch reaches e+2, every thread active
// at epoch e (which might have loaded a pointer unlinked before retirement at e) has since left its
// guard, and later entrants cannot reach the unlinked object.
#ifndef ANYAI_QUOTA_EPOCH_H_
#define ANYAI_QUOTA_EPOCH_H_

#include <cstdint>

namespace anyai::quota {

class EpochGuard {
 public:
  EpochGuard();
  ~EpochGuard();
  EpochGuard(const EpochGuard&) = delete;
  EpochGuard& operator=(const EpochGuard&) = delete;
};

uint64_t CurrentEpoch();
// Advances the global epoch if every thread inside a guard has seen the current one.
void TryAdvanceEpoch();
// True when an object retired at `retire_epoch` can no longer be reached by any reader.
bool SafeToFree(uint64_t retire_epoch);

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_EPOCH_H_
