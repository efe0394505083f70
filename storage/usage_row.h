// The layout of the `usage` column family: one row per (tenant, feature class, sub-bucket),
// holding how many admissions the tenant had in that sub-bucket.
//
//   key   = tenant '\0' class_name '\0' bucket    bucket: 8 bytes, big-endian, >= 0
//   value = count                                  8 bytes, little-endian, unsigned
//
// The tenant comes first so that one tenant's rows are contiguous (UsageStore::Load is one
// prefix scan) and, within a tenant, ordered by class name and then by time. Neither a tenant
// nor a class name may contain '\0'. Values are only ever written as Merge operands that
// CounterAddOperator adds up. Tenants are opaque strings chosen by the server (for example
// `key:<key_id>` or `ip:203.0.113.7`).
//
// Thread safety: pure functions; safe from any number of threads.
#ifndef ANYAI_STORAGE_USAGE_ROW_H_
#define ANYAI_STORAGE_USAGE_ROW_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace anyai::storage {

inline constexpr size_t kMaxTenantSize = 1024;
inline constexpr size_t kCountSize = 8;

// OK for a non-empty tenant of at most kMaxTenantSize bytes without '\0'; INVALID_ARGUMENT
// otherwise.
absl::Status ValidateTenant(std::string_view tenant);

// The prefix every row of `tenant` starts with: tenant '\0'.
std::string UsageRowPrefix(std::string_view tenant);

// The row key; `bucket` must be >= 0 (the caller validates).
std::string EncodeUsageRowKey(std::string_view tenant, std::string_view class_name, int64_t bucket);

struct UsageRowKey {
  std::string_view tenant;  // views into the decoded key
  std::string_view class_name;
  int64_t bucket = 0;
};

// The parts of a row key, or nullopt if `key` does not have the layout above.
std::optional<UsageRowKey> DecodeUsageRowKey(std::string_view key);

std::string EncodeCount(uint64_t count);
// The count in a row value, or nullopt if it is not kCountSize bytes.
std::optional<uint64_t> DecodeCount(std::string_view value);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_ROW_H_
