#include "storage/usage_store.h"

#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "quota/plan.h"
#include "rocksdb/db.h"
#include "storage/database.h"
#include "storage/usage_row.h"
#include "storage/usage_schema.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::quota {
// For readable failures: gtest finds it by argument-dependent lookup.
void PrintTo(Meter meter, std::ostream* os) { *os << MeterName(meter); }
}  // namespace anyai::quota

namespace anyai::storage {
namespace {

using ::anyai::quota::Admission;
using ::anyai::quota::BucketCount;
using ::anyai::quota::ClassId;
using ::anyai::quota::Meter;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr ClassId kLlm{0};
constexpr ClassId kVision{1};
constexpr Meter kRequests = Meter::kRequests;
constexpr Meter kTokens = Meter::kTokens;
constexpr Meter kSpend = Meter::kSpend;

// llm: requests in 1-second sub-buckets (a 60 s shortest window) kept for a day, tokens in
// 1-minute sub-buckets (an hour) kept for an hour, spend not limited; vision: requests in
// 1-minute sub-buckets (an hour) kept for a day.
std::vector<ClassInfo> TestClasses() {
  return {{.name = "llm",
           .requests = {absl::Seconds(1), absl::Hours(24)},
           .tokens = {absl::Minutes(1), absl::Hours(1)}},
          {.name = "vision", .requests = {absl::Minutes(1), absl::Hours(24)}}};
}

// (class index, meter, bucket, count) of a BucketCount, for readable expectations.
using Row = std::tuple<int, Meter, int64_t, int64_t>;
std::vector<Row> Rows(const std::vector<BucketCount>& counts) {
  std::vector<Row> rows;
  for (const BucketCount& c : counts) {
    rows.emplace_back(c.feature_class.index, c.meter, c.bucket, c.count);
  }
  return rows;
}

Admission At(std::string_view tenant, ClassId feature_class, int64_t bucket, int64_t cost = 1,
             Meter meter = kRequests) {
  return Admission{.tenant = tenant,
                   .feature_class = feature_class,
                   .bucket = bucket,
                   .cost = cost,
                   .meter = meter};
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

  // One change, as a batch of one.
  absl::Status Record(const Admission& change) { return usage_->Record({change}); }

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
  ASSERT_OK(Record(At("key:0123456789abcdef", kLlm, 1000)));
  ASSERT_OK(Record(At("key:0123456789abcdef", kVision, 16)));
  ASSERT_OK(Record(At("key:0123456789abcdef", kLlm, 17, /*cost=*/900, kTokens)));

  EXPECT_THAT(MustLoad("key:0123456789abcdef"),
              UnorderedElementsAre(Row{0, kRequests, 1000, 1}, Row{1, kRequests, 16, 1},
                                   Row{0, kTokens, 17, 900}));
}

TEST_F(UsageStoreTest, RecordsOfTheSameBucketAddUp) {
  ASSERT_OK(Record(At("ip:203.0.113.7", kLlm, 1000)));
  ASSERT_OK(Record(At("ip:203.0.113.7", kLlm, 1000)));
  ASSERT_OK(Record(At("ip:203.0.113.7", kLlm, 1000, /*cost=*/3)));
  ASSERT_OK(Record(At("ip:203.0.113.7", kLlm, 1001)));

  EXPECT_THAT(MustLoad("ip:203.0.113.7"),
              UnorderedElementsAre(Row{0, kRequests, 1000, 5}, Row{0, kRequests, 1001, 1}));
}

TEST_F(UsageStoreTest, MetersOfTheSameClassAndBucketAreKeptApart) {
  ASSERT_OK(usage_->Record({At("t", kLlm, 50, 1, kRequests), At("t", kLlm, 50, 900, kTokens),
                            At("t", kLlm, 50, 4500, kSpend)}));
  ASSERT_OK(usage_->Record({At("t", kLlm, 50, 1, kRequests), At("t", kLlm, 50, 100, kTokens)}));

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 50, 2}, Row{0, kTokens, 50, 1000},
                                         Row{0, kSpend, 50, 4500}));
}

TEST_F(UsageStoreTest, LoadReturnsRowsInClassThenMeterThenBucketOrder) {
  ASSERT_OK(Record(At("t", kVision, 3)));
  ASSERT_OK(Record(At("t", kLlm, 9, 5, kSpend)));
  ASSERT_OK(Record(At("t", kLlm, 1, 7, kTokens)));
  ASSERT_OK(Record(At("t", kLlm, 256)));
  ASSERT_OK(Record(At("t", kLlm, 2)));

  EXPECT_THAT(MustLoad("t"),
              ElementsAre(Row{0, kRequests, 2, 1}, Row{0, kRequests, 256, 1}, Row{0, kTokens, 1, 7},
                          Row{0, kSpend, 9, 5}, Row{1, kRequests, 3, 1}));
}

TEST_F(UsageStoreTest, LoadReturnsOnlyTheGivenTenant) {
  ASSERT_OK(Record(At("ip:1.2.3.4", kLlm, 10)));
  ASSERT_OK(Record(At("ip:1.2.3.45", kLlm, 20, 3, kTokens)));
  ASSERT_OK(Record(At("ip:1.2.3", kLlm, 30)));

  EXPECT_THAT(MustLoad("ip:1.2.3.4"), UnorderedElementsAre(Row{0, kRequests, 10, 1}));
  EXPECT_THAT(MustLoad("ip:1.2.3.45"), UnorderedElementsAre(Row{0, kTokens, 20, 3}));
  EXPECT_THAT(MustLoad("ip:1.2.3"), UnorderedElementsAre(Row{0, kRequests, 30, 1}));
  EXPECT_THAT(MustLoad("ip:9.9.9.9"), IsEmpty());
}

TEST_F(UsageStoreTest, CountsSurviveReopen) {
  for (int i = 0; i < 10; ++i) ASSERT_OK(Record(At("key:aaaaaaaaaaaaaaaa", kLlm, 7)));
  ASSERT_OK(Record(At("key:aaaaaaaaaaaaaaaa", kVision, 8, /*cost=*/2)));
  ASSERT_OK(Record(At("key:aaaaaaaaaaaaaaaa", kLlm, 7, /*cost=*/40, kSpend)));

  Reopen();

  EXPECT_THAT(MustLoad("key:aaaaaaaaaaaaaaaa"),
              UnorderedElementsAre(Row{0, kRequests, 7, 10}, Row{1, kRequests, 8, 2},
                                   Row{0, kSpend, 7, 40}));
}

TEST_F(UsageStoreTest, CountsSurviveReopenInFsyncMode) {
  Reopen({.durability = Durability::kFsync});
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(usage_->Record({At("t", kLlm, 7), At("t", kLlm, 7, 30, kTokens)}));
  }

  Reopen({.durability = Durability::kFsync});

  EXPECT_THAT(MustLoad("t"),
              UnorderedElementsAre(Row{0, kRequests, 7, 10}, Row{0, kTokens, 7, 300}));
}

TEST_F(UsageStoreTest, MergesKeepAddingAfterAFlushAndCompaction) {
  ASSERT_OK(Record(At("t", kLlm, 7, /*cost=*/4)));
  ASSERT_OK(usage_->CompactNow());
  ASSERT_OK(Record(At("t", kLlm, 7, /*cost=*/2)));

  Reopen();
  ASSERT_OK(Record(At("t", kLlm, 7)));

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, kRequests, 7, 7}));
}

TEST_F(UsageStoreTest, NegativeDeltasSumThroughMergeCompactionAndReopen) {
  // A reservation of 900 tokens, folded into the row's base value by a compaction...
  ASSERT_OK(usage_->Record({At("t", kLlm, 7), At("t", kLlm, 7, 900, kTokens)}));
  ASSERT_OK(usage_->CompactNow());
  // ...settled at 312: a refund of 588 merged on top of that base.
  ASSERT_OK(Record(At("t", kLlm, 7, -588, kTokens)));
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 7, 1}, Row{0, kTokens, 7, 312}));

  Reopen();
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 7, 1}, Row{0, kTokens, 7, 312}));

  // Refund and charge operands in one memtable, then all folded by a compaction.
  ASSERT_OK(Record(At("t", kLlm, 7, 50, kTokens)));
  ASSERT_OK(Record(At("t", kLlm, 7, -362, kTokens)));
  ASSERT_OK(Record(At("t", kLlm, 8, -5, kTokens)));  // a refund whose reservation row is gone
  ASSERT_OK(usage_->CompactNow());
  Reopen();

  EXPECT_THAT(MustLoad("t"),
              ElementsAre(Row{0, kRequests, 7, 1}, Row{0, kTokens, 7, 0}, Row{0, kTokens, 8, -5}));
}

TEST_F(UsageStoreTest, RowsWrittenBeforeMetersReadAsRequests) {
  // Written as the version before meters did: a Merge of an unsigned count at a key without a
  // meter byte (bytes spelled out, not built with today's encoder).
  const std::string old_key("t\0llm\0\0\0\0\0\0\0\0\x07", 14);
  ASSERT_TRUE(db_->db()
                  ->Merge(rocksdb::WriteOptions(), db_->usage(), old_key,
                          std::string("\x03\0\0\0\0\0\0\0", 8))
                  .ok());
  ASSERT_OK(usage_->CompactNow());
  Reopen();

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 7, 3}));
  // Today's request changes land on the very same row; tokens have their own.
  ASSERT_OK(usage_->Record({At("t", kLlm, 7, 2), At("t", kLlm, 7, 10, kTokens)}));
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 7, 5}, Row{0, kTokens, 7, 10}));
}

TEST_F(UsageStoreTest, ClassesAreMatchedByNameNotIndexAcrossRestarts) {
  ASSERT_OK(Record(At("t", kLlm, 1)));
  ASSERT_OK(Record(At("t", kVision, 2)));
  ASSERT_OK(Record(At("t", kVision, 2, 9, kTokens)));

  // The next configuration lists the classes the other way round and drops "llm".
  Reopen({}, {{.name = "image_generation", .requests = {absl::Seconds(1), absl::Hours(24)}},
              {.name = "vision", .requests = {absl::Minutes(1), absl::Hours(24)}}});

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{1, kRequests, 2, 1}, Row{1, kTokens, 2, 9}));
}

TEST_F(UsageStoreTest, ConcurrentRecordsAreAllCounted) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_OK(usage_->Record({At("hot", kLlm, 42), At("hot", kLlm, 42, 10, kTokens),
                                  At("hot", kLlm, 42, -3, kTokens)}));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_THAT(MustLoad("hot"), ElementsAre(Row{0, kRequests, 42, kThreads * kPerThread},
                                           Row{0, kTokens, 42, 7 * kThreads * kPerThread}));
  // Group commit: calls that meet share writes, never more writes than calls.
  EXPECT_EQ(usage_->write_stats().calls, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LE(usage_->write_stats().writes, static_cast<uint64_t>(kThreads * kPerThread));
}

TEST_F(UsageStoreTest, ABatchIsOneWriteAndMaySpanTenants) {
  ASSERT_OK(usage_->Record(
      {At("a", kLlm, 1), At("a", kLlm, 1, 20, kTokens), At("b", kVision, 2, /*cost=*/2)}));

  EXPECT_EQ(usage_->write_stats().writes, 1u);
  EXPECT_THAT(MustLoad("a"), ElementsAre(Row{0, kRequests, 1, 1}, Row{0, kTokens, 1, 20}));
  EXPECT_THAT(MustLoad("b"), ElementsAre(Row{1, kRequests, 2, 2}));
}

TEST_F(UsageStoreTest, ABatchWithOneInvalidChangeWritesNothing) {
  ASSERT_OK(Record(At("t", kLlm, 1)));

  EXPECT_THAT(
      usage_->Record(
          {At("t", kLlm, 1), At("t", kLlm, 1, 900, kTokens), At("t", kLlm, -1, 5, kSpend)}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("usage change 2: negative bucket")));
  EXPECT_THAT(usage_->Record({At("t", kLlm, 1), At("", kLlm, 1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("usage change 1")));

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1, 1}));
  EXPECT_EQ(usage_->write_stats().writes, 1u);
}

TEST_F(UsageStoreTest, AFailedBatchWritesNothingAndARetryWritesItAll) {
  const std::vector<Admission> batch = {At("t", kLlm, 1), At("t", kLlm, 1, 900, kTokens),
                                        At("t", kLlm, 1, 4500, kSpend)};
  db_->InjectFailure(InjectedFailure::kWrites);

  EXPECT_THAT(usage_->Record(batch),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected storage failure")));
  EXPECT_THAT(MustLoad("t"), IsEmpty());

  db_->InjectFailure(InjectedFailure::kNone);
  ASSERT_OK(usage_->Record(batch));
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1, 1}, Row{0, kTokens, 1, 900},
                                         Row{0, kSpend, 1, 4500}));
  const WriteStats stats = usage_->write_stats();
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.write_errors, 1u);
}

TEST_F(UsageStoreTest, ABatchRefusedByRocksDbWritesNothing) {
  ASSERT_OK(Record(At("t", kLlm, 1)));
  Reopen({.read_only = true});

  // What, not where: the tenant and the batch's size are logged, not returned.
  EXPECT_THAT(usage_->Record({At("t", kLlm, 1), At("t", kLlm, 1, 900, kTokens)}),
              StatusIs(absl::StatusCode::kUnavailable, "storage is unavailable (read only)"));

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1, 1}));
}

TEST_F(UsageStoreTest, RejectsInvalidTenants) {
  const std::string with_nul("ip:1.2.3.4\0x", 12);

  EXPECT_THAT(Record(At(with_nul, kLlm, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(usage_->Load(with_nul),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(Record(At("", kLlm, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(usage_->Load(std::string(kMaxTenantSize + 1, 't')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
}

TEST_F(UsageStoreTest, RejectsUnknownClassesAndMetersAndNegativeBuckets) {
  EXPECT_THAT(Record(At("t", ClassId{2}, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class")));
  EXPECT_THAT(Record(At("t", ClassId{-1}, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class")));
  EXPECT_THAT(Record(At("t", kLlm, -1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bucket")));
  EXPECT_THAT(Record(At("t", kLlm, 1, 1, static_cast<Meter>(quota::kMeterCount))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown meter 3")));
  EXPECT_THAT(Record(At("t", kLlm, 1, 1, static_cast<Meter>(-1))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown meter -1")));
  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, ABatchOfZeroCostsWritesNothing) {
  db_->InjectFailure(InjectedFailure::kWrites);  // nothing to write, so nothing to fail

  ASSERT_OK(usage_->Record({At("t", kLlm, 1, /*cost=*/0), At("t", kLlm, 1, 0, kTokens)}));
  ASSERT_OK(usage_->Record({}));

  db_->InjectFailure(InjectedFailure::kNone);
  ASSERT_OK(usage_->Record({At("t", kLlm, 1, 0), At("t", kLlm, 1, 12, kTokens)}));
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kTokens, 1, 12}));
  EXPECT_EQ(usage_->write_stats().writes, 1u);
}

TEST_F(UsageStoreTest, OpenRejectsAnInvalidSchema) {
  EXPECT_THAT(
      UsageStore::Open(*db_, {{.name = "llm", .requests = {absl::ZeroDuration(), absl::Hours(1)}}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("llm")));
}

TEST_F(UsageStoreTest, CompactionDropsExpiredRowsAndKeepsLiveOnes) {
  // llm keeps a request row while its sub-bucket ended at most 24 h + 1 s before now.
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  const int64_t now_bucket = 1'700'000'000;                // 1-second sub-buckets
  const int64_t oldest_kept = now_bucket - 24 * 3600 - 2;  // ends exactly 24 h + 1 s ago
  SetNow(now);
  ASSERT_OK(Record(At("t", kLlm, 5)));
  ASSERT_OK(Record(At("t", kLlm, oldest_kept - 1)));
  ASSERT_OK(Record(At("t", kLlm, oldest_kept - 1)));
  ASSERT_OK(Record(At("t", kLlm, oldest_kept)));
  ASSERT_OK(Record(At("t", kLlm, now_bucket)));
  ASSERT_OK(Record(At("u", kVision, now_bucket / 60 - 24 * 60 - 5)));
  ASSERT_OK(Record(At("u", kVision, now_bucket / 60)));
  ASSERT_THAT(MustLoad("t"), ::testing::SizeIs(4));  // nothing dropped before a compaction

  ASSERT_OK(usage_->CompactNow());

  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, kRequests, oldest_kept, 1},
                                                  Row{0, kRequests, now_bucket, 1}));
  EXPECT_THAT(MustLoad("u"), UnorderedElementsAre(Row{1, kRequests, now_bucket / 60, 1}));
}

TEST_F(UsageStoreTest, CompactionDropsEachMetersRowsByThatMetersWindows) {
  // llm tokens: 1-minute sub-buckets, kept while a bucket ended at most 1 h + 1 min ago;
  // requests: kept a day; spend: no windows, kept.
  const absl::Time now = absl::FromUnixSeconds(1'700'000'040);
  const int64_t now_minute = 1'700'000'040 / 60;
  const int64_t oldest_token_kept = now_minute - 60 - 2;  // ends exactly 61 min ago
  SetNow(now);
  ASSERT_OK(
      usage_->Record({At("t", kLlm, 1'700'000'040 - 2 * 3600),  // 2 h ago: kept
                      At("t", kLlm, oldest_token_kept - 1, 100, kTokens),
                      At("t", kLlm, oldest_token_kept, 200, kTokens),
                      At("t", kLlm, now_minute, 300, kTokens), At("t", kLlm, 0, 400, kSpend)}));

  ASSERT_OK(usage_->CompactNow());

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1'700'000'040 - 2 * 3600, 1},
                                         Row{0, kTokens, oldest_token_kept, 200},
                                         Row{0, kTokens, now_minute, 300}, Row{0, kSpend, 0, 400}));
}

TEST_F(UsageStoreTest, RowsOfAMeterWithoutWindowsAreKeptUntilItHasWindowsAgain) {
  const std::vector<ClassInfo> with_spend = {{.name = "llm",
                                              .requests = {absl::Seconds(1), absl::Hours(24)},
                                              .spend = {absl::Minutes(1), absl::Hours(1)}}};
  Reopen({}, with_spend);
  SetNow(absl::FromUnixSeconds(1'700'000'000));
  ASSERT_OK(Record(At("t", kLlm, 1'700'000'000 / 60, 4500, kSpend)));

  // A configuration without spend windows cannot date the row: a week later it is still kept.
  Reopen({}, {{.name = "llm", .requests = {absl::Seconds(1), absl::Hours(24)}}});
  SetNow(absl::FromUnixSeconds(1'700'000'000) + absl::Hours(24 * 7));
  ASSERT_OK(usage_->CompactNow());
  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kSpend, 1'700'000'000 / 60, 4500}));

  // Spend windows back: the row is a week old, past an hour, and goes.
  Reopen({}, with_spend);
  ASSERT_OK(usage_->CompactNow());
  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, CompactionUsesTheClockAtTheTimeItRuns) {
  SetNow(absl::FromUnixSeconds(1'000'000));
  ASSERT_OK(Record(At("t", kLlm, 1'000'000)));
  ASSERT_OK(Record(At("t", kLlm, 1'000'000 / 60, 5, kTokens)));
  ASSERT_OK(usage_->CompactNow());
  ASSERT_THAT(MustLoad("t"), ::testing::SizeIs(2));

  SetNow(absl::FromUnixSeconds(1'000'000) + absl::Hours(2));
  ASSERT_OK(usage_->CompactNow());
  ASSERT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1'000'000, 1}));

  SetNow(absl::FromUnixSeconds(1'000'000) + absl::Hours(25));
  ASSERT_OK(usage_->CompactNow());

  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

TEST_F(UsageStoreTest, CompactionKeepsRowsOfClassesItDoesNotKnow) {
  SetNow(absl::FromUnixSeconds(1'700'000'000));
  ASSERT_OK(Record(At("t", kLlm, 5)));
  ASSERT_OK(Record(At("t", kLlm, 5, 7, kTokens)));
  ASSERT_OK(Record(At("t", kVision, 5)));

  Reopen({}, {{.name = "vision", .requests = {absl::Minutes(1), absl::Hours(24)}}});
  ASSERT_OK(usage_->CompactNow());
  Reopen();

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 5, 1}, Row{0, kTokens, 5, 7}));
}

TEST_F(UsageStoreTest, InjectedFailuresAreUnavailableAndCounted) {
  db_->InjectFailure(InjectedFailure::kWrites);

  EXPECT_THAT(Record(At("t", kLlm, 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(MustLoad("t"), IsEmpty());

  db_->InjectFailure(InjectedFailure::kReadsAndWrites);
  EXPECT_THAT(usage_->Load("t"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));

  db_->InjectFailure(InjectedFailure::kNone);
  EXPECT_OK(Record(At("t", kLlm, 1)));
  const WriteStats stats = usage_->write_stats();
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.write_errors, 1u);
  EXPECT_EQ(stats.in_flight, 0);
}

TEST_F(UsageStoreTest, AReadOnlyDatabaseRefusesRecordsSayingSo) {
  ASSERT_OK(Record(At("t", kLlm, 1)));

  Reopen({.read_only = true});

  EXPECT_THAT(Record(At("t", kLlm, 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read only")));
  EXPECT_THAT(usage_->CompactNow(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read only")));
  EXPECT_THAT(MustLoad("t"), UnorderedElementsAre(Row{0, kRequests, 1, 1}));
}

TEST_F(UsageStoreTest, ARowThatDoesNotDecodeIsDataLoss) {
  // Write a 3-byte value behind the store's back, as a corrupt disk or a foreign writer might.
  ASSERT_TRUE(db_->db()
                  ->Put(rocksdb::WriteOptions(), db_->usage(),
                        EncodeUsageRowKey("t", "llm", kTokens, 1), "bad")
                  .ok());

  // What, not where: the tenant and the row are in the log, not in the status.
  EXPECT_THAT(usage_->Load("t"),
              StatusIs(absl::StatusCode::kDataLoss, "stored usage does not decode"));
}

TEST_F(UsageStoreTest, AMergeOntoACorruptRowIsAnErrorNotAWrongCount) {
  ASSERT_TRUE(db_->db()
                  ->Put(rocksdb::WriteOptions(), db_->usage(),
                        EncodeUsageRowKey("t", "llm", kRequests, 1), "bad")
                  .ok());
  ASSERT_OK(Record(At("t", kLlm, 1)));

  EXPECT_THAT(usage_->Load("t"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stored data is corrupt")));
}

TEST_F(UsageStoreTest, KeysOfAnotherLayoutAreSkippedOnLoadAndKeptByCompaction) {
  // A meter this version does not know (a later version's, say).
  const std::string future_key("t\0llm\0\x03\0\0\0\0\0\0\0\x01", 15);
  ASSERT_TRUE(
      db_->db()->Merge(rocksdb::WriteOptions(), db_->usage(), future_key, EncodeCount(9)).ok());
  ASSERT_OK(Record(At("t", kLlm, 1)));
  SetNow(absl::FromUnixSeconds(4'000'000'000));

  EXPECT_THAT(MustLoad("t"), ElementsAre(Row{0, kRequests, 1, 1}));
  ASSERT_OK(usage_->CompactNow());

  std::string value;
  ASSERT_TRUE(db_->db()->Get(rocksdb::ReadOptions(), db_->usage(), future_key, &value).ok());
  EXPECT_EQ(DecodeCount(value), 9);
  EXPECT_THAT(MustLoad("t"), IsEmpty());
}

}  // namespace
}  // namespace anyai::storage
