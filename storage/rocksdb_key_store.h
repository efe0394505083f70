// The single-node KeyStore: key records in the `keys` column family of a Database.
//
// Rows (all in `keys`):
//   'h' key_hash (32 bytes)  -> record    primary row, read by Lookup (one point read per auth)
//   'i' key_id (16 hex)      -> key_hash  index for Get / Update / Revoke, and List's order
// Record value, a fixed little-endian binary layout (version 1):
//   u8  version (1)
//   u8  flags: bit 0 = revoked
//   i64 created, Unix microseconds
//   i64 revoked_at, Unix microseconds (0 when not revoked)
//   u16 length + bytes: plan
//   u16 length + bytes: label
//   u16 length + bytes: masked_key
// Later versions append fields; readers ignore bytes past the ones they know. A record that
// does not decode is reported as DATA_LOSS.
//
// Every write (Create, Update, Revoke) is one synced WriteBatch, whatever the Database's
// Durability: a key is on disk before the call returns. Random keys come from OpenSSL's
// RAND_bytes.
//
// Thread safety: thread-safe. Reads go straight to RocksDB, concurrently. Writes are
// read-modify-write, so a mutex serialises them (admin calls are rare): a concurrent Update
// can never undo a Revoke.
#ifndef ANYAI_STORAGE_ROCKSDB_KEY_STORE_H_
#define ANYAI_STORAGE_ROCKSDB_KEY_STORE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/database.h"
#include "storage/key_store.h"
#include "storage/write_stats.h"

namespace anyai::storage {

class RocksDbKeyStore final : public KeyStore {
 public:
  // `db` is borrowed and must outlive the store.
  static absl::StatusOr<std::unique_ptr<RocksDbKeyStore>> Open(Database& db);

  absl::StatusOr<CreatedKey> Create(std::string_view plan, std::string_view label,
                                    absl::Time now) override ABSL_LOCKS_EXCLUDED(write_mu_);
  absl::StatusOr<KeyRecord> Get(std::string_view key_id) override;
  absl::StatusOr<KeyPage> List(int page_size, std::string_view page_token) override;
  absl::StatusOr<KeyRecord> Update(std::string_view key_id, const KeyUpdate& update) override
      ABSL_LOCKS_EXCLUDED(write_mu_);
  absl::StatusOr<KeyRecord> Revoke(std::string_view key_id, absl::Time now) override
      ABSL_LOCKS_EXCLUDED(write_mu_);
  absl::StatusOr<KeyRecord> Lookup(std::string_view key_hash) override;

  // Counters of this store's writes (see write_stats.h).
  WriteStats write_stats() const { return write_meter_.Snapshot(); }

 private:
  explicit RocksDbKeyStore(Database& db) : db_(db) {}

  // Writes the record's primary row, and the key_id index row too if `with_index`.
  absl::Status WriteRecord(const KeyRecord& record, bool with_index);

  Database& db_;
  WriteMeter write_meter_;
  absl::Mutex write_mu_;
};

// A record value in the layout above, and back: the decoding that Lookup, Get and List apply
// to the bytes RocksDB returns (public for the fuzzers, fuzz/record_fuzzer.cc). DecodeKeyRecord
// fills key_hash and key_id from `key_hash`; DATA_LOSS for a value that does not decode.
std::string EncodeKeyRecord(const KeyRecord& record);
absl::StatusOr<KeyRecord> DecodeKeyRecord(std::string_view key_hash, std::string_view value);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_ROCKSDB_KEY_STORE_H_
