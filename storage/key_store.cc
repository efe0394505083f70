#include "storage/key_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "storage/sha256.h"

namespace anyai::storage {
namespace {

constexpr absl::string_view kPrefix(kKeyPrefix, sizeof(kKeyPrefix) - 1);
// "…" (U+2026) in UTF-8.
constexpr absl::string_view kEllipsis("\xE2\x80\xA6", 3);

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

bool IsWellFormedKey(std::string_view key) {
  return key.size() == kKeySize && absl::string_view(key.data(), kPrefix.size()) == kPrefix &&
         IsLowerHex(key.substr(kPrefix.size()));
}

std::string KeyIdOf(std::string_view key_hash) {
  // A hash read back from a damaged index row may be shorter than 8 bytes: never read past it.
  key_hash = key_hash.substr(0, kKeyIdSize / 2);
  return absl::BytesToHexString(absl::string_view(key_hash.data(), key_hash.size()));
}

bool IsWellFormedKeyId(std::string_view key_id) {
  return key_id.size() == kKeyIdSize && IsLowerHex(key_id);
}

std::string MaskKey(std::string_view key) {
  if (!IsWellFormedKey(key)) return absl::StrCat(kPrefix, kEllipsis);
  const absl::string_view random(key.data() + kPrefix.size(), key.size() - kPrefix.size());
  return absl::StrCat(kPrefix, random.substr(0, 4), kEllipsis, random.substr(random.size() - 4));
}

absl::StatusOr<KeyRecord> Authenticate(KeyStore& store, std::string_view key) {
  const absl::Status invalid = absl::UnauthenticatedError("invalid API key");
  if (!IsWellFormedKey(key)) return invalid;
  const std::string hash = Sha256(key);
  absl::StatusOr<KeyRecord> record = store.Lookup(hash);
  if (absl::IsNotFound(record.status())) return invalid;
  if (!record.ok()) return record.status();
  if (!ConstantTimeEquals(record->key_hash, hash) || record->revoked) return invalid;
  return record;
}

}  // namespace anyai::storage
