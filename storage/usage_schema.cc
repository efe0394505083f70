#include "storage/usage_schema.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/usage_row.h"

namespace anyai::storage {
namespace {

bool Finite(absl::Duration d) {
  return d != absl::InfiniteDuration() && d != -absl::InfiniteDuration();
}

}  // namespace

const MeterWindows& ClassInfo::of(quota::Meter meter) const {
  switch (meter) {
    case quota::Meter::kTokens:
      return tokens;
    case quota::Meter::kSpend:
      return spend;
    case quota::Meter::kRequests:
      break;
  }
  return requests;
}

MeterWindows& ClassInfo::of(quota::Meter meter) {
  return const_cast<MeterWindows&>(static_cast<const ClassInfo&>(*this).of(meter));
}

std::vector<ClassInfo> UsageClassesOf(const quota::Engine& engine) {
  std::vector<ClassInfo> classes;
  classes.reserve(engine.class_count());
  for (int i = 0; i < engine.class_count(); ++i) {
    const quota::ClassId id{i};
    ClassInfo info{.name = engine.class_name(id)};
    for (const quota::Meter meter : quota::kMeters) {
      info.of(meter) = {.sub_bucket = engine.SubBucketWidth(id, meter),
                        .longest_window = engine.LongestWindow(id, meter)};
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
    for (const quota::Meter meter : quota::kMeters) {
      const MeterWindows& w = c.of(meter);
      if (w == MeterWindows{}) continue;  // no windows of this meter
      const std::string what = absl::StrCat(where, " ", quota::MeterName(meter), ": ");
      if (w.sub_bucket <= absl::ZeroDuration() || !Finite(w.sub_bucket)) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, "sub_bucket must be positive and finite (or zero with longest_window)"));
      }
      if (w.longest_window < w.sub_bucket || !Finite(w.longest_window)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, "longest_window must be finite and at least sub_bucket"));
      }
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

bool UsageSchema::Expired(int class_index, quota::Meter meter, int64_t bucket,
                          absl::Time now) const {
  const MeterWindows& w = classes_[class_index].of(meter);
  // Without a sub-bucket width the bucket cannot be dated: keep it (see the header).
  if (!w.has_windows()) return false;
  // absl::Duration saturates instead of overflowing, so huge buckets simply never expire.
  const absl::Time bucket_end = absl::UnixEpoch() + w.sub_bucket * bucket + w.sub_bucket;
  return bucket_end < now - w.longest_window - w.sub_bucket;
}

bool UsageSchema::RowExpired(std::string_view row_key, absl::Time now) const {
  const std::optional<UsageRowKey> row = DecodeUsageRowKey(row_key);
  if (!row.has_value()) return false;
  const int class_index = Find(row->class_name);
  if (class_index < 0) return false;
  return Expired(class_index, row->meter, row->bucket, now);
}

}  // namespace anyai::storage
