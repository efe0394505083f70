// The layout of the `usage` column family: one row per (tenant, feature class, meter,
// sub-bucket), holding the net units of that meter the tenant was charged in that sub-bucket.
//
//   key   = tenant '\0' class_name '\0' [meter] bucket
//             meter:  1 byte, quota::Meter's value, present only for kTokens (1) and kSpend (2)
//             bucket: 8 bytes, big-endian, >= 0
//   value = count   8 bytes, little-endian, two's-complement int64 (may be negative)
//
// A kRequests row has no meter byte: it is exactly the layout every row had before meters
// existed, so a database written then reads unchanged (its rows are request counts) with no
// migration, and each (tenant, class, meter, bucket) has one key only. The other way round, a
// pre-meter binary does not decode a token or spend row (it expects '\0' nine bytes before the
// end and finds the meter byte), so it skips them on load and keeps them through compactions.
//
// A key is read front to back: the tenant ends at the first '\0', the class at the second
// (neither may contain '\0'), and what follows is either 8 bytes (a kRequests bucket) or 9 (a
// meter byte, then the bucket). Anything else does not decode, and neither does a 9-byte tail
// whose meter byte is 0 (kRequests has no meter byte) or a meter this version does not know:
// the store skips such rows on load and compactions keep them.
//
// The tenant comes first so that one tenant's rows are contiguous (UsageStore::Load is one
// prefix scan) and, within a tenant, ordered by class name, then meter (requests, tokens,
// spend: a request bucket's first byte is 0 for any bucket below 2^56, which covers every
// sub-bucket of microseconds since the epoch), then time. Values are only ever written as Merge
// operands that CounterAddOperator adds up; negative operands are refunds (quota/engine.h).
// Tenants are opaque strings chosen by the server (for example `key:<key_id>` or
// `ip:203.0.113.7`).
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
#include "quota/plan.h"

namespace anyai::storage {

inline constexpr size_t kMaxTenantSize = 1024;
inline constexpr size_t kCountSize = 8;

// OK for a non-empty tenant of at most kMaxTenantSize bytes without '\0'; INVALID_ARGUMENT
// otherwise.
absl::Status ValidateTenant(std::string_view tenant);

// Whether `meter` is one of quota::kMeters (an enum can hold any int).
bool IsKnownMeter(quota::Meter meter);

// The prefix every row of `tenant` starts with: tenant '\0'.
std::string UsageRowPrefix(std::string_view tenant);

// The row key. `meter` must be known and `bucket` >= 0 (the caller validates).
std::string EncodeUsageRowKey(std::string_view tenant, std::string_view class_name,
                              quota::Meter meter, int64_t bucket);

struct UsageRowKey {
  std::string_view tenant;  // views into the decoded key
  std::string_view class_name;
  quota::Meter meter = quota::Meter::kRequests;
  int64_t bucket = 0;
};

// The parts of a row key, or nullopt if `key` does not have the layout above.
std::optional<UsageRowKey> DecodeUsageRowKey(std::string_view key);

std::string EncodeCount(int64_t count);
// The count in a row value, or nullopt if it is not kCountSize bytes.
std::optional<int64_t> DecodeCount(std::string_view value);

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_ROW_H_
