// API keys (SPEC §3): the KeyStore interface that the Admin service (create, get, list, update,
// revoke) and authentication (Lookup) use, and the rules every implementation shares: the key
// format, key ids, masking, and Authenticate().
//
// A key is "sk-anyai-" followed by 64 lowercase hex digits: 32 bytes (256 bits) from the
// kernel's CSPRNG. The store keeps only SHA-256(key): Create() returns the clear key once and
// it cannot be recovered afterwards. Its key_id, the hex of the first 8 bytes of that hash, is
// public and non-secret: it names the key in admin calls, logs and tenants (`key:<key_id>`),
// and, being derived from a one-way hash, says nothing usable about the key.
//
//   absl::StatusOr<CreatedKey> created = store.Create("premium", "ci bot", absl::Now());
//   show_once(created->key);
//   absl::StatusOr<KeyRecord> record = Authenticate(store, bearer_token);  // on each request
//
// Implementations: RocksDbKeyStore (rocksdb_key_store.h), the single-node default, and
// PostgresKeyStore (postgres_key_store.h), the shared registry of cluster mode. Both use the
// validation and key generation below, so they accept and produce exactly the same things.
// Thread safety: every implementation is thread-safe; all methods may be called concurrently.
#ifndef ANYAI_STORAGE_KEY_STORE_H_
#define ANYAI_STORAGE_KEY_STORE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace anyai::storage {

inline constexpr char kKeyPrefix[] = "sk-anyai-";
inline constexpr size_t kKeyRandomBytes = 32;
// 73 characters: the prefix and two hex digits per random byte.
inline constexpr size_t kKeySize = sizeof(kKeyPrefix) - 1 + 2 * kKeyRandomBytes;
inline constexpr size_t kKeyIdSize = 16;         // hex digits
inline constexpr size_t kMaxPlanNameSize = 255;  // bytes
inline constexpr size_t kMaxLabelSize = 1024;    // bytes
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

struct KeyRecord {
  std::string key_hash;    // SHA-256 of the clear key: 32 raw bytes
  std::string key_id;      // KeyIdOf(key_hash): 16 lowercase hex digits
  std::string plan;        // plan name, e.g. "free" or "premium"
  std::string label;       // free text chosen by the admin; may be empty
  std::string masked_key;  // MaskKey(key), e.g. "sk-anyai-3f9a…c01d"
  absl::Time created;
  bool revoked = false;
  absl::Time revoked_at = absl::InfinitePast();  // set when revoked

  friend bool operator==(const KeyRecord&, const KeyRecord&) = default;
};

// The result of Create(): the clear key, which no later call can return, and its record.
struct CreatedKey {
  std::string key;
  KeyRecord record;
};

struct KeyPage {
  std::vector<KeyRecord> keys;  // in key_id order
  std::string next_page_token;  // empty on the last page
};

// Fields to change; absent ones are kept.
struct KeyUpdate {
  std::optional<std::string> plan = std::nullopt;
  std::optional<std::string> label = std::nullopt;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Generates a new key for `plan` (non-empty, at most kMaxPlanNameSize bytes; whether the
  // plan exists is the caller's business) with `label` (at most kMaxLabelSize bytes), writes
  // its record durably (synced to disk) and only then returns it. INVALID_ARGUMENT for a bad
  // plan or label.
  virtual absl::StatusOr<CreatedKey> Create(std::string_view plan, std::string_view label,
                                            absl::Time now) = 0;

  // The record of a key_id, revoked or not. INVALID_ARGUMENT if `key_id` is not 16 lowercase
  // hex digits; NOT_FOUND if no key has it.
  virtual absl::StatusOr<KeyRecord> Get(std::string_view key_id) = 0;

  // Up to `page_size` records (0 means kDefaultPageSize; at most kMaxPageSize) in key_id
  // order, starting after `page_token` (empty for the first page; otherwise a
  // next_page_token from an earlier call, opaque to callers). Revoked keys are included.
  // INVALID_ARGUMENT for a bad page size or token.
  virtual absl::StatusOr<KeyPage> List(int page_size, std::string_view page_token) = 0;

  // Changes plan and/or label, durably; returns the new record. Errors as Get, and
  // INVALID_ARGUMENT for a bad plan or label. A revoked key may still be updated (it stays
  // revoked).
  virtual absl::StatusOr<KeyRecord> Update(std::string_view key_id, const KeyUpdate& update) = 0;

  // Marks the key revoked at `now`, durably; revoking a revoked key changes nothing (it keeps
  // its first revocation time). Returns the record. Errors as Get.
  virtual absl::StatusOr<KeyRecord> Revoke(std::string_view key_id, absl::Time now) = 0;

  // The record whose key_hash is `key_hash` (32 bytes), for authentication: one point lookup.
  // Returns revoked records too: callers must check `revoked` (Authenticate() does).
  // NOT_FOUND if no key has this hash; INVALID_ARGUMENT if it is not 32 bytes.
  virtual absl::StatusOr<KeyRecord> Lookup(std::string_view key_hash) = 0;
};

// Whether `key` has the shape of a key Create() makes.
bool IsWellFormedKey(std::string_view key);

// The key_id of a key hash: lowercase hex of its first 8 bytes (of all of it if shorter, which
// only a damaged row can hold).
std::string KeyIdOf(std::string_view key_hash);

// Whether `key_id` is 16 lowercase hex digits.
bool IsWellFormedKeyId(std::string_view key_id);

// The form /check and the Admin service show: the prefix, then the first 4 and last 4 hex
// digits of the random part, e.g. "sk-anyai-3f9a…c01d" (32 of the 256 random bits: enough to
// tell keys apart, far too few to guess one). A string that is not a well-formed key is
// masked to "sk-anyai-…".
std::string MaskKey(std::string_view key);

// The argument checks every KeyStore applies, with the same INVALID_ARGUMENT messages: a plan is
// non-empty and at most kMaxPlanNameSize bytes; a label at most kMaxLabelSize bytes; a key_id
// IsWellFormedKeyId.
absl::Status ValidatePlan(std::string_view plan);
absl::Status ValidateLabel(std::string_view label);
absl::Status ValidateKeyId(std::string_view key_id);
// List()'s arguments: `page_size` in [0, kMaxPageSize] (0 becomes kDefaultPageSize) and a
// page_token that is empty or a key_id (the last key_id of the previous page). Returns the page
// size to use.
absl::StatusOr<int> ValidatePageRequest(int page_size, std::string_view page_token);

// A fresh key for Create(): the clear key from the kernel's CSPRNG and its record (hash, key_id,
// masked key, `created` truncated to microseconds as stored, not revoked). Validates plan and
// label first. UNAVAILABLE-free: only INVALID_ARGUMENT, or INTERNAL if randomness fails.
absl::StatusOr<CreatedKey> NewKey(std::string_view plan, std::string_view label, absl::Time now);
// How many times Create() generates a key whose key_id is taken before it gives up: with 64-bit
// ids this essentially never happens, but it must never overwrite another key.
inline constexpr int kCreateAttempts = 4;

// Checks a key presented by a client: UNAUTHENTICATED (with the same message whatever the
// reason, so a caller learns nothing from it) if it is malformed, unknown or revoked; the
// store's own error (UNAVAILABLE) if storage fails, so that the server applies its
// fail-closed/fail-open policy rather than a 401. The stored hash is compared with the
// presented key's hash in constant time.
absl::StatusOr<KeyRecord> Authenticate(KeyStore& store, std::string_view key);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_KEY_STORE_H_
