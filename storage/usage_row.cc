#include "storage/usage_row.h"

#include "absl/strings/str_cat.h"

namespace anyai::storage {
namespace {

constexpr size_t kBucketSize = 8;
constexpr size_t kMeterSize = 1;

}  // namespace

absl::Status ValidateTenant(std::string_view tenant) {
  if (tenant.empty()) return absl::InvalidArgumentError("tenant is empty");
  if (tenant.size() > kMaxTenantSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant is ", tenant.size(), " bytes, more than ", kMaxTenantSize));
  }
  if (tenant.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("tenant contains a NUL byte");
  }
  return absl::OkStatus();
}

bool IsKnownMeter(quota::Meter meter) {
  const int value = static_cast<int>(meter);
  return value >= 0 && value < quota::kMeterCount;
}

std::string UsageRowPrefix(std::string_view tenant) {
  std::string prefix(tenant);
  prefix.push_back('\0');
  return prefix;
}

std::string EncodeUsageRowKey(std::string_view tenant, std::string_view class_name,
                              quota::Meter meter, int64_t bucket) {
  std::string key;
  key.reserve(tenant.size() + class_name.size() + 2 + kMeterSize + kBucketSize);
  key.append(tenant);
  key.push_back('\0');
  key.append(class_name);
  key.push_back('\0');
  if (meter != quota::Meter::kRequests) key.push_back(static_cast<char>(meter));
  const auto value = static_cast<uint64_t>(bucket);
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(value >> shift));
  return key;
}

std::optional<UsageRowKey> DecodeUsageRowKey(std::string_view key) {
  const size_t tenant_end = key.find('\0');
  if (tenant_end == std::string_view::npos || tenant_end == 0) return std::nullopt;
  const size_t class_end = key.find('\0', tenant_end + 1);
  if (class_end == std::string_view::npos || class_end == tenant_end + 1) return std::nullopt;
  UsageRowKey row;
  row.tenant = key.substr(0, tenant_end);
  row.class_name = key.substr(tenant_end + 1, class_end - tenant_end - 1);
  std::string_view tail = key.substr(class_end + 1);
  if (tail.size() == kMeterSize + kBucketSize) {
    const int meter = static_cast<unsigned char>(tail[0]);
    // kRequests is written without a meter byte: a 0 here is not a key this layout makes.
    if (meter == static_cast<int>(quota::Meter::kRequests) || meter >= quota::kMeterCount) {
      return std::nullopt;
    }
    row.meter = static_cast<quota::Meter>(meter);
    tail.remove_prefix(kMeterSize);
  } else if (tail.size() != kBucketSize) {
    return std::nullopt;
  }
  uint64_t bucket = 0;
  for (const char c : tail) bucket = (bucket << 8) | static_cast<unsigned char>(c);
  if (bucket >> 63 != 0) return std::nullopt;  // buckets are >= 0
  row.bucket = static_cast<int64_t>(bucket);
  return row;
}

std::string EncodeCount(int64_t count) {
  const auto bits = static_cast<uint64_t>(count);
  std::string value(kCountSize, '\0');
  for (size_t i = 0; i < kCountSize; ++i) value[i] = static_cast<char>(bits >> (8 * i));
  return value;
}

std::optional<int64_t> DecodeCount(std::string_view value) {
  if (value.size() != kCountSize) return std::nullopt;
  uint64_t bits = 0;
  for (size_t i = 0; i < kCountSize; ++i) {
    bits |= uint64_t{static_cast<unsigned char>(value[i])} << (8 * i);
  }
  // Two's complement: the conversion is modular (well-defined since C++20).
  return static_cast<int64_t>(bits);
}

}  // namespace anyai::storage
