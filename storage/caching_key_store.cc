#include "storage/caching_key_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"

namespace anyai::storage {
namespace {

constexpr size_t kHashSize = 32;  // SHA-256
constexpr int kMaxShardBits = 6;  // 64 shards

// The first 8 bytes of a hash, big-endian: the number whose hex is the key_id.
uint64_t IdOf(std::string_view bytes) {
  uint64_t id = 0;
  for (size_t i = 0; i < 8; ++i) id = (id << 8) | static_cast<uint8_t>(bytes[i]);
  return id;
}

// NOT_FOUND, remembered: nothing but the hash and when it was read.
struct Unknown {};

// A table of at most `capacity` entries, each a hash and a value read at some time, evicted by
// CLOCK. Indexed by the hash's first 8 bytes; an entry whose id matches but whose hash does not
// is a miss (and is replaced by the next Put of that id: two cached hashes sharing 64 bits is a
// 2^-40 event at a million entries, and costs only a read).
// Not thread-safe: its shard's mutex guards it; Find() may run under the mutex held shared.
template <typename Value>
class ClockTable {
 public:
  struct Slot {
    uint64_t id = 0;
    std::array<char, kHashSize> hash{};
    absl::Time fetched;  // before the store was asked
    // Set by hits, which hold the shard's mutex only shared, hence atomic; relaxed, since it is
    // a hint for the eviction hand, which reads and clears it with the mutex held exclusively
    // (the mutex orders those accesses).
    mutable std::atomic<bool> referenced{false};
    Value value{};
  };

  void set_capacity(size_t capacity) { capacity_ = capacity; }
  size_t size() const { return index_.size(); }

  const Slot* Find(uint64_t id, std::string_view hash) const {
    auto it = index_.find(id);
    if (it == index_.end()) return nullptr;
    const Slot& slot = slots_[it->second];
    if (std::memcmp(slot.hash.data(), hash.data(), kHashSize) != 0) return nullptr;
    if (!slot.referenced.load(std::memory_order_relaxed)) {
      slot.referenced.store(true, std::memory_order_relaxed);
    }
    return &slot;
  }

  void Put(uint64_t id, std::string_view hash, absl::Time fetched, Value value) {
    if (capacity_ == 0) return;
    uint32_t at = 0;
    if (auto it = index_.find(id); it != index_.end()) {
      at = it->second;
    } else {
      at = TakeSlot();
      index_.emplace(id, at);
    }
    Slot& slot = slots_[at];
    slot.id = id;
    std::memcpy(slot.hash.data(), hash.data(), kHashSize);
    slot.fetched = fetched;
    slot.referenced.store(false, std::memory_order_relaxed);
    slot.value = std::move(value);
  }

  void Erase(uint64_t id) {
    auto it = index_.find(id);
    if (it == index_.end()) return;
    slots_[it->second].value = Value{};  // frees its strings now
    free_.push_back(it->second);
    index_.erase(it);
  }

 private:
  // A slot for a new entry. Invariant: every slot is either in `index_` or in `free_`; so when
  // `free_` is empty and the table is full, the hand only meets live entries, and it stops
  // within two turns (its first turn clears every bit it passes).
  uint32_t TakeSlot() {
    if (!free_.empty()) {
      const uint32_t at = free_.back();
      free_.pop_back();
      return at;
    }
    if (slots_.size() < capacity_) {
      slots_.emplace_back();
      return static_cast<uint32_t>(slots_.size() - 1);
    }
    for (;;) {
      const uint32_t at = hand_;
      hand_ = (hand_ + 1) % static_cast<uint32_t>(slots_.size());
      Slot& slot = slots_[at];
      if (slot.referenced.exchange(false, std::memory_order_relaxed)) continue;
      index_.erase(slot.id);
      return at;
    }
  }

  size_t capacity_ = 0;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
  std::deque<Slot> slots_;  // a deque: slots hold an atomic, so they cannot move
  std::vector<uint32_t> free_;
  uint32_t hand_ = 0;
};

// `total` spread over `shards` parts that differ by at most one and add up to it.
size_t PartOf(int64_t total, size_t shards, size_t i) {
  const auto t = static_cast<size_t>(total);
  return t / shards + (i < t % shards ? 1 : 0);
}

}  // namespace

// On its own cache line, so that threads on different shards do not share one.
struct alignas(64) CachingKeyStore::Shard {
  mutable absl::Mutex mu;
  ClockTable<KeyRecord> records ABSL_GUARDED_BY(mu);
  ClockTable<Unknown> unknown ABSL_GUARDED_BY(mu);
  // Bumped by every invalidation: a read that began under an older generation is not cached,
  // since it may have seen the store before the change the invalidation is for.
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
};

absl::StatusOr<std::unique_ptr<CachingKeyStore>> CachingKeyStore::Create(
    KeyStore& store, CachingKeyStoreOptions options) {
  if (options.max_staleness < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("key cache: max_staleness is negative");
  }
  if (options.capacity < 1) {
    return absl::InvalidArgumentError("key cache: capacity must be at least 1");
  }
  if (options.negative_capacity < 0) {
    return absl::InvalidArgumentError("key cache: negative_capacity is negative");
  }
  if (options.negative_capacity == 0) {
    options.negative_capacity = std::max<int64_t>(1, options.capacity / 8);
  }
  if (!options.clock) options.clock = [] { return absl::Now(); };
  return std::unique_ptr<CachingKeyStore>(new CachingKeyStore(store, std::move(options)));
}

CachingKeyStore::CachingKeyStore(KeyStore& store, CachingKeyStoreOptions options)
    : store_(store), options_(std::move(options)) {
  // No more shards than records, so that every shard can hold at least one.
  while (shard_bits_ < kMaxShardBits && (int64_t{2} << shard_bits_) <= options_.capacity) {
    ++shard_bits_;
  }
  const size_t shards = size_t{1} << shard_bits_;
  shards_ = std::make_unique<Shard[]>(shards);
  for (size_t i = 0; i < shards; ++i) {
    Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    shard.records.set_capacity(PartOf(options_.capacity, shards, i));
    shard.unknown.set_capacity(PartOf(options_.negative_capacity, shards, i));
  }
}

CachingKeyStore::~CachingKeyStore() = default;

CachingKeyStore::Shard& CachingKeyStore::ShardOf(uint64_t id) const {
  return shards_[shard_bits_ == 0 ? 0 : id >> (64 - shard_bits_)];
}

void CachingKeyStore::Invalidate(uint64_t id) {
  Shard& shard = ShardOf(id);
  absl::MutexLock lock(&shard.mu);
  ++shard.generation;
  shard.records.Erase(id);
  shard.unknown.Erase(id);
}

void CachingKeyStore::InvalidateKeyId(std::string_view key_id) {
  // A malformed key_id names no key (the store refused it), so no entry has it.
  if (!IsWellFormedKeyId(key_id)) return;
  Invalidate(IdOf(absl::HexStringToBytes(absl::string_view(key_id.data(), key_id.size()))));
}

absl::StatusOr<CreatedKey> CachingKeyStore::Create(std::string_view plan, std::string_view label,
                                                   absl::Time now) {
  absl::StatusOr<CreatedKey> created = store_.Create(plan, label, now);
  // A failed Create has shown no key to anyone, so nothing can have looked it up.
  if (created.ok() && created->record.key_hash.size() == kHashSize) {
    Invalidate(IdOf(created->record.key_hash));
  }
  return created;
}

absl::StatusOr<KeyRecord> CachingKeyStore::Get(std::string_view key_id) {
  return store_.Get(key_id);
}

absl::StatusOr<KeyPage> CachingKeyStore::List(int page_size, std::string_view page_token) {
  return store_.List(page_size, page_token);
}

absl::StatusOr<KeyRecord> CachingKeyStore::Update(std::string_view key_id,
                                                  const KeyUpdate& update) {
  absl::StatusOr<KeyRecord> record = store_.Update(key_id, update);
  InvalidateKeyId(key_id);  // after the write: a read that began before it is not cached
  return record;
}

absl::StatusOr<KeyRecord> CachingKeyStore::Revoke(std::string_view key_id, absl::Time now) {
  absl::StatusOr<KeyRecord> record = store_.Revoke(key_id, now);
  InvalidateKeyId(key_id);
  return record;
}

absl::StatusOr<KeyRecord> CachingKeyStore::Lookup(std::string_view key_hash) {
  if (key_hash.size() != kHashSize) return store_.Lookup(key_hash);  // INVALID_ARGUMENT
  // No staleness allowed: nothing could ever be served from memory, so nothing is kept.
  if (options_.max_staleness == absl::ZeroDuration()) return store_.Lookup(key_hash);
  const uint64_t id = IdOf(key_hash);
  Shard& shard = ShardOf(id);
  // Taken before the store is asked: the read then reflects every change made before `now`.
  const absl::Time now = options_.clock();
  const auto fresh = [&](absl::Time fetched) {
    return fetched <= now && now - fetched < options_.max_staleness;
  };
  uint64_t generation = 0;
  {
    absl::ReaderMutexLock lock(&shard.mu);
    if (const auto* slot = shard.records.Find(id, key_hash); slot != nullptr) {
      if (fresh(slot->fetched)) return slot->value;
    } else if (const auto* unknown = shard.unknown.Find(id, key_hash);
               unknown != nullptr && fresh(unknown->fetched)) {
      return absl::NotFoundError("no key has this hash");
    }
    generation = shard.generation;
  }
  absl::StatusOr<KeyRecord> record = store_.Lookup(key_hash);
  const bool found = record.ok() && record->key_hash == key_hash;
  if (!found && !absl::IsNotFound(record.status())) return record;  // errors are not cached
  absl::MutexLock lock(&shard.mu);
  if (shard.generation != generation) return record;
  if (found) {
    shard.unknown.Erase(id);
    shard.records.Put(id, key_hash, now, *record);
  } else {
    shard.records.Erase(id);
    shard.unknown.Put(id, key_hash, now, Unknown{});
  }
  return record;
}

CachingKeyStore::Size CachingKeyStore::size() const {
  Size size;
  for (size_t i = 0; i < (size_t{1} << shard_bits_); ++i) {
    const Shard& shard = shards_[i];
    absl::ReaderMutexLock lock(&shard.mu);
    size.records += static_cast<int64_t>(shard.records.size());
    size.unknown += static_cast<int64_t>(shard.unknown.size());
  }
  return size;
}

}  // namespace anyai::storage
