// The cluster mode's KeyStore (SPEC §9): key records in one PostgreSQL table shared by every
// replica, with the same contract as RocksDbKeyStore (key_store.h: same key format, hash, key_id,
// validation and messages, List in key_id order with the last key_id as page token).
//
//   auto pool = PostgresPool::Create({.dsn = dsn, .what = "key registry"});
//   auto keys = PostgresKeyStore::Open(**pool);   // creates the table if missing
//   auto cached = CachingKeyStore::Create(**keys, {.max_staleness = key_cache_ttl});
//
// Table (created at Open if missing, and again by the first call after a failed Open):
//   anyai_keys(key_hash bytea PRIMARY KEY,        SHA-256 of the clear key (32 bytes)
//              key_id text COLLATE "C" UNIQUE,    KeyIdOf(key_hash); List's order
//              plan bytea, label bytea, masked_key bytea,   bytes as given (no encoding rules)
//              created_us bigint, revoked boolean, revoked_at_us bigint)   Unix microseconds
// Every statement is parameterised and is one implicit transaction: Create, Update and Revoke
// return once PostgreSQL has committed them (with the default synchronous_commit=on, once its
// WAL is flushed), so an acknowledged key survives a crash of PostgreSQL. Create inserts with ON
// CONFLICT DO NOTHING and regenerates on a taken key_id; Update and Revoke are single UPDATEs, so
// concurrent writers from any replica cannot lose each other's changes (a revocation keeps its
// first time; an Update never un-revokes).
//
// Failures (PostgreSQL down, a statement failing, the pool busy) are UNAVAILABLE saying the key
// registry is unavailable, without DSN, host or user (logged instead, postgres_connection.h);
// the server's storage-failure policy applies to them (fail closed: 503/UNAVAILABLE for calls
// whose key is not cached). The pool reconnects by itself: once PostgreSQL is back the next call
// works, without a restart. Open does not fail when PostgreSQL is down (the server starts and
// heals); it fails only for a schema it cannot use.
//
// Staleness. This store has no cache: every call reads PostgreSQL. In the server a
// CachingKeyStore in front of it answers Lookup from memory for up to key_cache_ttl, which is the
// staleness bound of key records per replica: a plan change or revocation made through another
// replica is seen by every Lookup that begins key_cache_ttl after PostgreSQL committed it; one
// made through this replica at once (caching_key_store.h).
//
// Thread safety: thread-safe; every method may be called concurrently (the pool is).
#ifndef ANYAI_STORAGE_POSTGRES_KEY_STORE_H_
#define ANYAI_STORAGE_POSTGRES_KEY_STORE_H_

#include <atomic>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/key_store.h"
#include "storage/postgres_connection.h"

namespace anyai::storage {

class PostgresKeyStore final : public KeyStore {
 public:
  // `pool` is borrowed and must outlive the store. Tries to create the table; if PostgreSQL is
  // unreachable the store is returned anyway and every call tries again first.
  static absl::StatusOr<std::unique_ptr<PostgresKeyStore>> Open(PostgresPool& pool);

  absl::StatusOr<CreatedKey> Create(std::string_view plan, std::string_view label,
                                    absl::Time now) override;
  absl::StatusOr<KeyRecord> Get(std::string_view key_id) override;
  absl::StatusOr<KeyPage> List(int page_size, std::string_view page_token) override;
  absl::StatusOr<KeyRecord> Update(std::string_view key_id, const KeyUpdate& update) override;
  absl::StatusOr<KeyRecord> Revoke(std::string_view key_id, absl::Time now) override;
  absl::StatusOr<KeyRecord> Lookup(std::string_view key_hash) override;

 private:
  explicit PostgresKeyStore(PostgresPool& pool) : pool_(pool) {}
  // Creates the table unless that already succeeded once.
  absl::Status EnsureSchema();
  absl::StatusOr<KeyRecord> OneByKeyId(std::string_view sql, const std::vector<PgParam>& params,
                                       std::string_view key_id);

  PostgresPool& pool_;
  std::atomic<bool> schema_ready_{false};
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_POSTGRES_KEY_STORE_H_
