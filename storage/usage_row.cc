#include "storage/usage_row.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace anyai::storage {
namespace {

constexpr size_t kBucketSize = 8;

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

std::string UsageRowPrefix(std::string_view tenant) {
  std::string prefix(tenant);
  prefix.push_back('\0');
  return prefix;
}

std::string EncodeUsageRowKey(std::string_view tenant, std::string_view class_name,
                              int64_t bucket) {
  std::string key;
  key.reserve(tenant.size() + class_name.size() + 2 + kBucketSize);
  key.append(tenant);
  key.push_back('\0');
  key.append(class_name);
  key.push_back('\0');
  const auto value = static_cast<uint64_t>(bucket);
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(value >> shift));
  return key;
}

std::optional<UsageRowKey> DecodeUsageRowKey(std::string_view key) {
  const size_t tenant_end = key.find('\0');
  // At least: tenant '\0' one-char class '\0' bucket.
  if (tenant_end == std::string_view::npos || tenant_end == 0 ||
      key.size() < tenant_end + 3 + kBucketSize) {
    return std::nullopt;
  }
  const size_t class_end = key.size() - kBucketSize - 1;
  if (key[class_end] != '\0') return std::nullopt;
  UsageRowKey row;
  row.tenant = key.substr(0, tenant_end);
  row.class_name = key.substr(tenant_end + 1, class_end - tenant_end - 1);
  if (row.class_name.find('\0') != std::string_view::npos) return std::nullopt;
  uint64_t bucket = 0;
  for (size_t i = class_end + 1; i < key.size(); ++i) {
    bucket = (bucket << 8) | static_cast<unsigned char>(key[i]);
  }
  if (bucket > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  row.bucket = static_cast<int64_t>(bucket);
  return row;
}

std::string EncodeCount(uint64_t count) {
  std::string value(kCountSize, '\0');
  for (size_t i = 0; i < kCountSize; ++i) value[i] = static_cast<char>(count >> (8 * i));
  return value;
}

std::optional<uint64_t> DecodeCount(std::string_view value) {
  if (value.size() != kCountSize) return std::nullopt;
  uint64_t count = 0;
  for (size_t i = 0; i < kCountSize; ++i) {
    count |= uint64_t{static_cast<unsigned char>(value[i])} << (8 * i);
  }
  return count;
}

}  // namespace anyai::storage
