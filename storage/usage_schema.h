// The feature classes a UsageStore knows, indexed like the engine's ClassId, with each class's
// sub-bucket width and longest window per meter (requests, tokens, spend), and the retention
// rule that follows from them.
//
// Retention, per (class, meter): a row whose sub-bucket ended more than (the meter's longest
// window + one of its sub-buckets) before now can never be counted in any window of that meter
// again, so a compaction may drop it. Everything else is kept, because a compaction filter must
// never guess:
//   - rows of a meter for which the class has no windows (zero sub-bucket): today's engine
//     counts them against nothing, but without a sub-bucket width a bucket cannot be dated, and
//     a configuration that gives the meter windows again would count them. The engine writes no
//     rows of such a meter (a meter nobody limits has no counter), so these are leftovers of an
//     earlier configuration: they do not grow, and expire once the meter has windows again;
//   - rows of classes this schema does not know (a class missing from today's configuration
//     may be back tomorrow), and keys that do not decode (usage_row.h).
// The extra sub-bucket is slack for a row whose sub-bucket straddles the start of the longest
// window. A refund arriving after its row was dropped leaves a negative row in an expired
// bucket: the engine ignores counts <= 0 and the next compaction drops it.
//
// UsageClassesOf(engine) builds the ClassInfo list from an Engine (index i = ClassId{i}). The
// engine that will use the store needs the store at its creation, so describe the classes with
// a probe engine made from the same PlanTable without sink or loader (cheap: no tenants):
//   auto probe = quota::Engine::Create(plans, {});
//   auto usage = UsageStore::Open(*db, UsageClassesOf(**probe));
//   auto engine = quota::Engine::Create(plans, {.sink = usage->get(), .loader = usage->get()});
//
// Thread safety: immutable once created; safe to read from any number of threads.
#ifndef ANYAI_STORAGE_USAGE_SCHEMA_H_
#define ANYAI_STORAGE_USAGE_SCHEMA_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "quota/engine.h"
#include "quota/plan.h"

namespace anyai::storage {

// The windows of one meter of one class, as far as keeping its rows is concerned. Both zero:
// no plan gives the class a window of the meter.
struct MeterWindows {
  absl::Duration sub_bucket = {};      // Engine::SubBucketWidth(class, meter)
  absl::Duration longest_window = {};  // Engine::LongestWindow(class, meter)

  bool has_windows() const { return sub_bucket > absl::ZeroDuration(); }
  friend bool operator==(const MeterWindows&, const MeterWindows&) = default;
};

struct ClassInfo {
  std::string name = {};  // the feature class, e.g. "llm"; no '\0'
  MeterWindows requests = {};
  MeterWindows tokens = {};
  MeterWindows spend = {};

  // The windows of `meter`, which must be one of quota::kMeters.
  const MeterWindows& of(quota::Meter meter) const;
  MeterWindows& of(quota::Meter meter);
};

class UsageSchema {
 public:
  // INVALID_ARGUMENT naming the class (and meter) for an empty or duplicate name, a name
  // containing '\0', or a meter whose windows are neither both zero nor a positive, finite
  // sub-bucket with a finite longest window at least that long.
  static absl::StatusOr<std::unique_ptr<UsageSchema>> Create(std::vector<ClassInfo> classes);

  int size() const { return static_cast<int>(classes_.size()); }
  const ClassInfo& at(int index) const { return classes_[index]; }
  // The index of the class called `name`, or -1.
  int Find(std::string_view name) const;

  // Whether rows of `meter` of class `class_index` in sub-bucket `bucket` are past keeping at
  // `now` (see the retention rule above; never for a meter without windows).
  bool Expired(int class_index, quota::Meter meter, int64_t bucket, absl::Time now) const;
  // The same for a raw usage row key; false for keys that do not decode and classes this
  // schema does not know.
  bool RowExpired(std::string_view row_key, absl::Time now) const;

 private:
  explicit UsageSchema(std::vector<ClassInfo> classes);

  std::vector<ClassInfo> classes_;
  absl::flat_hash_map<std::string, int> index_by_name_;
};

// The classes of `engine`, indexed by ClassId: name, and per meter Engine::SubBucketWidth and
// Engine::LongestWindow.
std::vector<ClassInfo> UsageClassesOf(const quota::Engine& engine);

// What a compaction needs to drop expired usage rows: the schema, and the clock that says
// "now" (injectable so that tests can freeze it). Installed by UsageStore into its Database.
struct UsageRetention {
  std::shared_ptr<const UsageSchema> schema;
  std::function<absl::Time()> clock;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_SCHEMA_H_
