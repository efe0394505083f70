// The merge operator of the `usage` column family: adds 8-byte little-endian two's-complement
// int64 counters (usage_row.h), so that recording a change of usage is one blind Merge with no
// read. Operands may be negative (a settlement's refund into the sub-bucket it was reserved in),
// so a row holds the net units charged. The sum is taken modulo 2^64 (two's-complement
// wrapping), which is associative and commutative, so RocksDB may combine operands in any
// grouping and order during reads, flushes and compactions and every grouping gives the same
// row; no real total comes near 2^63 (the engine's own counters are narrower, plan.h). Rows written
// before operands could be negative hold non-negative counts below 2^63, whose encoding is the
// same in both readings, so they stay valid. An operand or value of another size makes the
// merge fail, which RocksDB reports as a Corruption status on the read (never a silently wrong
// count).
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
