#include "quota/tenant_table.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <new>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "quota/arena.h"
#include "quota/epoch.h"

namespace anyai::quota {
namespace {

// A slot holds a tenant's address with 16 bits of its hash in the top bits (user-space
// addresses on x86-64 and AArch64 fit in 48 bits), so that a probe dereferences only tenants
// whose tag matches: one cache miss for the slot, one for the tenant.
constexpr int kTagShift = 48;
constexpr uintptr_t kAddressMask = (uintptr_t{1} << kTagShift) - 1;
uintptr_t TagOf(uint64_t hash) {
  return static_cast<uintptr_t>((hash >> 32) & 0xffff) << kTagShift;
}
uintptr_t Entry(Tenant* t) {
  const auto address = reinterpret_cast<uintptr_t>(t);
  if ((address & ~kAddressMask) != 0) std::abort();  // never on the platforms above
  return address | TagOf(t->hash);
}
Tenant* TenantOf(uintptr_t entry) { return reinterpret_cast<Tenant*>(entry & kAddressMask); }
// Marks a slot whose tenant was removed: probes continue past it; inserts may reuse it.
constexpr uintptr_t kTombstone = 1;
constexpr uintptr_t kEmpty = 0;
constexpr size_t kInitialCapacity = 16;
// How many retired or evicted entries a shard gathers before MakeRoom() sweeps them.
constexpr size_t kReclaimBatch = 16;

}  // namespace

Tenant::Tenant(uint64_t hash, std::string_view id, int first_class)
    : hash(hash), id(id), first_class_(static_cast<int16_t>(first_class)) {}

std::unique_ptr<Tenant> Tenant::Create(uint64_t hash, std::string_view id, int first_class,
                                       const MetersLayout* layout) {
  static_assert(sizeof(Tenant) % 8 == 0);
  if (layout == nullptr) first_class = -1;
  const size_t bytes = sizeof(Tenant) + (layout != nullptr ? layout->bytes : 0);
  void* at = ArenaAllocate(bytes);
  Tenant* t;
  try {
    t = new (at) Tenant(hash, id, first_class);
  } catch (...) {
    ArenaFree(at, bytes);
    throw;
  }
  t->block_words_ = static_cast<uint16_t>(bytes / 8);
  if (layout != nullptr) Meters::Init(t + 1, *layout);
  return std::unique_ptr<Tenant>(t);
}

void Tenant::operator delete(Tenant* p, std::destroying_delete_t) {
  const size_t bytes = size_t{p->block_words_} * 8;
  p->~Tenant();
  ArenaFree(p, bytes);
}

Tenant::~Tenant() {
  if (first_class_ >= 0) first_meters()->Destroy();
  for (const More* m = more_.load(std::memory_order_relaxed); m != nullptr;) {
    const More* next = m->next;
    m->meters()->Destroy();
    m->~More();
    ::operator delete(const_cast<More*>(m));
    m = next;
  }
}

Meters& Tenant::AddMeters(int feature_class, const MetersLayout& layout) {
  if (Meters* m = Find(feature_class)) return *m;
  void* at = ::operator new(sizeof(More) + layout.bytes);
  More* fresh = new (at) More{.next = nullptr, .feature_class = feature_class};
  Meters::Init(fresh + 1, layout);
  const More* head = more_.load(std::memory_order_acquire);
  for (;;) {
    for (const More* m = head; m != nullptr; m = m->next) {
      if (m->feature_class == feature_class) {  // another thread published first
        fresh->meters()->Destroy();
        ::operator delete(at);
        return *m->meters();
      }
    }
    fresh->next = head;
    if (more_.compare_exchange_weak(head, fresh, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return *fresh->meters();
    }
  }
}

struct TenantTable::Slots {
  explicit Slots(size_t capacity)
      : mask(capacity - 1),
        entries(static_cast<std::atomic<uintptr_t>*>(
            ArenaAllocate(capacity * sizeof(std::atomic<uintptr_t>)))) {
    for (size_t i = 0; i < capacity; ++i) new (&entries[i]) std::atomic<uintptr_t>(kEmpty);
  }
  ~Slots() { ArenaFree(entries, (mask + 1) * sizeof(std::atomic<uintptr_t>)); }
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;
  const size_t mask;
  std::atomic<uintptr_t>* const entries;  // in the arena (arena.h)
};

struct TenantTable::Shard {
  struct Retired {
    uint64_t epoch;
    std::unique_ptr<Tenant> tenant;
    std::unique_ptr<Slots> slots;
  };

  Mutex mu;
  std::atomic<Slots*> slots{nullptr};
  size_t live ABSL_GUARDED_BY(mu) = 0;
  size_t tombstones ABSL_GUARDED_BY(mu) = 0;
  std::vector<Retired> retired ABSL_GUARDED_BY(mu);
  // MakeRoom()'s clock hand: the next slot it looks at (taken modulo the array's size).
  size_t hand ABSL_GUARDED_BY(mu) = 0;
  // ReclaimSome() sweeps once `evicted` and `retired` hold this many entries.
  size_t reclaim_at ABSL_GUARDED_BY(mu) = kReclaimBatch;
  // Evicted tenants not yet freed, by id: a thread may still be deciding on one (inside its
  // EpochGuard, until its admission is recorded by the sink), so a new copy restored from
  // storage could miss that admission. Insert() therefore brings such a tenant back instead.
  absl::flat_hash_map<std::string, Retired> evicted ABSL_GUARDED_BY(mu);

  ~Shard() {
    Slots* s = slots.load(std::memory_order_relaxed);
    if (s == nullptr) return;
    for (size_t i = 0; i <= s->mask; ++i) {
      const uintptr_t e = s->entries[i].load(std::memory_order_relaxed);
      if (e != kEmpty && e != kTombstone) delete TenantOf(e);
    }
    delete s;
  }

  // Puts a tenant that is not resident into the table; returns it.
  Tenant* Place(std::unique_ptr<Tenant> tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Slots* s = slots.load(std::memory_order_relaxed);
    // A load of at most 3/4 (linear probing stays short there, and the array's 8 bytes per
    // slot are a fair share of a tenant's memory).
    if (s == nullptr || 4 * (live + tombstones + 1) > 3 * (s->mask + 1)) {
      Grow();
      s = slots.load(std::memory_order_relaxed);
    }
    size_t i = tenant->hash & s->mask;
    for (;; i = (i + 1) & s->mask) {
      const uintptr_t e = s->entries[i].load(std::memory_order_relaxed);
      if (e == kEmpty || e == kTombstone) {
        if (e == kTombstone) --tombstones;
        break;
      }
    }
    Tenant* placed = tenant.release();
    s->entries[i].store(Entry(placed), std::memory_order_release);
    ++live;
    return placed;
  }

  // Unlinks the tenant at slot `i` of `s` (the current array) and keeps it among the evicted.
  // The caller lowers the table's size.
  void Evict(Slots& s, size_t i, Tenant* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    // seq_cst: visible to every thread before the epoch it is retired with is read (epoch.h).
    s.entries[i].store(kTombstone, std::memory_order_seq_cst);
    --live;
    ++tombstones;
    // At most one evicted copy per id (Insert brings it back before a new copy can exist);
    // should one be there all the same, it is retired, never freed early.
    if (auto it = evicted.find(t->id); it != evicted.end()) {
      retired.push_back(std::move(it->second));
      evicted.erase(it);
    }
    evicted.emplace(t->id, Retired{CurrentEpoch(), std::unique_ptr<Tenant>(t), nullptr});
  }

  // Frees what was retired or evicted long enough ago. Once SafeToFree, no thread can newly
  // reach a retired tenant, so a pin count of zero stays zero; an evicted one is reachable only
  // through `evicted`, under this mutex.
  void ReclaimAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const auto freeable = [](const Retired& r) {
      return SafeToFree(r.epoch) &&
             (r.tenant == nullptr || r.tenant->pins.load(std::memory_order_acquire) == 0);
    };
    std::erase_if(retired, freeable);
    absl::erase_if(evicted, [&](const auto& e) { return freeable(e.second); });
    // A flat_hash_map keeps its capacity when emptied: after a large eviction give it back, so
    // that later sweeps of a small map are cheap.
    if (evicted.capacity() > 64 && evicted.size() * 8 < evicted.capacity()) evicted.rehash(0);
    // What could not be freed yet (an epoch held back by a reader still inside a decision, a
    // pin) waits for twice as many before the next sweep, so that sweeps stay amortized O(1).
    reclaim_at = std::max(kReclaimBatch, 2 * (evicted.size() + retired.size()));
  }

  // ReclaimAll() once enough has piled up since the last sweep: MakeRoom() calls it for every
  // eviction, and a sweep of `evicted` costs its capacity.
  void ReclaimSome() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (evicted.size() + retired.size() >= reclaim_at) ReclaimAll();
  }

  // Rebuilds the slot array with room for `live + 1` at a load of at most 1/2, so that, when
  // the rebuild only clears tombstones (evictions balancing inserts at a cap), at least
  // (live + 1) / 4 more fit before the next one and its cost is spread over as many inserts.
  // Frees the arrays earlier rebuilds retired once no reader can hold them, so that a growing
  // table does not keep every smaller copy of itself until the next sweep.
  void Grow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Slots* old = slots.load(std::memory_order_relaxed);
    size_t capacity = kInitialCapacity;
    while (capacity < 2 * (live + 1)) capacity *= 2;
    auto fresh = std::make_unique<Slots>(capacity);
    if (old != nullptr) {
      for (size_t i = 0; i <= old->mask; ++i) {
        const uintptr_t e = old->entries[i].load(std::memory_order_relaxed);
        if (e == kEmpty || e == kTombstone) continue;
        size_t j = TenantOf(e)->hash & fresh->mask;
        while (fresh->entries[j].load(std::memory_order_relaxed) != kEmpty) {
          j = (j + 1) & fresh->mask;
        }
        fresh->entries[j].store(e, std::memory_order_relaxed);
      }
    }
    // seq_cst: the old array is unlinked before the epoch it is retired with is read (epoch.h).
    slots.store(fresh.release(), std::memory_order_seq_cst);
    tombstones = 0;
    TryAdvanceEpoch();
    std::erase_if(retired,
                  [](const Retired& r) { return r.tenant == nullptr && SafeToFree(r.epoch); });
    if (old != nullptr) retired.push_back({CurrentEpoch(), nullptr, std::unique_ptr<Slots>(old)});
  }
};

TenantTable::TenantTable(int shards)
    : shard_bits_(std::bit_width(std::bit_ceil(static_cast<unsigned>(std::max(shards, 1)))) - 1),
      shards_(new Shard[size_t{1} << shard_bits_]) {}

TenantTable::~TenantTable() = default;

size_t TenantTable::ShardIndex(uint64_t hash) const {
  return shard_bits_ == 0 ? 0 : hash >> (64 - shard_bits_);
}

TenantTable::Shard& TenantTable::ShardFor(uint64_t hash) const { return shards_[ShardIndex(hash)]; }

Tenant* TenantTable::Find(std::string_view id, uint64_t hash) const {
  const Slots* s = ShardFor(hash).slots.load(std::memory_order_acquire);
  if (s == nullptr) return nullptr;
  const uintptr_t tag = TagOf(hash);
  for (size_t i = hash & s->mask;; i = (i + 1) & s->mask) {
    const uintptr_t e = s->entries[i].load(std::memory_order_acquire);
    if (e == kEmpty) return nullptr;
    if ((e & ~kAddressMask) != tag || e == kTombstone) continue;
    Tenant* t = TenantOf(e);
    // The tenant's block (its first class's Meters follow it): fetch its lines at once rather
    // than one after the other as the decision reaches them.
    for (int line = 1; line < 4; ++line) {
      __builtin_prefetch(reinterpret_cast<const char*>(t) + 64 * line, 1);
    }
    if (t->hash == hash && t->id == id) return t;
  }
}

Tenant* TenantTable::FindOrRevive(std::string_view id, uint64_t hash) {
  Shard& shard = ShardFor(hash);
  MutexLock lock(&shard.mu);
  if (Tenant* existing = Find(id, hash)) return existing;
  auto it = shard.evicted.find(std::string(id));
  if (it == shard.evicted.end()) return nullptr;
  std::unique_ptr<Tenant> revived = std::move(it->second.tenant);
  shard.evicted.erase(it);
  size_.fetch_add(1, std::memory_order_relaxed);
  return shard.Place(std::move(revived));
}

Tenant* TenantTable::Insert(std::unique_ptr<Tenant> fresh) {
  Shard& shard = ShardFor(fresh->hash);
  MutexLock lock(&shard.mu);
  if (Tenant* existing = Find(fresh->id, fresh->hash)) return existing;
  if (auto it = shard.evicted.find(fresh->id); it != shard.evicted.end()) {
    fresh = std::move(it->second.tenant);  // the evicted copy has every count; `fresh` is dropped
    shard.evicted.erase(it);
  }
  size_.fetch_add(1, std::memory_order_relaxed);
  return shard.Place(std::move(fresh));
}

size_t TenantTable::EvictIf(absl::FunctionRef<bool(Tenant&)> evict) {
  size_t evicted = 0;
  for (size_t n = 0; n < (size_t{1} << shard_bits_); ++n) {
    Shard& shard = shards_[n];
    MutexLock lock(&shard.mu);
    Slots* s = shard.slots.load(std::memory_order_relaxed);
    if (s == nullptr) continue;
    for (size_t i = 0; i <= s->mask; ++i) {
      const uintptr_t e = s->entries[i].load(std::memory_order_relaxed);
      if (e == kEmpty || e == kTombstone) continue;
      Tenant* t = TenantOf(e);
      if (!evict(*t)) continue;
      shard.Evict(*s, i, t);
      ++evicted;
      size_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  return evicted;
}

bool TenantTable::MakeRoom(size_t limit, uint64_t hash, size_t budget,
                           absl::FunctionRef<bool(Tenant&)> evictable) {
  // A step of the epoch (at most one a millisecond), so that what earlier calls evicted becomes
  // free to reclaim while a flood of new tenants goes on between two EvictIdle() runs.
  TryAdvanceEpochThrottled();
  const size_t shards = size_t{1} << shard_bits_;
  const size_t first = ShardIndex(hash);
  size_t looked = 0;
  for (size_t n = 0; n < shards && size() >= limit && looked < budget; ++n) {
    Shard& shard = shards_[(first + n) & (shards - 1)];
    MutexLock lock(&shard.mu);
    while (size() >= limit && looked < budget) {
      Slots* s = shard.slots.load(std::memory_order_relaxed);
      if (s == nullptr || shard.live == 0) break;
      // From the hand, the first kCandidates evictable tenants (at most one lap): the least
      // recently used of them goes. last_used_us is touched at most once a second, so ties
      // among the newest are broken by the hand's order.
      size_t victim = 0;
      Tenant* oldest = nullptr;
      int64_t oldest_us = 0;
      int found = 0;
      for (size_t lap = 0; lap <= s->mask && found < kCandidates && looked < budget; ++lap) {
        const size_t i = shard.hand++ & s->mask;
        const uintptr_t e = s->entries[i].load(std::memory_order_relaxed);
        if (e == kEmpty || e == kTombstone) continue;
        Tenant* t = TenantOf(e);
        ++looked;
        if (!evictable(*t)) continue;
        ++found;
        const int64_t used = t->last_used_us.load(std::memory_order_relaxed);
        if (oldest == nullptr || used < oldest_us) {
          victim = i;
          oldest = t;
          oldest_us = used;
        }
      }
      if (oldest == nullptr) break;  // nothing this shard can give: the next one
      shard.Evict(*s, victim, oldest);
      size_.fetch_sub(1, std::memory_order_relaxed);
    }
    shard.ReclaimSome();
  }
  return size() < limit;
}

void TenantTable::Reclaim() {
  TryAdvanceEpoch();
  for (size_t n = 0; n < (size_t{1} << shard_bits_); ++n) {
    Shard& shard = shards_[n];
    MutexLock lock(&shard.mu);
    shard.ReclaimAll();
  }
}

}  // namespace anyai::quota
