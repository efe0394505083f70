// The resident tenants of an engine: a sharded open-addressing hash table whose lookups take
// no lock (internal to quota/).
//
// Thread safety: Find() is lock-free and may run concurrently with everything; it must be
// called inside an EpochGuard, and the Tenant it returns stays valid until that guard ends.
// Insert(), EvictIf(), MakeRoom() and Reclaim() take a shard's mutex, one at a time (never a
// global one, never two at once, so they cannot deadlock; the callbacks of EvictIf() and
// MakeRoom() may take a tenant's Meters lock under it, and nothing takes a shard's mutex while
// holding a Meters lock). Readers see a shard's slot array through an acquire load of its
// pointer; writers fill a slot before publishing it with a release store. A slot holds the
// tenant's address and 16 bits of its hash, so that a probe reads only tenants whose tag
// matches; the tenant's block (and its first class's Meters in it) is prefetched as soon as
// its slot matches. A removed tenant, or a replaced slot array, is retired
// with the epoch at which it became unreachable and freed once SafeToFree() says no reader
// can hold it (see epoch.h). Until then an evicted tenant can be brought back by Insert(): a
// thread that found it just before the eviction may still be counting into it, and a copy
// restored from storage meanwhile could miss that count (over-admission). A tenant an open
// reservation pins (Tenant::pins) is never freed, evicted or not.
#ifndef ANYAI_QUOTA_TENANT_TABLE_H_
#define ANYAI_QUOTA_TENANT_TABLE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "quota/meters.h"
#include "quota/mutex.h"

namespace anyai::quota {

// One tenant's state: its Meters per feature class, created on first use. One allocation holds
// the tenant and the Meters of the class it was first used for (usually the only one it uses),
// so that a decision reads one block; other classes' Meters are added to a list.
struct Tenant {
  // `first_class` (-1: none) gets its Meters in the tenant's own block, laid out by `layout`.
  static std::unique_ptr<Tenant> Create(uint64_t hash, std::string_view id, int first_class,
                                        const MetersLayout* layout);
  ~Tenant();
  Tenant(const Tenant&) = delete;
  Tenant& operator=(const Tenant&) = delete;
  // Destroys the tenant and gives its block back to the arena (arena.h), whose size it keeps.
  static void operator delete(Tenant* p, std::destroying_delete_t);

  // The class's Meters, or null until the class is first used (see AddMeters).
  Meters* Find(int feature_class) const {
    if (feature_class == first_class_) return first_meters();
    for (const More* m = more_.load(std::memory_order_acquire); m != nullptr; m = m->next) {
      if (m->feature_class == feature_class) return m->meters();
    }
    return nullptr;
  }
  // The class's Meters, created (laid out by `layout`) if the class has none yet.
  Meters& AddMeters(int feature_class, const MetersLayout& layout);

  const uint64_t hash;
  const std::string id;
  // Last time (microseconds since the Unix epoch) the tenant was used, to within a second.
  std::atomic<int64_t> last_used_us{0};
  // Open reservations holding this tenant: while any, it is neither evicted nor freed, so that
  // their settlements land in the counters they reserved in.
  std::atomic<int32_t> pins{0};

 private:
  // Meters of a class other than the first, in a list published with release CASes.
  struct More {
    const More* next;
    int feature_class;
    Meters* meters() const {
      return std::launder(reinterpret_cast<Meters*>(const_cast<More*>(this) + 1));
    }
  };
  static_assert(sizeof(More) % 8 == 0);

  Tenant(uint64_t hash, std::string_view id, int first_class);
  Meters* first_meters() const {
    return std::launder(reinterpret_cast<Meters*>(const_cast<Tenant*>(this) + 1));
  }

  const int16_t first_class_;
  uint16_t block_words_ = 0;  // the block's size, in 8-byte words
  std::atomic<const More*> more_{nullptr};
  // Followed by the first class's Meters.
};

class TenantTable {
 public:
  explicit TenantTable(int shards);
  ~TenantTable();
  TenantTable(const TenantTable&) = delete;
  TenantTable& operator=(const TenantTable&) = delete;

  // Inside an EpochGuard. Null when the tenant is not resident.
  Tenant* Find(std::string_view id, uint64_t hash) const;
  // Inside an EpochGuard, after Find() missed and before loading the tenant from storage:
  // under the shard's mutex, the resident tenant, or the evicted one brought back, or null.
  // Null means no copy of the tenant can still be counting (any earlier one was freed, so
  // every admission counted in it has been recorded): a load that starts now is complete.
  Tenant* FindOrRevive(std::string_view id, uint64_t hash);
  // Inside an EpochGuard. Inserts `fresh` unless its id is already resident, or was evicted
  // so recently that a reader may still hold it (then that tenant comes back instead);
  // returns the resident tenant either way (`fresh` is dropped if it lost).
  Tenant* Insert(std::unique_ptr<Tenant> fresh);
  // Removes (and retires) every tenant for which `evict` returns true. Returns the count.
  size_t EvictIf(absl::FunctionRef<bool(Tenant&)> evict);
  // Evicts tenants until size() < `limit`, starting in the shard of `hash` and moving on to the
  // next shards when one has nothing to give. An approximate LRU (a clock hand per shard): from
  // the hand, up to kCandidates tenants for which `evictable` is true are looked at and the
  // least recently used of them goes; the hand moves past them. At most `budget` tenants are
  // looked at in all (and at most one lap of each shard's slots per eviction), so a table of
  // unevictable tenants costs a bounded search. Also frees what
  // was retired long enough ago in each shard it visits (see Reclaim). Returns whether
  // size() < `limit` at the end.
  static constexpr int kCandidates = 8;
  bool MakeRoom(size_t limit, uint64_t hash, size_t budget,
                absl::FunctionRef<bool(Tenant&)> evictable);
  // Frees what was retired long enough ago.
  void Reclaim();
  size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  struct Slots;
  struct Shard;

  Shard& ShardFor(uint64_t hash) const;
  size_t ShardIndex(uint64_t hash) const;

  const int shard_bits_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> size_{0};
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_TENANT_TABLE_H_
