// The merge operator of the `usage` column family: adds 8-byte little-endian unsigned counters
// (usage_row.h), so that recording an admission is one blind Merge with no read. Addition is
// associative, so RocksDB may combine operands in any grouping during reads, flushes and
// compactions. An operand or value of another size makes the merge fail, which RocksDB reports
// as a Corruption status on the read (never a silently wrong count). Sums wrap at 2^64, which
// counts of admissions never reach.
//
// Internal to storage/ (it exposes RocksDB types); Database installs it.
// Thread safety: stateless; RocksDB calls it from any thread.
#ifndef ANYAI_STORAGE_COUNTER_MERGE_OPERATOR_H_
#define ANYAI_STORAGE_COUNTER_MERGE_OPERATOR_H_

#include <string>

#include "rocksdb/merge_operator.h"

namespace anyai::storage {

class CounterAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  // Recorded by RocksDB in the OPTIONS file: never rename it.
  static constexpr char kName[] = "anyai.CounterAddOperator";

  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing_value,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* logger) const override;
  const char* Name() const override { return kName; }
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_COUNTER_MERGE_OPERATOR_H_
