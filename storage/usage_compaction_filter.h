// The compaction filter of the `usage` column family: drops rows that UsageSchema::RowExpired
// says can never count again, so the database does not grow without bound (SPEC §6). Whether a
// row is expired depends only on its key and the time, so every version of a row (values and
// merge operands alike) goes together. "Now" is read once per compaction from the installed
// retention's clock.
//
// Database installs one factory on the column family when it opens it (RocksDB takes filters
// only at open), and UsageStore later installs its retention rule with SetRetention(); until
// then, and after SetRetention(nullptr), compactions keep every row.
//
// Internal to storage/ (it exposes RocksDB types).
// Thread safety: SetRetention and CreateCompactionFilter may run concurrently (a mutex guards
// the rule; a compaction keeps the rule it started with). Each filter is used by one
// compaction thread.
#ifndef ANYAI_STORAGE_USAGE_COMPACTION_FILTER_H_
#define ANYAI_STORAGE_USAGE_COMPACTION_FILTER_H_

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/compaction_filter.h"
#include "storage/usage_schema.h"

namespace anyai::storage {

class UsageCompactionFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  void SetRetention(std::shared_ptr<const UsageRetention> retention) ABSL_LOCKS_EXCLUDED(mu_);

  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override ABSL_LOCKS_EXCLUDED(mu_);
  const char* Name() const override { return "anyai.UsageCompactionFilterFactory"; }

 private:
  absl::Mutex mu_;
  std::shared_ptr<const UsageRetention> retention_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_USAGE_COMPACTION_FILTER_H_
