// Cluster mode's PostgreSQL stores against a real PostgreSQL (a throwaway server started by
// tests/testing/postgres_instance.py, which runs this binary) and real RocksDB in temp dirs:
// PostgresKeyStore's KeyStore contract (key_store_contract.cc, the suite RocksDbKeyStore passes
// too), replicas sharing one registry, its bounded pool, an outage
// (UNAVAILABLE without the DSN, healing without a new store), and HandoffUsage (one replica
// records and flushes, another over its own RocksDB loads the counts; merge by max; pruning).
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/caching_key_store.h"
#include "storage/database.h"
#include "storage/handoff_usage.h"
#include "storage/postgres_connection.h"
#include "storage/postgres_key_store.h"
#include "storage/sha256.h"
#include "storage/usage_store.h"
#include "tests/storage/key_store_contract.h"
#include "tests/testing/postgres_control.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::quota::Admission;
using ::anyai::quota::BucketCount;
using ::anyai::quota::ClassId;
using ::anyai::quota::Meter;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kCreated = absl::FromUnixSeconds(1700000000);

std::unique_ptr<PostgresPool> MustPool(std::string what = "key registry") {
  const std::string dsn = anyai::testing::PostgresDsn();
  EXPECT_FALSE(dsn.empty()) << "run under tests/testing/postgres_instance.py";
  absl::StatusOr<std::unique_ptr<PostgresPool>> pool =
      PostgresPool::Create({.dsn = dsn,
                            .max_connections = 4,
                            .acquire_timeout = absl::Seconds(5),
                            .connect_timeout = absl::Seconds(5),
                            .statement_timeout = absl::Seconds(10),
                            .what = std::move(what)});
  EXPECT_OK(pool);
  return pool.ok() ? *std::move(pool) : nullptr;
}

// Every test starts from empty tables.
void DropTables(PostgresPool& pool) {
  ASSERT_OK(pool.Exec("DROP TABLE IF EXISTS anyai_keys").status());
  ASSERT_OK(pool.Exec("DROP TABLE IF EXISTS anyai_usage").status());
}

class PostgresKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = MustPool();
    ASSERT_NE(pool_, nullptr);
    DropTables(*pool_);
    absl::StatusOr<std::unique_ptr<PostgresKeyStore>> store = PostgresKeyStore::Open(*pool_);
    ASSERT_OK(store);
    store_ = *std::move(store);
  }

  CreatedKey MustCreate(std::string plan = "free", std::string label = "") {
    absl::StatusOr<CreatedKey> created = store_->Create(plan, label, kCreated);
    EXPECT_OK(created);
    return created.ok() ? *created : CreatedKey{};
  }

  std::unique_ptr<PostgresPool> pool_;
  std::unique_ptr<PostgresKeyStore> store_;
};

// The KeyStore contract (key_store_contract.cc, shared with RocksDbKeyStore) on empty tables.
struct PostgresStore {
  std::unique_ptr<PostgresPool> pool;
  std::unique_ptr<PostgresKeyStore> store;
};
TestKeyStore MakePostgresStore() {
  auto held = std::make_shared<PostgresStore>();
  held->pool = MustPool();
  if (held->pool == nullptr) return {};
  DropTables(*held->pool);
  return Hold(held, PostgresKeyStore::Open(*held->pool));
}
INSTANTIATE_TEST_SUITE_P(Postgres, KeyStoreContractTest,
                         ::testing::Values(KeyStoreFactory{"Postgres", MakePostgresStore}),
                         KeyStoreFactory::Name);

TEST_F(PostgresKeyStoreTest, AKeyCreatedThroughOneReplicaWorksThroughAnother) {
  std::unique_ptr<PostgresPool> other_pool = MustPool();
  absl::StatusOr<std::unique_ptr<PostgresKeyStore>> other = PostgresKeyStore::Open(*other_pool);
  ASSERT_OK(other);
  CreatedKey created = MustCreate();

  EXPECT_OK(Authenticate(**other, created.key));
  ASSERT_OK((*other)->Revoke(created.record.key_id, kCreated));
  EXPECT_THAT(Authenticate(*store_, created.key), StatusIs(absl::StatusCode::kUnauthenticated, _));
}

TEST_F(PostgresKeyStoreTest, ConcurrentCallsShareTheBoundedPool) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        absl::StatusOr<CreatedKey> created = store_->Create("free", "", kCreated);
        if (!created.ok() || !Authenticate(*store_, created->key).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(pool_->open_connections(), 4);
  absl::StatusOr<KeyPage> page = store_->List(kMaxPageSize, "");
  ASSERT_OK(page);
  EXPECT_EQ(page->keys.size(), 80u);
}

// Stops PostgreSQL, checks what callers see, starts it again: the same store heals.
TEST_F(PostgresKeyStoreTest, AnOutageIsUnavailableWithoutWhereAndHealsWithoutANewStore) {
  CreatedKey created = MustCreate();
  absl::StatusOr<std::unique_ptr<CachingKeyStore>> cached = CachingKeyStore::Create(
      *store_,
      {.max_staleness = absl::Hours(1), .capacity = 100, .negative_capacity = 0, .clock = [] {
         return absl::Now();
       }});
  ASSERT_OK(cached);
  ASSERT_OK(Authenticate(**cached, created.key));  // now cached

  ASSERT_TRUE(anyai::testing::PostgresControl("stop"));
  const std::string dsn = anyai::testing::PostgresDsn();
  for (const absl::Status& status :
       {store_->Lookup(created.record.key_hash).status(),
        store_->Get(created.record.key_id).status(), store_->Create("free", "", kCreated).status(),
        store_->List(0, "").status(),
        Authenticate(**cached, std::string(kKeyPrefix) + std::string(64, 'a')).status()}) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("key registry")));
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("127.0.0.1")));
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(dsn)));
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("anyai")));
  }
  // A cached key keeps working through the outage (for its staleness).
  EXPECT_OK(Authenticate(**cached, created.key));

  ASSERT_TRUE(anyai::testing::PostgresControl("start"));
  EXPECT_OK(store_->Lookup(created.record.key_hash));
  EXPECT_OK(store_->Create("free", "", kCreated));
}

// Every pooled connection dies with a restart; the next calls notice and reconnect at once.
TEST_F(PostgresKeyStoreTest, ARestartOfPostgresBetweenCallsFailsNoCall) {
  CreatedKey created = MustCreate();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {  // fills the pool with idle connections
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) EXPECT_OK(store_->Lookup(created.record.key_hash));
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_GE(pool_->open_connections(), 2);

  ASSERT_TRUE(anyai::testing::PostgresControl("stop"));
  ASSERT_TRUE(anyai::testing::PostgresControl("start"));
  for (int i = 0; i < 8; ++i) EXPECT_OK(store_->Lookup(created.record.key_hash)) << "call " << i;
}

TEST(PostgresKeyStoreOpenTest, OpenSucceedsWhilePostgresIsDownAndTheSchemaIsMadeLater) {
  std::unique_ptr<PostgresPool> pool = MustPool();
  DropTables(*pool);
  ASSERT_TRUE(anyai::testing::PostgresControl("stop"));
  absl::StatusOr<std::unique_ptr<PostgresKeyStore>> store = PostgresKeyStore::Open(*pool);
  ASSERT_OK(store);
  EXPECT_THAT((*store)->List(0, "").status(), StatusIs(absl::StatusCode::kUnavailable, _));
  ASSERT_TRUE(anyai::testing::PostgresControl("start"));
  absl::StatusOr<CreatedKey> created = (*store)->Create("free", "", kCreated);
  ASSERT_OK(created);
  EXPECT_OK(Authenticate(**store, created->key));
}

// --- HandoffUsage ---------------------------------------------------------------------------

constexpr ClassId kLlm{0};

// llm: requests in 1-second sub-buckets (a 60 s window), tokens in 1-minute sub-buckets kept an
// hour.
std::vector<ClassInfo> TestClasses() {
  return {{.name = "llm",
           .requests = {absl::Seconds(1), absl::Seconds(60)},
           .tokens = {absl::Minutes(1), absl::Hours(1)}}};
}

using Row = std::tuple<int, Meter, int64_t, int64_t>;
std::vector<Row> Rows(const std::vector<BucketCount>& counts) {
  std::vector<Row> rows;
  for (const BucketCount& c : counts) {
    rows.emplace_back(c.feature_class.index, c.meter, c.bucket, c.count);
  }
  return rows;
}

Admission At(std::string_view tenant, int64_t bucket, int64_t cost = 1,
             Meter meter = Meter::kRequests) {
  return Admission{
      .tenant = tenant, .feature_class = kLlm, .bucket = bucket, .cost = cost, .meter = meter};
}

// One replica: its own RocksDB, its own UsageStore and HandoffUsage, the shared PostgreSQL.
struct Replica {
  explicit Replica(std::atomic<int64_t>& now_us) {
    absl::StatusOr<std::unique_ptr<Database>> opened = Database::Open({.data_dir = dir.path()});
    EXPECT_OK(opened);
    db = *std::move(opened);
    auto clock = [&now_us] { return absl::FromUnixMicros(now_us.load()); };
    absl::StatusOr<std::unique_ptr<UsageStore>> store =
        UsageStore::Open(*db, TestClasses(), {.clock = clock});
    EXPECT_OK(store);
    usage = *std::move(store);
    pool = MustPool("hand-off state");
    absl::StatusOr<std::unique_ptr<HandoffUsage>> made =
        HandoffUsage::Create(*usage, *pool,
                             {.flush_interval = absl::Seconds(1),
                              .prune_interval = absl::Minutes(1),
                              .max_pending_rows = 1000,
                              .clock = clock,
                              .start_writer = false});
    EXPECT_OK(made);
    handoff = *std::move(made);
  }
  std::vector<Row> MustLoad(std::string_view tenant) {
    absl::StatusOr<std::vector<BucketCount>> counts = handoff->Load(tenant);
    EXPECT_OK(counts);
    return counts.ok() ? Rows(*counts) : std::vector<Row>{};
  }

  TempDir dir;
  std::unique_ptr<Database> db;
  std::unique_ptr<UsageStore> usage;
  std::unique_ptr<PostgresPool> pool;
  std::unique_ptr<HandoffUsage> handoff;
};

class HandoffUsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::unique_ptr<PostgresPool> pool = MustPool();
    ASSERT_NE(pool, nullptr);
    DropTables(*pool);
  }
  // Bucket 1,700,000,000 of the 1 s sub-buckets is kCreated; "now" is a little later.
  static constexpr int64_t kBucket = 1700000000;
  static constexpr int64_t kTokenBucket = kBucket / 60;  // 1-minute sub-buckets
  std::atomic<int64_t> now_us_{absl::ToUnixMicros(kCreated + absl::Seconds(2))};
};

TEST_F(HandoffUsageTest, ANewOwnerLoadsWhatTheOldOneFlushed) {
  Replica a(now_us_);
  Replica b(now_us_);
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 3), At("key:t", kBucket + 1, 2)}));
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 4), At("key:u", kBucket, 1)}));
  // Recorded locally at once; shared only once flushed.
  EXPECT_THAT(a.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 7},
                                               Row{0, Meter::kRequests, kBucket + 1, 2}));
  EXPECT_TRUE(b.MustLoad("key:t").empty());

  ASSERT_OK(a.handoff->FlushNow());
  EXPECT_EQ(a.handoff->stats().rows_flushed, 3);
  EXPECT_EQ(a.handoff->stats().pending_rows, 0);
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 7},
                                               Row{0, Meter::kRequests, kBucket + 1, 2}));
  EXPECT_THAT(b.MustLoad("key:u"), ElementsAre(Row{0, Meter::kRequests, kBucket, 1}));
}

TEST_F(HandoffUsageTest, FlushesAddUpAcrossReplicasAndRefundsCount) {
  Replica a(now_us_);
  Replica b(now_us_);
  Replica c(now_us_);
  const int64_t tb = kTokenBucket;
  ASSERT_OK(a.handoff->Record({At("key:t", tb, 900, Meter::kTokens)}));
  ASSERT_OK(a.handoff->Record({At("key:t", tb, -588, Meter::kTokens)}));  // a settlement's refund
  ASSERT_OK(a.handoff->FlushNow());
  // B took over (A -> B): it loads 312 and records more; its flush adds to A's.
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kTokens, tb, 312}));
  ASSERT_OK(b.handoff->Record({At("key:t", tb, 100, Meter::kTokens)}));
  ASSERT_OK(b.handoff->FlushNow());
  // Back to A (B -> A, A restarted): the larger of A's own 312 and the shared 412.
  EXPECT_THAT(a.MustLoad("key:t"), ElementsAre(Row{0, Meter::kTokens, tb, 412}));
  EXPECT_THAT(c.MustLoad("key:t"), ElementsAre(Row{0, Meter::kTokens, tb, 412}));
}

TEST_F(HandoffUsageTest, LoadTakesThePerBucketMaxOfLocalAndShared) {
  Replica a(now_us_);
  Replica b(now_us_);
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 5), At("key:t", kBucket + 1, 1)}));
  ASSERT_OK(a.handoff->FlushNow());
  // B recorded on its own earlier, never flushed (e.g. it died with them unflushed): its local
  // rows stay; the shared ones win where larger.
  ASSERT_OK(b.usage->Record({At("key:t", kBucket, 2), At("key:t", kBucket + 1, 6)}));
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 5},
                                               Row{0, Meter::kRequests, kBucket + 1, 6}));
}

TEST_F(HandoffUsageTest, AFailedFlushKeepsItsDeltasForTheNextOne) {
  Replica a(now_us_);
  Replica b(now_us_);
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 3)}));
  ASSERT_TRUE(anyai::testing::PostgresControl("stop"));
  // Admissions never wait for PostgreSQL: recording still works.
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 1)}));
  EXPECT_THAT(a.handoff->FlushNow(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("hand-off state")));
  EXPECT_THAT(b.handoff->Load("key:t").status(), StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_EQ(a.handoff->stats().pending_rows, 1);
  EXPECT_EQ(a.handoff->stats().flush_failures, 1);
  ASSERT_TRUE(anyai::testing::PostgresControl("start"));
  ASSERT_OK(a.handoff->FlushNow());
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 4}));
}

TEST_F(HandoffUsageTest, ExpiredRowsArePrunedAndNeverSent) {
  Replica a(now_us_);
  Replica b(now_us_);
  ASSERT_OK(a.handoff->Record(
      {At("key:t", kBucket, 1), At("key:t", kBucket + 60, 1), At("key:t", 0, 10, Meter::kTokens)}));
  ASSERT_OK(a.handoff->FlushNow());
  std::unique_ptr<PostgresPool> pool = MustPool();
  auto count_rows = [&] {
    absl::StatusOr<PgResult> n = pool->Exec("SELECT count(*) FROM anyai_usage");
    EXPECT_OK(n);
    return n.ok() ? *PgResult::Int8(n->rows[0][0]) : -1;
  };
  // The tokens row (bucket 0: 1970, kept an hour) had expired already: it was not sent.
  EXPECT_EQ(count_rows(), 2);

  // 62 s after bucket kBucket ended (window 60 s + one 1 s sub-bucket): that row expires.
  now_us_ = absl::ToUnixMicros(kCreated + absl::Seconds(1 + 61 + 1));
  ASSERT_OK(a.handoff->PruneNow());
  EXPECT_EQ(count_rows(), 1);
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket + 60, 1}));
  // An unflushed delta of an expired bucket is dropped at the flush.
  ASSERT_OK(a.handoff->Record({At("key:t", kBucket, 1)}));
  ASSERT_OK(a.handoff->FlushNow());
  EXPECT_EQ(count_rows(), 1);
}

TEST_F(HandoffUsageTest, TheWriterThreadFlushesEveryIntervalAndAtDestruction) {
  Replica b(now_us_);
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(db);
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(**db, TestClasses());
  ASSERT_OK(usage);
  std::unique_ptr<PostgresPool> pool = MustPool("hand-off state");
  absl::StatusOr<std::unique_ptr<HandoffUsage>> a =
      HandoffUsage::Create(**usage, *pool,
                           {.flush_interval = absl::Milliseconds(50),
                            .prune_interval = absl::Minutes(1),
                            .max_pending_rows = 1000,
                            .clock = [this] { return absl::FromUnixMicros(now_us_.load()); },
                            .start_writer = true});
  ASSERT_OK(a);
  ASSERT_OK((*a)->Record({At("key:t", kBucket, 2)}));
  // Bounded wait for the writer (no timing assertion: only that it happens).
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((*a)->stats().flushes == 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 2}));
  ASSERT_OK((*a)->Record({At("key:t", kBucket, 5)}));
  a->reset();  // a planned leave: the last deltas are flushed
  EXPECT_THAT(b.MustLoad("key:t"), ElementsAre(Row{0, Meter::kRequests, kBucket, 7}));
}

TEST_F(HandoffUsageTest, PendingRowsAreBounded) {
  Replica a(now_us_);
  for (int i = 0; i < 1100; ++i) ASSERT_OK(a.handoff->Record({At("key:t", kBucket + i % 50, 1)}));
  for (int i = 0; i < 1100; ++i) {
    ASSERT_OK(a.handoff->Record({At("key:" + std::to_string(i), kBucket, 1)}));
  }
  EXPECT_EQ(a.handoff->stats().pending_rows, 1000);
  EXPECT_EQ(a.handoff->stats().dropped_rows, 150);
  // What is not shared is still recorded locally.
  EXPECT_THAT(a.MustLoad("key:1099"), ElementsAre(Row{0, Meter::kRequests, kBucket, 1}));
}

}  // namespace
}  // namespace anyai::storage
