#include "storage/usage_store.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "rocksdb/db.h"
#include "storage/database.h"
#include "storage/usage_row.h"
#include "storage/usage_schema.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::quota::Admission;
using ::anyai::quota::BucketCount;
using ::anyai::quota::ClassId;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr ClassId kLlm{0};
constexpr ClassId kVision{1};

// llm: 1-second sub-buckets (a 60 s shortest window), kept for a day; vision: 1-minute
// sub-buckets (an hour), kept for a day.
std::vector<ClassInfo> TestClasses() {
  return {{"llm", absl::Seconds(1), absl::Hours(24)},
          {"vision", absl::Minutes(1), absl::Hours(24)}};
}

// (class index, bucket, count) of a BucketCount, for readable expectations.
using Row = std::tuple<int, int64_t, int64_t>;
std::vector<Row> Rows(const std::vector<BucketCount>& counts) {
  std::vector<Row> rows;
  for (const BucketCount& c : counts) rows.emplace_back(c.feature_class.index, c.bucket, c.count);
  return rows;
}

Admission At(std::string_view tenant, ClassId feature_class, int64_t bucket, int64_t cost = 1) {
  return Admission{
      .tenant = tenant, .feature_class = feature_class, .bucket = bucket, .cost = cost};
}

class UsageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(DatabaseOptions options = {}, std::vector<ClassInfo> classes = TestClasses()) {
    usage_.reset();
    db_.reset();
    options.data_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(options);
    ASSERT_OK(db);
    db_ = *std::move(db);
    absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(
        *db_, std::move(classes), {.clock = [this] { return absl::FromUnixMicros(now_micros_); }});
    ASSERT_OK(usage);
    usage_ = *std::move(usage);
  }

  std::vector<Row> MustLoad(std::string_view tenant) {
    absl::StatusOr<std::vector<BucketCount>> counts = usage_->Load(tenant);
    EXPECT_OK(counts);
    return counts.ok() ? Rows(*counts) : std::vector<Row>{};
  }

  void SetNow(absl::Time now) { now_micros_ = absl::ToUnixMicros(now); }

  TempDir dir_;
  std::atomic<int64_t> now_micros_{0};
  std::unique_ptr<Database> db_;
  std::unique_ptr<UsageStore> usage_;
};

TEST_F(UsageStoreTest, LoadReturnsWhatWasRecorded) {
  ASSERT_OK(usage_->Record(At("key:0123456789abcdef", kLlm, 1000)));
  ASSERT_OK(usage_->Record(At("key:0123456789abcdef", kVision, 16)));

  EXPECT_THAT(MustLoad("key:0123456789abcdef"),
              UnorderedElementsAre(Row{0, 1000, 1}, Row{1, 16, 1}));
}

TEST_F(UsageStoreTest, RecordsOfTheSameBucketAddUp) {
  ASSERT_OK(usage_->Record(At("ip:203.0.113.7", kLlm, 1000)));
  ASSERT_OK(usage_->Record(At("ip:203.0.113.7", kLlm, 1000)));
  ASSERT_OK(usage_->Record(At("ip:203.0.113.7", kLlm, 1000, /*cost=*/3)));
  ASSERT_OK(usage_->Record(At("ip:203.0.113.7", kLlm, 1001)));

  EXPECT_THAT(MustLoad("ip:203.0.113.7"), UnorderedElementsAre(Row{0, 1000, 5}, Row{0, 1001, 1}));
}

TEST_F(UsageStoreTest, LoadReturnsRowsInClassThenBucketOrder) {
  ASSERT_OK(usage_->Record(At("t", kVision, 3)));
  ASSERT_OK(usage_->Record(At("t", kLlm, 256)));
  ASSERT_OK(usage_->Record(At("t", kLlm, 2)));

  EXPECT_THAT(MustLoad("t"), ::testing::ElementsAre(Row{0, 2, 1}, Row{0, 256, 1}, Row{1, 3, 1}));
}

TEST_F(UsageStoreTest, LoadReturnsOnlyTheGivenTenant) {
  ASSERT_OK(usage_->Record(At("ip:1.2.3.4", kLlm, 10)));
  ASSERT_OK(usage_->Record(At("ip:1.2.3.45", kLlm, 20)));
  ASSERT_OK(usage_->Record(At("ip:1.2.3", kLlm, 30)));

  EXPECT_THAT(MustLoad("ip:1.2.3.4"), UnorderedElementsAre(Row{0, 10, 1}));
  EXPECT_THAT(MustLoad("ip:1.2.3.45"), UnorderedElementsAre(Row{0, 20, 1}));
  EXPECT_THAT(MustLoad("ip:1.2.3"), UnorderedElementsAre(Row{0, 30, 1}));
  EXPECT_THAT(MustLoad("ip:9.9.9.9"), IsEmpty());
}

TEST_F(UsageStoreTest, CountsSurviveReopen) {
  for (int i = 0; i < 10; ++i) ASSERT_OK(usage_->Record(At("key:aaaaaaaaaaaaaaaa", kLlm, 7)));
  ASSERT_OK(usage_->Record(At("key:aaaaaaaaaaaaaaaa", kVision, 8, /*cost=*/2)));

  Reopen();

  EXPECT_THAT(MustLoad("key:aaaaaaaaaaaaaaaa"), UnorderedElementsAre(Row{0, 7, 10}, Row{1, 8, 2}));
}

TEST_F(UsageStoreTest, CountsSurviveReopenInFsyncMode) {
  Reopen({.durability = Durability::kFsync});
  for (int i = 0; i < 10; ++i) ASSERT_OK(usage_->Record(At("t", kLlm, 7)));

  Reopen({.durability = Durability::kFsync});

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, 7, 10}));
}

TEST_F(UsageStoreTest, MergesKeepAddingAfterAFlushAndCompaction) {
  ASSERT_OK(usage_->Record(At("t", kLlm, 7, /*cost=*/4)));
  ASSERT_OK(usage_->CompactNow());
  ASSERT_OK(usage_->Record(At("t", kLlm, 7, /*cost=*/2)));

  Reopen();
  ASSERT_OK(usage_->Record(At("t", kLlm, 7)));

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, 7, 7}));
}

TEST_F(UsageStoreTest, ClassesAreMatchedByNameNotIndexAcrossRestarts) {
  ASSERT_OK(usage_->Record(At("t", kLlm, 1)));
  ASSERT_OK(usage_->Record(At("t", kVision, 2)));

  // The next configuration lists the classes the other way round and drops "llm".
  Reopen({}, {{"image_generation", absl::Seconds(1), absl::Hours(24)},
              {"vision", absl::Minutes(1), absl::Hours(24)}});

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{1, 2, 1}));
}

TEST_F(UsageStoreTest, ConcurrentRecordsAreAllCounted) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) EXPECT_OK(usage_->Record(At("hot", kLlm, 42)));
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(MustLoad("hot"), UnorderedElementsAre(Row{0, 42, kThreads * kPerThread}));
  EXPECT_EQ(usage_->write_stats().writes, static_cast<uint64_t>(kThreads * kPerThread));
}

TEST_F(UsageStoreTest, RejectsInvalidTenants) {
  const std::string with_nul("ip:1.2.3.4\0x", 12);

  EXPECT_THAT(usage_->Record(At(with_nul, kLlm, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(usage_->Load(with_nul),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(usage_->Record(At("", kLlm, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(usage_->Load(std::string(kMaxTenantSize + 1, 't')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
}

TEST_F(UsageStoreTest, RejectsUnknownClassesAndNegativeBucketsOrCosts) {
  EXPECT_THAT(usage_->Record(At("t", ClassId{2}, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class")));
  EXPECT_THAT(usage_->Record(At("t", ClassId{-1}, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class")));
  EXPECT_THAT(usage_->Record(At("t", kLlm, -1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bucket")));
  EXPECT_THAT(usage_->Record(At("t", kLlm, 1, /*cost=*/-1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cost")));
  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, AZeroCostRecordsNothing) {
  ASSERT_OK(usage_->Record(At("t", kLlm, 1, /*cost=*/0)));

  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, OpenRejectsAnInvalidSchema) {
  EXPECT_THAT(UsageStore::Open(*db_, {{"llm", absl::ZeroDuration(), absl::Hours(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("llm")));
}

TEST_F(UsageStoreTest, CompactionDropsExpiredRowsAndKeepsLiveOnes) {
  // llm keeps a row while its sub-bucket ended at most 24 h + 1 s before now.
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  const int64_t now_bucket = 1'700'000'000;                // 1-second sub-buckets
  const int64_t oldest_kept = now_bucket - 24 * 3600 - 2;  // ends exactly 24 h + 1 s ago
  SetNow(now);
  ASSERT_OK(usage_->Record(At("t", kLlm, 5)));
  ASSERT_OK(usage_->Record(At("t", kLlm, oldest_kept - 1)));
  ASSERT_OK(usage_->Record(At("t", kLlm, oldest_kept - 1)));
  ASSERT_OK(usage_->Record(At("t", kLlm, oldest_kept)));
  ASSERT_OK(usage_->Record(At("t", kLlm, now_bucket)));
  ASSERT_OK(usage_->Record(At("u", kVision, now_bucket / 60 - 24 * 60 - 5)));
  ASSERT_OK(usage_->Record(At("u", kVision, now_bucket / 60)));
  ASSERT_THAT(MustLoad("t"), ::testing::SizeIs(4));  // nothing dropped before a compaction

  ASSERT_OK(usage_->CompactNow());

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, oldest_kept, 1}, Row{0, now_bucket, 1}));
  EXPECT_THAT(MustLoad("u"), UnorderedElementsAre(Row{1, now_bucket / 60, 1}));
}

TEST_F(UsageStoreTest, CompactionUsesTheClockAtTheTimeItRuns) {
  SetNow(absl::FromUnixSeconds(1'000'000));
  ASSERT_OK(usage_->Record(At("t", kLlm, 1'000'000)));
  ASSERT_OK(usage_->CompactNow());
  ASSERT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, 1'000'000, 1}));

  SetNow(absl::FromUnixSeconds(1'000'000) + absl::Hours(25));
  ASSERT_OK(usage_->CompactNow());

  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, CompactionKeepsRowsOfClassesItDoesNotKnow) {
  SetNow(absl::FromUnixSeconds(1'700'000'000));
  ASSERT_OK(usage_->Record(At("t", kLlm, 5)));
  ASSERT_OK(usage_->Record(At("t", kVision, 5)));

  Reopen({}, {{"vision", absl::Minutes(1), absl::Hours(24)}});
  ASSERT_OK(usage_->CompactNow());
  Reopen();

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, 5, 1}));
}

TEST_F(UsageStoreTest, InjectedFailuresAreUnavailableAndCounted) {
  db_->InjectFailure(InjectedFailure::kWrites);

  EXPECT_THAT(usage_->Record(At("t", kLlm, 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(MustLoad("t"), IsEmpty());

  db_->InjectFailure(InjectedFailure::kReadsAndWrites);
  EXPECT_THAT(usage_->Load("t"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));

  db_->InjectFailure(InjectedFailure::kNone);
  EXPECT_OK(usage_->Record(At("t", kLlm, 1)));
  const WriteStats stats = usage_->write_stats();
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.write_errors, 1u);
  EXPECT_EQ(stats.in_flight, 0);
}

TEST_F(UsageStoreTest, AReadOnlyDatabaseRefusesRecordsWithRocksDbsMessage) {
  ASSERT_OK(usage_->Record(At("t", kLlm, 1)));

  Reopen({.read_only = true});

  EXPECT_THAT(usage_->Record(At("t", kLlm, 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read only")));
  EXPECT_THAT(usage_->CompactNow(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("compact")));
  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, 1, 1}));
}

TEST_F(UsageStoreTest, ARowThatDoesNotDecodeIsDataLoss) {
  // Write a 3-byte value behind the store's back, as a corrupt disk or a foreign writer might.
  ASSERT_TRUE(
      db_->db()
          ->Put(rocksdb::WriteOptions(), db_->usage(), EncodeUsageRowKey("t", "llm", 1), "bad")
          .ok());

  EXPECT_THAT(usage_->Load("t"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("decode")));
}

TEST_F(UsageStoreTest, AMergeOntoACorruptRowIsAnErrorNotAWrongCount) {
  ASSERT_TRUE(
      db_->db()
          ->Put(rocksdb::WriteOptions(), db_->usage(), EncodeUsageRowKey("t", "llm", 1), "bad")
          .ok());
  ASSERT_OK(usage_->Record(At("t", kLlm, 1)));

  EXPECT_THAT(usage_->Load("t"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("Corruption")));
}

}  // namespace
}  // namespace anyai::storage
