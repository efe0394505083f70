// Usage persistence for the quota engine (SPEC §6, "limits survive restarts"): a UsageStore is
// both the engine's UsageSink (every admission is written before Admit() returns) and its
// UsageLoader (a tenant's counts are read back on its first use after a start or an eviction).
//
//   auto db = Database::Open({.data_dir = dir});
//   auto usage = UsageStore::Open(**db, classes);  // classes[i] describes ClassId{i}
//   EngineOptions options{.sink = usage->get(), .loader = usage->get()};
//
// Record() is one RocksDB Merge that adds the admission's cost to the row (tenant, class,
// sub-bucket) (layout in usage_row.h), written with the Database's Durability before it
// returns: in the default kProcessCrash mode an acknowledged admission survives kill -9; in
// kFsync it survives power loss. Load() is one prefix scan of the tenant's rows. Rows expire by
// compaction: once a row's sub-bucket ended more than (longest window + one sub-bucket) ago, the
// next compaction that touches it drops it (usage_schema.h); CompactNow() forces one.
//
// Tenants are opaque strings, used as given (the server passes e.g. `key:<key_id>` or
// `ip:203.0.113.7`): non-empty, at most kMaxTenantSize bytes, no '\0' (INVALID_ARGUMENT
// otherwise). Storage failures are UNAVAILABLE with RocksDB's message; see database.h for the
// injectable failures.
//
// Thread safety: thread-safe; Record, Load and CompactNow may be called concurrently from any
// number of threads (RocksDB serialises writes internally and groups concurrent WAL writes).
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
#include "quota/engine.h"
#include "storage/database.h"
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

  // Adds admission.cost (>= 0; 0 writes nothing) to the admission's row. INVALID_ARGUMENT for
  // a bad tenant, an unknown class, a negative bucket or cost; UNAVAILABLE if the write fails.
  absl::Status Record(const quota::Admission& admission) override;

  // Every row of `tenant` whose class this store knows, in (class name, bucket) order; rows of
  // unknown classes are skipped. Rows not yet dropped by compaction may be older than any
  // window (the engine ignores them). INVALID_ARGUMENT for a bad tenant; DATA_LOSS for a row
  // whose value does not decode; UNAVAILABLE if the read fails.
  absl::StatusOr<std::vector<quota::BucketCount>> Load(std::string_view tenant) override;

  // Compacts the whole usage column family now, dropping every expired row. For tests and ops;
  // it rewrites the column family, so do not call it on a hot path.
  absl::Status CompactNow();

  const UsageSchema& schema() const { return *retention_->schema; }
  // Counters of Record()'s writes (see write_stats.h).
  WriteStats write_stats() const { return write_meter_.Snapshot(); }

 private:
  UsageStore(Database& db, std::shared_ptr<const UsageRetention> retention);

  Database& db_;
  const std::shared_ptr<const UsageRetention> retention_;
  WriteMeter write_meter_;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_STORE_H_
