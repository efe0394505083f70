// CounterAddOperator (counter_merge_operator.h) called directly, as RocksDB calls it.
#include "storage/counter_merge_operator.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "rocksdb/slice.h"
#include "storage/usage_row.h"

namespace anyai::storage {
namespace {

// The operator's result of merging `operand` onto `existing` (none: the row's first operand),
// or nullopt if the merge fails.
std::optional<int64_t> Merged(std::optional<int64_t> existing, const std::string& operand) {
  const CounterAddOperator op;
  const std::string existing_value = existing.has_value() ? EncodeCount(*existing) : "";
  const rocksdb::Slice existing_slice(existing_value);
  std::string result;
  if (!op.Merge(rocksdb::Slice("key"), existing.has_value() ? &existing_slice : nullptr,
                rocksdb::Slice(operand), &result, nullptr)) {
    return std::nullopt;
  }
  return DecodeCount(result);
}

TEST(CounterAddOperatorTest, AddsSignedCounts) {
  EXPECT_EQ(Merged(std::nullopt, EncodeCount(5)), 5);
  EXPECT_EQ(Merged(std::nullopt, EncodeCount(-5)), -5);
  EXPECT_EQ(Merged(900, EncodeCount(-588)), 312);
  EXPECT_EQ(Merged(3, EncodeCount(-7)), -4);
  EXPECT_EQ(Merged(-4, EncodeCount(4)), 0);
}

TEST(CounterAddOperatorTest, GroupingDoesNotChangeTheSum) {
  // RocksDB may fold operands in any grouping: ((a + b) + c) == (a + (b + c)).
  const int64_t a = 1'000'000'000'000, b = -1, c = -999'999'999'999;
  const std::optional<int64_t> ab = Merged(a, EncodeCount(b));
  const std::optional<int64_t> bc = Merged(b, EncodeCount(c));
  ASSERT_TRUE(ab.has_value());
  ASSERT_TRUE(bc.has_value());
  EXPECT_EQ(Merged(*ab, EncodeCount(c)), Merged(a, EncodeCount(*bc)));
  EXPECT_EQ(Merged(*ab, EncodeCount(c)), 0);
}

TEST(CounterAddOperatorTest, WrapsInsteadOfOverflowing) {
  EXPECT_EQ(Merged(std::numeric_limits<int64_t>::max(), EncodeCount(1)),
            std::numeric_limits<int64_t>::min());
}

TEST(CounterAddOperatorTest, RefusesValuesOfTheWrongSize) {
  EXPECT_EQ(Merged(std::nullopt, "bad"), std::nullopt);
  EXPECT_EQ(Merged(1, std::string(9, '\0')), std::nullopt);

  const CounterAddOperator op;
  const rocksdb::Slice corrupt("bad");
  std::string result;
  EXPECT_FALSE(
      op.Merge(rocksdb::Slice("key"), &corrupt, rocksdb::Slice(EncodeCount(1)), &result, nullptr));
}

TEST(CounterAddOperatorTest, KeepsTheNameRocksDbRecorded) {
  EXPECT_STREQ(CounterAddOperator().Name(), "anyai.CounterAddOperator");
}

}  // namespace
}  // namespace anyai::storage
