// The feature classes a UsageStore knows, indexed like the engine's ClassId, with each class's
// sub-bucket width and longest window, and the retention rule that follows from them: a row
// whose sub-bucket ended more than (longest window + one sub-bucket) before now can never be
// counted in any window again, so a compaction may drop it.
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

namespace anyai::storage {

struct ClassInfo {
  std::string name;               // the feature class, e.g. "llm"; no '\0'
  absl::Duration sub_bucket;      // Engine::SubBucketWidth of the class
  absl::Duration longest_window;  // the longest window any plan gives the class
};

class UsageSchema {
 public:
  // INVALID_ARGUMENT naming the class for an empty or duplicate name, a name containing '\0',
  // a sub-bucket that is not positive, or a longest window shorter than the sub-bucket.
  static absl::StatusOr<std::unique_ptr<UsageSchema>> Create(std::vector<ClassInfo> classes);

  int size() const { return static_cast<int>(classes_.size()); }
  const ClassInfo& at(int index) const { return classes_[index]; }
  // The index of the class called `name`, or -1.
  int Find(std::string_view name) const;

  // Whether rows of class `class_index` in sub-bucket `bucket` are past keeping at `now`.
  bool Expired(int class_index, int64_t bucket, absl::Time now) const;
  // The same for a raw usage row key. Keys that do not decode, and classes this schema does
  // not know, are kept: a class missing from today's configuration may be back tomorrow, and a
  // compaction filter must never guess.
  bool RowExpired(std::string_view row_key, absl::Time now) const;

 private:
  explicit UsageSchema(std::vector<ClassInfo> classes);

  std::vector<ClassInfo> classes_;
  absl::flat_hash_map<std::string, int> index_by_name_;
};

// The classes of `engine`, indexed by ClassId: name, SubBucketWidth, and the longest window any
// of its plans gives the class.
std::vector<ClassInfo> UsageClassesOf(const quota::Engine& engine);

// What a compaction needs to drop expired usage rows: the schema, and the clock that says
// "now" (injectable so that tests can freeze it). Installed by UsageStore into its Database.
struct UsageRetention {
  std::shared_ptr<const UsageSchema> schema;
  std::function<absl::Time()> clock;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_SCHEMA_H_
