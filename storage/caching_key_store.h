// A KeyStore in front of another (RocksDbKeyStore, or a shared registry in cluster mode) that
// answers Lookup — authentication, on every call — from memory, so that a call does not read
// storage to authenticate; every other method goes to the store.
//
//   absl::StatusOr<std::unique_ptr<CachingKeyStore>> keys =
//       CachingKeyStore::Create(*rocksdb_keys, {.max_staleness = absl::Seconds(1)});
//   Authenticate(**keys, bearer_token);
//
// Staleness bound. Let S = max_staleness and let the store apply a change (a revocation, a plan
// change, a new key, a deleted row) at time c of `clock`. Then:
//   - made through THIS object (Create, Update, Revoke): every Lookup that begins after the call
//     returns sees it, even when the call failed with an unknown outcome (the entries of its
//     key_id are dropped whatever the store answered);
//   - made elsewhere (another replica, a direct write to the store): every Lookup that begins at
//     or after c + S sees it. A Lookup that begins earlier may still answer the record as it was.
// This holds because an entry is served only while now - t < S, where t is the time, taken
// BEFORE the store was asked, of the read that filled it (so the read saw every change made
// before t), and because a read that began before a local invalidation of its shard is not
// cached. An entry whose t lies in the future (the clock stepped back) is not served. The bound
// is in `clock` time: the server's clock is absl::Now().
//
// What is cached. Found records (revoked ones too: callers check `revoked`) and NOT_FOUND, each
// in its own bounded table, so a flood of unknown keys cannot push out the known ones: NOT_FOUND
// is kept for at most `negative_capacity` hashes. A NOT_FOUND entry saves the read for a key
// presented again (a client with a mistyped key retrying); a key never seen before still costs
// one point read, which RocksDB answers from the keys family's Bloom filter. Create drops the
// NOT_FOUND entry of the new key's hash, so a key made on this node works at once. Errors
// (UNAVAILABLE, DATA_LOSS, INVALID_ARGUMENT) are never cached: the next Lookup asks again.
//
// Memory. At most `capacity` records and `negative_capacity` unknown hashes, over up to 64
// shards chosen by the hash (a SHA-256, so uniform); each shard evicts with CLOCK (an entry hit
// since the hand last passed survives one more turn). A record entry costs about 400 bytes with
// a short plan and label (its slot, its index entry and the heap blocks of its strings), so up
// to ≈ 400 MB at the default 1,000,000 once that many distinct keys have been used; an unknown
// hash about 90 bytes. Entries leave memory only by eviction, not when they go stale.
//
// Cost. A hit takes one shard's mutex as a reader (threads share a lock only when their keys
// fall in the same shard, and readers do not wait for each other) and allocates only the copy of
// the record it returns. A miss asks the store, then takes the shard's lock to insert.
//
// Thread safety: thread-safe; every method may be called concurrently. The store must be
// thread-safe (every KeyStore is) and outlive this object.
#ifndef ANYAI_STORAGE_CACHING_KEY_STORE_H_
#define ANYAI_STORAGE_CACHING_KEY_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/key_store.h"

namespace anyai::storage {

struct CachingKeyStoreOptions {
  // S above: how long a record read from the store may be served. 0: every Lookup reads the
  // store (nothing is served from memory). Negative: INVALID_ARGUMENT.
  absl::Duration max_staleness = absl::Seconds(1);
  // The most key records held (at least 1).
  int64_t capacity = 1'000'000;
  // The most NOT_FOUND answers held; 0: capacity / 8 (at least 1). Negative: INVALID_ARGUMENT.
  int64_t negative_capacity = 0;
  // The time of each Lookup; injected so that tests freeze and step it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class CachingKeyStore final : public KeyStore {
 public:
  // `store` is borrowed and must outlive the cache. INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<CachingKeyStore>> Create(
      KeyStore& store, CachingKeyStoreOptions options = {});
  ~CachingKeyStore() override;

  // To the store; then drops any NOT_FOUND entry of the new key's hash.
  absl::StatusOr<CreatedKey> Create(std::string_view plan, std::string_view label,
                                    absl::Time now) override;
  // To the store, uncached (admin calls).
  absl::StatusOr<KeyRecord> Get(std::string_view key_id) override;
  absl::StatusOr<KeyPage> List(int page_size, std::string_view page_token) override;
  // To the store; then drops the entries of `key_id`, whatever the store answered.
  absl::StatusOr<KeyRecord> Update(std::string_view key_id, const KeyUpdate& update) override;
  absl::StatusOr<KeyRecord> Revoke(std::string_view key_id, absl::Time now) override;
  // From memory while a fresh entry exists (see above), else from the store.
  absl::StatusOr<KeyRecord> Lookup(std::string_view key_hash) override;

  // Entries held now, for tests and gauges.
  struct Size {
    int64_t records = 0;
    int64_t unknown = 0;  // NOT_FOUND answers
  };
  Size size() const;

 private:
  struct Shard;
  CachingKeyStore(KeyStore& store, CachingKeyStoreOptions options);

  Shard& ShardOf(uint64_t id) const;
  // Drops both tables' entries of `id` and makes reads already under way in its shard not be
  // cached.
  void Invalidate(uint64_t id);
  void InvalidateKeyId(std::string_view key_id);

  KeyStore& store_;
  const CachingKeyStoreOptions options_;
  int shard_bits_ = 0;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_CACHING_KEY_STORE_H_
