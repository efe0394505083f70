// Storage faults that heal (issue 12), injected through RocksDB's FileSystem (a full disk, an
// I/O error, a failing sync) under both durability modes: while the fault lasts every write is
// refused with UNAVAILABLE saying what and not where, the process does not abort and the
// database reports itself unhealthy; once the fault clears it resumes by itself, writes succeed
// again and nothing written before is lost, across a reopen too. A refused admission charges
// nothing.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "quota/plan.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"
#include "tests/storage/faulty_file_system.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::storage::testing::Fault;
using ::anyai::storage::testing::FaultName;
using ::anyai::storage::testing::FaultyStorage;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);
constexpr char kTenant[] = "ip:198.51.100.23";
// Far more than a resume needs (the retry interval below is 100 ms); only a hang reaches it.
constexpr absl::Duration kHealLimit = absl::Seconds(30);

struct FaultCase {
  Durability durability;
  Fault fault;
};

std::string CaseName(const ::testing::TestParamInfo<FaultCase>& info) {
  return absl::StrCat(info.param.durability == Durability::kFsync ? "fsync" : "process_crash", "_",
                      std::string(FaultName(info.param.fault)));
}

std::vector<FaultCase> AllCases() {
  std::vector<FaultCase> cases;
  for (Durability durability : {Durability::kProcessCrash, Durability::kFsync}) {
    for (Fault fault : {Fault::kNoSpace, Fault::kIOError, Fault::kSyncFails}) {
      cases.push_back({durability, fault});
    }
  }
  return cases;
}

// A refusal a client may see: UNAVAILABLE, the kind of fault, and nothing of where (no path, no
// file name, no tenant, no RocksDB wording).
MATCHER_P(IsCleanRefusal, dir, "is UNAVAILABLE saying what, not where") {
  const absl::Status& s = ::anyai::testing::GetStatus(arg);
  const std::string message(s.message());
  *result_listener << "whose status is " << s;
  return s.code() == absl::StatusCode::kUnavailable &&
         message.find("storage is unavailable (") == 0 &&
         message.find(std::string(dir)) == std::string::npos &&
         message.find("/tmp") == std::string::npos && message.find(".log") == std::string::npos &&
         message.find(".sst") == std::string::npos &&
         message.find("MANIFEST") == std::string::npos &&
         message.find(kTenant) == std::string::npos &&
         message.find("injected") == std::string::npos &&
         message.find("IO error") == std::string::npos;
}

bool WaitUntilHealthy(const Database& db) {
  const absl::Time deadline = absl::Now() + kHealLimit;
  while (!db.healthy()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

quota::Admission At(int64_t bucket) {
  return quota::Admission{.tenant = kTenant,
                          .feature_class = quota::ClassId{0},
                          .bucket = bucket,
                          .cost = 1,
                          .meter = quota::Meter::kRequests};
}

class StorageFaultTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  // Opens the database (through `env`, or the real file system) and both stores.
  void Open(rocksdb::Env* env) {
    Close();
    absl::StatusOr<std::unique_ptr<Database>> db =
        Database::Open({.data_dir = dir_.path(),
                        .durability = GetParam().durability,
                        .read_only = false,
                        .env = env,
                        .resume_interval = absl::Milliseconds(100)});
    ASSERT_OK(db);
    db_ = *std::move(db);
    absl::StatusOr<std::unique_ptr<UsageStore>> usage =
        UsageStore::Open(*db_, {{.name = "llm", .requests = {absl::Seconds(1), absl::Hours(24)}}},
                         {.clock = [] { return kStart; }});
    ASSERT_OK(usage);
    usage_ = *std::move(usage);
    absl::StatusOr<std::unique_ptr<RocksDbKeyStore>> keys = RocksDbKeyStore::Open(*db_);
    ASSERT_OK(keys);
    keys_ = *std::move(keys);
  }
  void Close() {
    keys_.reset();
    usage_.reset();
    db_.reset();
  }

  // The buckets of kTenant's stored rows.
  std::vector<int64_t> StoredBuckets() {
    absl::StatusOr<std::vector<quota::BucketCount>> counts = usage_->Load(kTenant);
    EXPECT_OK(counts);
    std::vector<int64_t> buckets;
    if (counts.ok()) {
      for (const quota::BucketCount& c : *counts) buckets.push_back(c.bucket);
    }
    return buckets;
  }

  // Makes the injected fault show: a key write is always synced, so it meets every fault (a
  // usage write in kProcessCrash mode syncs nothing and passes a failing sync).
  void TripTheFault() {
    EXPECT_THAT(keys_->Create("free", "during the fault", kStart), IsCleanRefusal(dir_.path()));
    EXPECT_FALSE(db_->healthy());
  }

  TempDir dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<UsageStore> usage_;
  std::unique_ptr<RocksDbKeyStore> keys_;
};

TEST_P(StorageFaultTest, WritesAreRefusedCleanlyWhileTheFaultLastsAndResumeOnceItClears) {
  FaultyStorage storage;
  Open(storage.env());
  for (int64_t bucket : {1, 2, 3}) ASSERT_OK(usage_->Record({At(bucket)}));
  absl::StatusOr<CreatedKey> before = keys_->Create("free", "before the fault", kStart);
  ASSERT_OK(before);
  EXPECT_TRUE(db_->healthy());

  storage.SetFault(GetParam().fault);
  TripTheFault();
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(usage_->Record({At(100 + i)}), IsCleanRefusal(dir_.path()));
    EXPECT_THAT(keys_->Create("free", "during the fault", kStart), IsCleanRefusal(dir_.path()));
    absl::SleepFor(absl::Milliseconds(50));  // let resume attempts run, and fail, meanwhile
  }
  EXPECT_FALSE(db_->healthy());
  EXPECT_GT(storage.injected(), 0);
  // Reads still work.
  EXPECT_THAT(StoredBuckets(), ::testing::ElementsAre(1, 2, 3));

  storage.SetFault(Fault::kNone);
  ASSERT_TRUE(WaitUntilHealthy(*db_)) << "not resumed within " << kHealLimit;
  ASSERT_OK(usage_->Record({At(200)}));
  absl::StatusOr<CreatedKey> after = keys_->Create("free", "after the fault", kStart);
  ASSERT_OK(after);
  EXPECT_THAT(StoredBuckets(), ::testing::ElementsAre(1, 2, 3, 200));

  Open(nullptr);
  EXPECT_THAT(StoredBuckets(), ::testing::ElementsAre(1, 2, 3, 200));
  EXPECT_OK(keys_->Get(before->record.key_id));
  EXPECT_OK(keys_->Get(after->record.key_id));
  absl::StatusOr<KeyPage> page = keys_->List(0, "");
  ASSERT_OK(page);
  EXPECT_EQ(page->keys.size(), 2u) << "a refused key write was stored";
}

TEST_P(StorageFaultTest, ClosingWhileTheFaultLastsLosesNothingAcknowledged) {
  FaultyStorage storage;
  Open(storage.env());
  for (int64_t bucket : {1, 2, 3}) ASSERT_OK(usage_->Record({At(bucket)}));
  absl::StatusOr<CreatedKey> before = keys_->Create("free", "before the fault", kStart);
  ASSERT_OK(before);

  storage.SetFault(GetParam().fault);
  TripTheFault();
  EXPECT_THAT(usage_->Record({At(100)}), IsCleanRefusal(dir_.path()));
  // The destructor used to sync the WAL whatever its state: RocksDB's assertion, SIGABRT.
  Close();

  storage.SetFault(Fault::kNone);
  Open(nullptr);
  EXPECT_TRUE(db_->healthy());
  EXPECT_THAT(StoredBuckets(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_OK(keys_->Get(before->record.key_id));
  ASSERT_OK(usage_->Record({At(4)}));
  // The refused key write stored nothing, except where only its sync failed: its WAL record
  // reached the file, and with the process gone before storage resumed, RocksDB replays it on
  // the next open (it cannot know the record is not durable). Never anything else.
  absl::StatusOr<KeyPage> page = keys_->List(0, "");
  ASSERT_OK(page);
  if (GetParam().fault == Fault::kSyncFails) {
    EXPECT_LE(page->keys.size(), 2u);
  } else {
    EXPECT_EQ(page->keys.size(), 1u);
  }
}

TEST_P(StorageFaultTest, ARefusedAdmissionChargesNothing) {
  FaultyStorage storage;
  Open(storage.env());
  const quota::PlanTable plans = quota::DefaultPlanTable();
  absl::StatusOr<std::unique_ptr<quota::Engine>> probe = quota::Engine::Create(plans, {});
  ASSERT_OK(probe);
  // The usage store of the engine's classes (the fixture's describes only one).
  usage_.reset();
  absl::StatusOr<std::unique_ptr<UsageStore>> usage =
      UsageStore::Open(*db_, UsageClassesOf(**probe), {.clock = [] { return kStart; }});
  ASSERT_OK(usage);
  usage_ = *std::move(usage);
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(plans, {.sink = usage_.get(), .loader = usage_.get()});
  ASSERT_OK(engine);
  const quota::PlanId free_plan = *(*engine)->FindPlan(quota::kFreePlan);
  const quota::ClassId llm = *(*engine)->FindClass(quota::kLlm);
  const auto used = [&](quota::Engine& e) {
    absl::StatusOr<quota::UsageSnapshot> snapshot = e.Usage(kTenant, free_plan, kStart);
    EXPECT_OK(snapshot);
    std::vector<std::pair<int64_t, int64_t>> figures;  // (used, in flight) of llm's windows
    if (!snapshot.ok()) return figures;
    for (const quota::ClassUsage& c : snapshot->classes) {
      if (c.feature_class != quota::kLlm) continue;
      for (const quota::WindowUsage& w : c.windows) figures.emplace_back(w.used, c.in_flight);
    }
    return figures;
  };
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<quota::Decision> d = (*engine)->Admit(kTenant, free_plan, llm, kStart);
    ASSERT_OK(d);
    ASSERT_TRUE(d->admitted);
  }
  const std::vector<std::pair<int64_t, int64_t>> before = used(**engine);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(before[0].first, 3);

  storage.SetFault(GetParam().fault);
  TripTheFault();
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT((*engine)->Admit(kTenant, free_plan, llm, kStart), IsCleanRefusal(dir_.path()));
    EXPECT_THAT((*engine)->Reserve(kTenant, free_plan, llm, quota::Cost{}, kStart),
                IsCleanRefusal(dir_.path()));
  }
  EXPECT_EQ(used(**engine), before);

  storage.SetFault(Fault::kNone);
  ASSERT_TRUE(WaitUntilHealthy(*db_)) << "not resumed within " << kHealLimit;
  EXPECT_EQ(used(**engine), before);
  absl::StatusOr<quota::Decision> d = (*engine)->Admit(kTenant, free_plan, llm, kStart);
  ASSERT_OK(d);
  EXPECT_TRUE(d->admitted);
  EXPECT_EQ(used(**engine)[0].first, 4);

  // And what is stored agrees: a fresh engine on the reopened database counts 4 as well.
  engine->reset();
  Open(nullptr);
  usage_.reset();
  usage = UsageStore::Open(*db_, UsageClassesOf(**probe), {.clock = [] { return kStart; }});
  ASSERT_OK(usage);
  usage_ = *std::move(usage);
  engine = quota::Engine::Create(plans, {.sink = usage_.get(), .loader = usage_.get()});
  ASSERT_OK(engine);
  EXPECT_EQ(used(**engine)[0].first, 4);
}

INSTANTIATE_TEST_SUITE_P(Faults, StorageFaultTest, ::testing::ValuesIn(AllCases()), CaseName);

}  // namespace
}  // namespace anyai::storage
