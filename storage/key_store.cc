#include "storage/key_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "storage/secure_random.h"
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

absl::Status ValidatePlan(std::string_view plan) {
  if (plan.empty()) return absl::InvalidArgumentError("plan is empty");
  if (plan.size() > kMaxPlanNameSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan is ", plan.size(), " bytes, more than ", kMaxPlanNameSize));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabel(std::string_view label) {
  if (label.size() > kMaxLabelSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("label is ", label.size(), " bytes, more than ", kMaxLabelSize));
  }
  return absl::OkStatus();
}

absl::Status ValidateKeyId(std::string_view key_id) {
  if (!IsWellFormedKeyId(key_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key_id \"", absl::CHexEscape(std::string(key_id)), "\" is not 16 lowercase hex digits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ValidatePageRequest(int page_size, std::string_view page_token) {
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", page_size, " is outside [0, ", kMaxPageSize, "]"));
  }
  if (!page_token.empty() && !IsWellFormedKeyId(page_token)) {
    return absl::InvalidArgumentError("page_token is not one that ListKeys returned");
  }
  return page_size == 0 ? kDefaultPageSize : page_size;
}

absl::StatusOr<CreatedKey> NewKey(std::string_view plan, std::string_view label, absl::Time now) {
  if (absl::Status s = ValidatePlan(plan); !s.ok()) return s;
  if (absl::Status s = ValidateLabel(label); !s.ok()) return s;
  absl::StatusOr<std::string> random = SecureRandomBytes(kKeyRandomBytes);
  if (!random.ok()) return random.status();
  CreatedKey created;
  created.key = absl::StrCat(kKeyPrefix, absl::BytesToHexString(*random));
  KeyRecord& record = created.record;
  record.key_hash = Sha256(created.key);
  record.key_id = KeyIdOf(record.key_hash);
  record.plan = std::string(plan);
  record.label = std::string(label);
  record.masked_key = MaskKey(created.key);
  // Stored with microsecond precision: return what a later Get will read.
  record.created = absl::FromUnixMicros(absl::ToUnixMicros(now));
  return created;
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
