// Where the engine's tenant blocks and hash-slot arrays live (internal to quota/): memory
// carved from 8 MiB regions aligned to 2 MiB that the kernel is asked to back with huge pages
// (madvise MADV_HUGEPAGE, honoured when transparent huge pages are "madvise" or "always"). At a
// million tenants their blocks and slots span a few hundred MB: with 4 KiB pages nearly every
// decision of a random tenant misses the TLB twice (under virtualization a miss walks two page
// tables), with 2 MiB pages the TLB covers all of it. Freed blocks go to a free list per size
// and are reused; regions are never given back to the system. The first two regions (16 MiB,
// some 80k tenants) stay in small pages, so that a small engine's memory grows as malloc's
// would. Requests above 1 MiB get regions of their own, unmapped when freed. Under
// AddressSanitizer or ThreadSanitizer everything goes to operator new, so that the sanitizers
// see every allocation.
//
// Thread safety: thread-safe (one mutex, taken only to allocate and free: a tenant's first use
// and its reclamation, never a decision on a resident tenant).
#ifndef ANYAI_QUOTA_ARENA_H_
#define ANYAI_QUOTA_ARENA_H_

#include <cstddef>

namespace anyai::quota {

// `bytes` rounded up to 8; the result is 8-aligned (16-aligned when bytes is a multiple of 16).
void* ArenaAllocate(size_t bytes);
// `bytes` as given to ArenaAllocate.
void ArenaFree(void* p, size_t bytes);

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_ARENA_H_
