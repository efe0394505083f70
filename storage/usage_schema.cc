#include "storage/usage_schema.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/usage_row.h"

namespace anyai::storage {

std::vector<ClassInfo> UsageClassesOf(const quota::Engine& engine) {
  std::vector<ClassInfo> classes;
  for (int i = 0; i < engine.class_count(); ++i) {
    const quota::ClassId id{i};
    ClassInfo info{engine.class_name(id), engine.SubBucketWidth(id), absl::ZeroDuration()};
    for (const quota::Plan& plan : engine.plans().plans) {
      const quota::ClassLimits* limits = plan.Find(info.name);
      if (limits == nullptr) continue;
      for (const quota::Window& window : limits->windows) {
        info.longest_window = std::max(info.longest_window, window.length);
      }
    }
    classes.push_back(std::move(info));
  }
  return classes;
}

absl::StatusOr<std::unique_ptr<UsageSchema>> UsageSchema::Create(std::vector<ClassInfo> classes) {
  absl::flat_hash_map<std::string, int> seen;
  for (int i = 0; i < static_cast<int>(classes.size()); ++i) {
    const ClassInfo& c = classes[i];
    const std::string where = absl::StrCat("usage class ", i, " (\"", c.name, "\")");
    if (c.name.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": empty name"));
    if (c.name.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": name contains a NUL byte"));
    }
    if (!seen.emplace(c.name, i).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
    }
    if (c.sub_bucket <= absl::ZeroDuration() || c.sub_bucket == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": sub_bucket must be positive and finite"));
    }
    if (c.longest_window < c.sub_bucket || c.longest_window == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": longest_window must be finite and at least sub_bucket"));
    }
  }
  return std::unique_ptr<UsageSchema>(new UsageSchema(std::move(classes)));
}

UsageSchema::UsageSchema(std::vector<ClassInfo> classes) : classes_(std::move(classes)) {
  for (int i = 0; i < static_cast<int>(classes_.size()); ++i) {
    index_by_name_.emplace(classes_[i].name, i);
  }
}

int UsageSchema::Find(std::string_view name) const {
  const auto it = index_by_name_.find(absl::string_view(name.data(), name.size()));
  return it == index_by_name_.end() ? -1 : it->second;
}

bool UsageSchema::Expired(int class_index, int64_t bucket, absl::Time now) const {
  const ClassInfo& c = classes_[class_index];
  // absl::Duration saturates instead of overflowing, so huge buckets simply never expire.
  const absl::Time bucket_end = absl::UnixEpoch() + c.sub_bucket * bucket + c.sub_bucket;
  return bucket_end < now - c.longest_window - c.sub_bucket;
}

bool UsageSchema::RowExpired(std::string_view row_key, absl::Time now) const {
  const std::optional<UsageRowKey> row = DecodeUsageRowKey(row_key);
  if (!row.has_value()) return false;
  const int class_index = Find(row->class_name);
  if (class_index < 0) return false;
  return Expired(class_index, row->bucket, now);
}

}  // namespace anyai::storage
