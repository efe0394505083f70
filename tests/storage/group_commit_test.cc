// Group commit (storage/group_commit.h) through its user, the UsageStore, on a real RocksDB whose
// file system can hold a write in flight (FaultyStorage::HoldAppends): calls that arrive while a
// write is on the device share the next write, every call returns only after the write carrying
// it, a failed group write fails each of its calls and stores none, and a group never grows past
// its entry limit.
#include "storage/group_commit.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "rocksdb/write_batch.h"
#include "storage/database.h"
#include "storage/usage_row.h"
#include "storage/usage_store.h"
#include "tests/storage/faulty_file_system.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::quota::Admission;
using ::anyai::quota::BucketCount;
using ::anyai::quota::ClassId;
using ::anyai::quota::Meter;
using ::anyai::storage::testing::FaultyStorage;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;

constexpr ClassId kLlm{0};

Admission One(std::string_view tenant) {
  return Admission{
      .tenant = tenant, .feature_class = kLlm, .bucket = 7, .cost = 1, .meter = Meter::kRequests};
}

// Polls `done` every millisecond for up to 30 s (a bound, not a timing assertion).
template <typename Done>
bool Eventually(Done done) {
  for (int i = 0; i < 30'000; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return done();
}

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Database>> db =
        Database::Open({.data_dir = dir_.path(), .env = storage_.env()});
    ASSERT_OK(db.status());
    db_ = *std::move(db);
    absl::StatusOr<std::unique_ptr<UsageStore>> usage =
        UsageStore::Open(*db_, {{.name = "llm", .requests = {absl::Seconds(1), absl::Hours(1)}}});
    ASSERT_OK(usage.status());
    usage_ = *std::move(usage);
    ASSERT_OK(usage_->Record({One("warm-up")}));  // later appends are the WAL's alone
  }
  void TearDown() override { storage_.ReleaseAppends(); }

  int64_t Count(std::string_view tenant) {
    absl::StatusOr<std::vector<BucketCount>> rows = usage_->Load(tenant);
    EXPECT_OK(rows.status());
    int64_t sum = 0;
    if (rows.ok()) {
      for (const BucketCount& row : *rows) sum += row.count;
    }
    return sum;
  }

  // Starts a Record of tenant "<prefix><i>" on a thread for each i in [0, n); its status goes to
  // statuses[i].
  void RecordOnThreads(const std::string& prefix, int n, std::vector<absl::Status>& statuses) {
    statuses.resize(n);
    tenants_.reserve(tenants_.size() + n);
    for (int i = 0; i < n; ++i) {
      tenants_.push_back(absl::StrCat(prefix, i));
      threads_.emplace_back([this, &statuses, i, tenant = tenants_.back()] {
        statuses[i] = usage_->Record({One(tenant)});
      });
    }
  }
  void JoinAll() {
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

  TempDir dir_;
  FaultyStorage storage_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<UsageStore> usage_;
  std::vector<std::string> tenants_;
  std::vector<std::thread> threads_;
};

TEST_F(GroupCommitTest, CallsArrivingDuringAWriteShareTheNextWrite) {
  const WriteStats before = usage_->write_stats();
  storage_.HoldAppends();
  std::vector<absl::Status> first, rest;
  RecordOnThreads("first-", 1, first);
  ASSERT_TRUE(Eventually([&] { return storage_.held_appends() == 1; }));
  RecordOnThreads("rest-", 8, rest);
  ASSERT_TRUE(Eventually([&] { return usage_->write_stats().in_flight == 9; }));
  // Nobody has an answer while the write that carries their changes is unfinished.
  EXPECT_EQ(usage_->write_stats().calls, before.calls);

  storage_.ReleaseAppends();
  JoinAll();

  EXPECT_OK(first[0]);
  for (const absl::Status& s : rest) EXPECT_OK(s);
  const WriteStats after = usage_->write_stats();
  EXPECT_EQ(after.writes - before.writes, 2u);  // the first call's, and one for the other 8
  EXPECT_EQ(after.calls - before.calls, 9u);
  EXPECT_EQ(after.in_flight, 0);
  EXPECT_EQ(Count("first-0"), 1);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(Count(absl::StrCat("rest-", i)), 1) << i;
}

TEST_F(GroupCommitTest, AFailedGroupWriteFailsEachOfItsCallsAndStoresNone) {
  storage_.HoldAppends();
  std::vector<absl::Status> first, rest;
  RecordOnThreads("first-", 1, first);
  ASSERT_TRUE(Eventually([&] { return storage_.held_appends() == 1; }));
  RecordOnThreads("rest-", 5, rest);
  ASSERT_TRUE(Eventually([&] { return usage_->write_stats().in_flight == 6; }));
  db_->InjectFailure(InjectedFailure::kWrites);  // the next group's write fails
  storage_.ReleaseAppends();
  JoinAll();

  EXPECT_OK(first[0]);  // its write had passed the failure check
  EXPECT_EQ(Count("first-0"), 1);
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(rest[i],
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected storage failure")));
  }
  db_->InjectFailure(InjectedFailure::kNone);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Count(absl::StrCat("rest-", i)), 0) << i;
  EXPECT_EQ(usage_->write_stats().write_errors, 1u);  // one write failed, for five calls

  ASSERT_OK(usage_->Record({One("rest-0")}));
  EXPECT_EQ(Count("rest-0"), 1);
}

TEST_F(GroupCommitTest, AGroupTakesNoMoreThanItsEntryLimit) {
  GroupCommit commit(*db_, db_->write_options(), "test writes", /*max_group_entries=*/4);
  auto write_two = [&](std::string tenant) {
    const std::string key = EncodeUsageRowKey(tenant, "llm", Meter::kRequests, 1);
    const std::string key2 = EncodeUsageRowKey(tenant, "llm", Meter::kRequests, 2);
    return commit.Write(2, [&](rocksdb::WriteBatch& batch) {
      batch.Merge(db_->usage(), key, EncodeCount(1)).PermitUncheckedError();
      batch.Merge(db_->usage(), key2, EncodeCount(1)).PermitUncheckedError();
      return absl::OkStatus();
    });
  };
  storage_.HoldAppends();
  std::vector<std::thread> threads;
  std::vector<absl::Status> statuses(4);
  threads.emplace_back([&] { statuses[0] = write_two("a"); });
  ASSERT_TRUE(Eventually([&] { return storage_.held_appends() == 1; }));
  threads.emplace_back([&] { statuses[1] = write_two("b"); });
  threads.emplace_back([&] { statuses[2] = write_two("c"); });
  ASSERT_TRUE(Eventually([&] { return commit.stats().in_flight == 3; }));
  // "d" finds the open group full (b and c: 4 entries) and waits for the next one. The pause
  // gives it time to get there; if the limit were not kept it would join b and c.
  threads.emplace_back([&] { statuses[3] = write_two("d"); });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(commit.stats().in_flight, 3);
  storage_.ReleaseAppends();
  for (std::thread& thread : threads) thread.join();

  for (const absl::Status& s : statuses) EXPECT_OK(s);
  EXPECT_EQ(commit.stats().writes, 3u);  // {a}, {b, c}, {d}
  EXPECT_EQ(commit.stats().calls, 4u);
  for (const char* tenant : {"a", "b", "c", "d"}) EXPECT_EQ(Count(tenant), 2) << tenant;
}

TEST_F(GroupCommitTest, ACallWhoseAppendFailsGetsItsErrorAndAddsNothingToTheGroup) {
  GroupCommit commit(*db_, db_->write_options(), "test writes");
  storage_.HoldAppends();
  const std::string key = EncodeUsageRowKey("a", "llm", Meter::kRequests, 1);
  auto good = [&] {
    return commit.Write(1, [&](rocksdb::WriteBatch& batch) {
      batch.Merge(db_->usage(), key, EncodeCount(1)).PermitUncheckedError();
      return absl::OkStatus();
    });
  };
  absl::Status s1, s2, s3;
  std::thread t1([&] { s1 = good(); });
  ASSERT_TRUE(Eventually([&] { return storage_.held_appends() == 1; }));
  std::thread t2([&] { s2 = good(); });
  ASSERT_TRUE(Eventually([&] { return commit.stats().in_flight == 2; }));
  const std::string bad_key = EncodeUsageRowKey("bad", "llm", Meter::kRequests, 1);
  s3 = commit.Write(1, [&](rocksdb::WriteBatch& batch) {
    batch.Merge(db_->usage(), bad_key, EncodeCount(5)).PermitUncheckedError();
    return absl::InvalidArgumentError("not this one");
  });
  storage_.ReleaseAppends();
  t1.join();
  t2.join();

  EXPECT_OK(s1);
  EXPECT_OK(s2);
  EXPECT_THAT(s3, StatusIs(absl::StatusCode::kInvalidArgument, "not this one"));
  EXPECT_EQ(Count("a"), 2);
  EXPECT_EQ(Count("bad"), 0);  // rolled back out of the group it had appended to
  EXPECT_EQ(commit.stats().calls, 2u);
}

TEST_F(GroupCommitTest, ManyThreadsLoseNothingAndShareWrites) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 300;
  const WriteStats before = usage_->write_stats();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string tenant = absl::StrCat("t", t % 4);
      for (int i = 0; i < kPerThread; ++i) EXPECT_OK(usage_->Record({One(tenant)}));
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(Count(absl::StrCat("t", t)), kThreads / 4 * kPerThread);
  }
  const WriteStats after = usage_->write_stats();
  EXPECT_EQ(after.calls - before.calls, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LE(after.writes - before.writes, after.calls - before.calls);
  EXPECT_EQ(after.in_flight, 0);
}

}  // namespace
}  // namespace anyai::storage
