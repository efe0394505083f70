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
// Why it is correct (Fraser's scheme). A writer unlinks with a seq_cst store, so the unlink is
// visible to every thread before it reads the epoch r it retires with. Entering announces the
// global epoch E in the thread's record and re-reads the global epoch, re-announcing until the
// two agree; the announcement is ordered before every load the guard covers. The epoch moves
// from E to E+1 (seq_cst CAS) only when every active record announces E. Take the advance from
// r+1 to r+2 and a reader that still holds a pointer loaded before the unlink: its last epoch
// read came before that load, so before the unlink was visible, so before the epoch became r+1:
// it announces at most r. The advance sees that announcement, and refuses, in either of two ways:
//   - Linux (the default): before it looks, the reclaimer calls membarrier(2)
//     (MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every running thread of the process
//     execute a full barrier, so the announcement, made before the reader's load and so before
//     the barrier, is visible to the look after it. Readers then need no fence of their own:
//     entering is a plain store and a load, a compiler barrier between (liburcu's "memb"
//     flavour does the same).
//   - Elsewhere, and under ThreadSanitizer (which does not model membarrier): a seq_cst store
//     then a seq_cst load, a Dekker pair with the reclaimer's seq_cst loads of the records.
// So when the global epoch reaches r+2, no thread can hold what was retired at r.
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
// The same, but where advancing costs a membarrier(2) (see below), at most once a millisecond
// in the process: for a path taken per call (a tenant's first use at the resident cap).
void TryAdvanceEpochThrottled();
// True when an object retired at `retire_epoch` can no longer be reached by any reader.
bool SafeToFree(uint64_t retire_epoch);
// Whether readers skip their fence (the membarrier(2) way above): for tests and logs.
bool EpochReadersFenceFree();

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_EPOCH_H_
