// Usage persistence for the quota engine (SPEC §6, "limits survive restarts"): a UsageStore is
// both the engine's UsageSink (every change to usage is written before the call that made it
// returns) and its UsageLoader (a tenant's counts are read back on its first use after a start
// or an eviction).
//
//   auto db = Database::Open({.data_dir = dir});
//   auto usage = UsageStore::Open(**db, classes);  // classes[i] describes ClassId{i}
//   EngineOptions options{.sink = usage->get(), .loader = usage->get()};
//
// Record() adds one Merge per change, which adds the change's cost (negative for a refund) to the
// row (tenant, class, meter, sub-bucket) (layout in usage_row.h), and returns once they are
// written with the Database's Durability. Concurrent calls share writes (group_commit.h): the
// changes of every call that arrives while a write runs go into the next one, a single RocksDB
// WriteBatch, so a call's changes are stored all together or not at all, across a crash too: in
// the default kProcessCrash mode an acknowledged call's changes survive kill -9; in kFsync they
// survive power loss. Load() is one prefix
// scan of the tenant's rows. Rows expire by compaction, per class and meter: once a row's
// sub-bucket ended more than (the meter's longest window + one sub-bucket) ago, the next
// compaction that touches it drops it (usage_schema.h, which also says what is kept);
// CompactNow() forces one.
//
// Tenants are opaque strings, used as given (the server passes e.g. `key:<key_id>` or
// `ip:203.0.113.7`): non-empty, at most kMaxTenantSize bytes, no '\0' (INVALID_ARGUMENT
// otherwise). Storage failures are UNAVAILABLE saying what kind of fault it was, never which
// tenant or file (the details are logged); see database.h for faults that heal and for the
// injectable failures.
//
// Thread safety: thread-safe; Record, Load and CompactNow may be called concurrently from any
// number of threads (Record's calls are grouped into one write at a time).
// One UsageStore per Database at a time: it installs its retention rule in the Database on
// Open and removes it when destroyed.
#ifndef ANYAI_STORAGE_USAGE_STORE_H_
#define ANYAI_STORAGE_USAGE_STORE_H_

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "quota/engine.h"
#include "storage/database.h"
#include "storage/group_commit.h"
#include "storage/usage_schema.h"
#include "storage/write_stats.h"

namespace anyai::storage {

struct UsageStoreOptions {
  // What compactions take as "now" to decide which rows have expired. Tests freeze it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class UsageStore final : public quota::UsageSink, public quota::UsageLoader {
 public:
  // `db` is borrowed and must outlive the store. `classes[i]` describes the engine's
  // ClassId{i}; INVALID_ARGUMENT as UsageSchema::Create.
  static absl::StatusOr<std::unique_ptr<UsageStore>> Open(Database& db,
                                                          std::vector<ClassInfo> classes,
                                                          UsageStoreOptions options = {});
  ~UsageStore() override;
  UsageStore(const UsageStore&) = delete;
  UsageStore& operator=(const UsageStore&) = delete;

  // Adds each change's cost (any sign) to its row, all in one write: every change is
  // validated first, and INVALID_ARGUMENT for any one of them (naming it: a bad tenant, an
  // unknown class or meter, a negative bucket) writes nothing. Changes of cost 0 are skipped;
  // a batch of nothing else (or an empty one) writes nothing and succeeds. UNAVAILABLE if the
  // write fails, and then nothing of the batch is stored. Tenants may differ between changes.
  absl::Status Record(absl::Span<const quota::Admission> changes) override;

  // Every row of `tenant` whose class this store knows, with its meter, in key order (by class
  // name, then meter, then bucket; usage_row.h); rows of unknown classes and keys that do not
  // decode are skipped. A count is the row's net sum: it may be zero, or negative when a
  // refund arrived after compaction had dropped its reservation's expired row. Rows not yet
  // dropped by compaction may be older than any window (the engine ignores them, and counts
  // <= 0). INVALID_ARGUMENT for a bad tenant; DATA_LOSS "stored usage does not decode" for a row
  // whose value does not decode (the row is logged); UNAVAILABLE if the read fails.
  absl::StatusOr<std::vector<quota::BucketCount>> Load(std::string_view tenant) override;

  // Compacts the whole usage column family now, dropping every expired row. For tests and ops;
  // it rewrites the column family, so do not call it on a hot path.
  absl::Status CompactNow();

  const UsageSchema& schema() const { return *retention_->schema; }
  // Counters of Record()'s writes (see write_stats.h): `writes` counts RocksDB writes (one per
  // group), `calls` the Record() calls they carried; a call refused by validation or with nothing
  // to write counts in neither.
  WriteStats write_stats() const { return commit_.stats(); }

 private:
  UsageStore(Database& db, std::shared_ptr<const UsageRetention> retention);
  // INVALID_ARGUMENT (without the change's index) if `change` cannot be written.
  absl::Status ValidateChange(const quota::Admission& change) const;

  Database& db_;
  const std::shared_ptr<const UsageRetention> retention_;
  GroupCommit commit_;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_STORE_H_
