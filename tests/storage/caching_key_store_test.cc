#include "storage/caching_key_store.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::_;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

// The real RocksDbKeyStore, counting the Lookups that reach it. It can also hide one hash
// (answering NOT_FOUND for it, as if that key did not exist yet) and run a hook in the middle of
// a Lookup, after the store was read and before the answer goes back.
class CountingKeyStore final : public KeyStore {
 public:
  explicit CountingKeyStore(KeyStore& store) : store_(store) {}

  absl::StatusOr<CreatedKey> Create(std::string_view plan, std::string_view label,
                                    absl::Time now) override {
    absl::MutexLock lock(&mu_);
    if (pending_.has_value()) {  // "creates" the hidden key
      CreatedKey created = *std::move(pending_);
      pending_.reset();
      return created;
    }
    return store_.Create(plan, label, now);
  }
  absl::StatusOr<KeyRecord> Get(std::string_view key_id) override { return store_.Get(key_id); }
  absl::StatusOr<KeyPage> List(int page_size, std::string_view page_token) override {
    return store_.List(page_size, page_token);
  }
  absl::StatusOr<KeyRecord> Update(std::string_view key_id, const KeyUpdate& update) override {
    return store_.Update(key_id, update);
  }
  absl::StatusOr<KeyRecord> Revoke(std::string_view key_id, absl::Time now) override {
    return store_.Revoke(key_id, now);
  }
  absl::StatusOr<KeyRecord> Lookup(std::string_view key_hash) override {
    lookups_.fetch_add(1, std::memory_order_relaxed);
    bool hidden = false;
    std::function<void()> hook;
    {
      absl::MutexLock lock(&mu_);
      hidden = pending_.has_value() && pending_->record.key_hash == key_hash;
      hook = std::exchange(after_read_, nullptr);
    }
    absl::StatusOr<KeyRecord> record =
        hidden ? absl::NotFoundError("no key has this hash") : store_.Lookup(key_hash);
    if (hook) hook();
    return record;
  }

  int lookups() const { return lookups_.load(std::memory_order_relaxed); }
  // Until the next Create, `key` is unknown to Lookup; that Create returns it.
  void HideUntilCreate(CreatedKey key) {
    absl::MutexLock lock(&mu_);
    pending_ = std::move(key);
  }
  // Runs `hook` once, inside the next Lookup, after the store has answered it.
  void AfterNextRead(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    after_read_ = std::move(hook);
  }

 private:
  KeyStore& store_;
  std::atomic<int> lookups_{0};
  absl::Mutex mu_;
  std::optional<CreatedKey> pending_ ABSL_GUARDED_BY(mu_);
  std::function<void()> after_read_ ABSL_GUARDED_BY(mu_);
};

class CachingKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DatabaseOptions options;
    options.data_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(options);
    ASSERT_OK(db);
    db_ = *std::move(db);
    absl::StatusOr<std::unique_ptr<RocksDbKeyStore>> store = RocksDbKeyStore::Open(*db_);
    ASSERT_OK(store);
    rocksdb_ = *std::move(store);
    counting_ = std::make_unique<CountingKeyStore>(*rocksdb_);
    MakeCache({});
  }

  // Options as given, on the test's clock.
  void MakeCache(CachingKeyStoreOptions options) {
    options.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    absl::StatusOr<std::unique_ptr<CachingKeyStore>> cache =
        CachingKeyStore::Create(*counting_, std::move(options));
    ASSERT_OK(cache);
    cache_ = *std::move(cache);
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  CreatedKey MustCreate(KeyStore& store, const std::string& plan = "free") {
    absl::StatusOr<CreatedKey> created = store.Create(plan, "", kStart);
    EXPECT_OK(created);
    return created.ok() ? *created : CreatedKey{};
  }

  // Whether Lookup answers `key` revoked; fails the test on an error.
  bool SeenRevoked(const CreatedKey& key) {
    absl::StatusOr<KeyRecord> record = cache_->Lookup(key.record.key_hash);
    EXPECT_OK(record);
    return record.ok() && record->revoked;
  }

  TempDir dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<RocksDbKeyStore> rocksdb_;
  std::unique_ptr<CountingKeyStore> counting_;
  std::unique_ptr<CachingKeyStore> cache_;
  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) = kStart;
};

TEST_F(CachingKeyStoreTest, AHitDoesNotReadTheStore) {
  const CreatedKey key = MustCreate(*cache_, "premium");

  absl::StatusOr<KeyRecord> first = cache_->Lookup(key.record.key_hash);
  Advance(absl::Milliseconds(999));
  absl::StatusOr<KeyRecord> second = cache_->Lookup(key.record.key_hash);
  absl::StatusOr<KeyRecord> third = Authenticate(*cache_, key.key);

  ASSERT_OK(first);
  ASSERT_OK(second);
  ASSERT_OK(third);
  EXPECT_EQ(*first, key.record);
  EXPECT_EQ(*second, key.record);
  EXPECT_EQ(*third, key.record);
  EXPECT_EQ(counting_->lookups(), 1);
  EXPECT_EQ(cache_->size().records, 1);
}

TEST_F(CachingKeyStoreTest, ARevocationThroughTheCacheIsSeenAtOnce) {
  const CreatedKey key = MustCreate(*cache_);
  ASSERT_OK(Authenticate(*cache_, key.key));

  ASSERT_OK(cache_->Revoke(key.record.key_id, kStart));

  EXPECT_TRUE(SeenRevoked(key));
  EXPECT_THAT(Authenticate(*cache_, key.key), StatusIs(absl::StatusCode::kUnauthenticated,
                                                       ::testing::HasSubstr("invalid API key")));
}

TEST_F(CachingKeyStoreTest, APlanChangeThroughTheCacheIsSeenAtOnce) {
  const CreatedKey key = MustCreate(*cache_, "free");
  ASSERT_OK(cache_->Lookup(key.record.key_hash));

  ASSERT_OK(cache_->Update(key.record.key_id, KeyUpdate{.plan = "premium", .label = "moved"}));

  absl::StatusOr<KeyRecord> record = cache_->Lookup(key.record.key_hash);
  ASSERT_OK(record);
  EXPECT_EQ(record->plan, "premium");
  EXPECT_EQ(record->label, "moved");
}

TEST_F(CachingKeyStoreTest, ARevocationMadeElsewhereIsSeenAfterMaxStalenessAndNeverLater) {
  const CreatedKey key = MustCreate(*cache_);
  ASSERT_FALSE(SeenRevoked(key));  // read at kStart
  Advance(absl::Milliseconds(300));

  ASSERT_OK(rocksdb_->Revoke(key.record.key_id, kStart));  // as another replica would

  // Served from memory until a second after the read (which preceded the revocation)...
  EXPECT_FALSE(SeenRevoked(key));
  Advance(absl::Milliseconds(699));
  EXPECT_FALSE(SeenRevoked(key));
  // ...and from then on, revoked: at the latest 1 s after the revocation, and for good.
  Advance(absl::Milliseconds(1));
  for (int i = 0; i < 30; ++i) {
    EXPECT_TRUE(SeenRevoked(key)) << "at +" << i * 100 << "ms";
    Advance(absl::Milliseconds(100));
  }
  EXPECT_EQ(counting_->lookups(), 1 + 3);  // re-read at +1s, +2s and +3s
}

TEST_F(CachingKeyStoreTest, AReadThatRacesALocalRevocationIsNotCached) {
  const CreatedKey key = MustCreate(*cache_);
  // The first Lookup reads the key unrevoked; before it answers, this node revokes it.
  counting_->AfterNextRead([&] { ASSERT_OK(cache_->Revoke(key.record.key_id, kStart)); });

  EXPECT_FALSE(SeenRevoked(key));  // it began before the revocation: either answer is right

  EXPECT_TRUE(SeenRevoked(key));  // the stale read was not kept
}

TEST_F(CachingKeyStoreTest, NotFoundIsCachedAndClearedByCreate) {
  // A key whose hash was presented before it existed.
  const CreatedKey future = MustCreate(*rocksdb_);
  counting_->HideUntilCreate(future);
  EXPECT_THAT(cache_->Lookup(future.record.key_hash), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(Authenticate(*cache_, future.key), StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_EQ(counting_->lookups(), 1);
  EXPECT_EQ(cache_->size().unknown, 1);

  absl::StatusOr<CreatedKey> created = cache_->Create("free", "", kStart);

  ASSERT_OK(created);
  ASSERT_EQ(created->key, future.key);
  EXPECT_OK(Authenticate(*cache_, future.key));
  EXPECT_EQ(cache_->size().unknown, 0);
}

TEST_F(CachingKeyStoreTest, AKeyCreatedElsewhereIsSeenAfterMaxStaleness) {
  const CreatedKey future = MustCreate(*rocksdb_);
  counting_->HideUntilCreate(future);
  EXPECT_THAT(cache_->Lookup(future.record.key_hash), StatusIs(absl::StatusCode::kNotFound, _));
  ASSERT_OK(counting_->Create("free", "", kStart));  // the key appears, not through the cache

  Advance(absl::Milliseconds(999));
  EXPECT_THAT(cache_->Lookup(future.record.key_hash), StatusIs(absl::StatusCode::kNotFound, _));
  Advance(absl::Milliseconds(1));
  EXPECT_OK(cache_->Lookup(future.record.key_hash));
}

TEST_F(CachingKeyStoreTest, ErrorsAreNotCached) {
  const CreatedKey key = MustCreate(*cache_);
  db_->InjectFailure(InjectedFailure::kReadsAndWrites);
  EXPECT_THAT(cache_->Lookup(key.record.key_hash), StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_THAT(cache_->Lookup(Sha256("sk-anyai-unknown")),
              StatusIs(absl::StatusCode::kUnavailable, _));

  db_->InjectFailure(InjectedFailure::kNone);

  EXPECT_OK(cache_->Lookup(key.record.key_hash));
  EXPECT_THAT(cache_->Lookup(Sha256("sk-anyai-unknown")), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_EQ(counting_->lookups(), 4);
  EXPECT_THAT(cache_->Lookup("short"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(cache_->Lookup("short"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_EQ(cache_->size().records + cache_->size().unknown, 2);
}

TEST_F(CachingKeyStoreTest, AFreshEntryOutlivesAStorageFailureUntilItIsStale) {
  const CreatedKey key = MustCreate(*cache_);
  ASSERT_OK(cache_->Lookup(key.record.key_hash));
  db_->InjectFailure(InjectedFailure::kReadsAndWrites);

  Advance(absl::Milliseconds(999));
  EXPECT_OK(cache_->Lookup(key.record.key_hash));
  Advance(absl::Milliseconds(1));
  EXPECT_THAT(cache_->Lookup(key.record.key_hash), StatusIs(absl::StatusCode::kUnavailable, _));
  db_->InjectFailure(InjectedFailure::kNone);
}

TEST_F(CachingKeyStoreTest, AClockSteppedBackDoesNotExtendAnEntry) {
  const CreatedKey key = MustCreate(*cache_);
  ASSERT_OK(cache_->Lookup(key.record.key_hash));

  Advance(-absl::Milliseconds(1));
  ASSERT_OK(cache_->Lookup(key.record.key_hash));

  EXPECT_EQ(counting_->lookups(), 2);
}

TEST_F(CachingKeyStoreTest, ZeroStalenessReadsTheStoreEveryTime) {
  MakeCache({.max_staleness = absl::ZeroDuration()});
  const CreatedKey key = MustCreate(*cache_);

  for (int i = 0; i < 3; ++i) ASSERT_OK(cache_->Lookup(key.record.key_hash));

  EXPECT_EQ(counting_->lookups(), 3);
}

TEST_F(CachingKeyStoreTest, RefusesBadOptions) {
  EXPECT_THAT(CachingKeyStore::Create(*counting_, {.max_staleness = -absl::Seconds(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("max_staleness")));
  EXPECT_THAT(CachingKeyStore::Create(*counting_, {.capacity = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("capacity")));
  EXPECT_THAT(CachingKeyStore::Create(*counting_, {.negative_capacity = -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("negative")));
}

TEST_F(CachingKeyStoreTest, CapacityHoldsUnderManyDistinctKeys) {
  MakeCache({.capacity = 40, .negative_capacity = 20});
  std::vector<CreatedKey> keys;
  for (int i = 0; i < 120; ++i) keys.push_back(MustCreate(*rocksdb_));

  for (int round = 0; round < 2; ++round) {
    for (const CreatedKey& key : keys) {
      absl::StatusOr<KeyRecord> record = cache_->Lookup(key.record.key_hash);
      ASSERT_OK(record);
      EXPECT_EQ(*record, key.record);
      EXPECT_LE(cache_->size().records, 40);
    }
  }
  for (int i = 0; i < 2000; ++i) {
    EXPECT_THAT(cache_->Lookup(Sha256("sk-anyai-flood-" + std::to_string(i))),
                StatusIs(absl::StatusCode::kNotFound, _));
  }
  EXPECT_LE(cache_->size().records, 40);
  EXPECT_GT(cache_->size().records, 20);
  EXPECT_LE(cache_->size().unknown, 20);
  EXPECT_GT(cache_->size().unknown, 0);
}

TEST_F(CachingKeyStoreTest, AFloodOfUnknownKeysDoesNotEvictKnownOnes) {
  MakeCache({.capacity = 1000, .negative_capacity = 100});
  std::vector<CreatedKey> keys;
  for (int i = 0; i < 10; ++i) keys.push_back(MustCreate(*cache_));
  for (const CreatedKey& key : keys) ASSERT_OK(cache_->Lookup(key.record.key_hash));

  for (int i = 0; i < 5000; ++i) (void)cache_->Lookup(Sha256("sk-anyai-" + std::to_string(i)));
  const int before = counting_->lookups();
  for (const CreatedKey& key : keys) ASSERT_OK(cache_->Lookup(key.record.key_hash));

  EXPECT_EQ(counting_->lookups(), before);
  EXPECT_LE(cache_->size().unknown, 100);
}

// 8 threads look keys up while some revoke and change plans, on a clock that moves forward.
// Each thread checks that a revocation it made is seen by its own next Lookup; TSan checks the
// rest.
TEST_F(CachingKeyStoreTest, ManyThreadsLookUpAndRevoke) {
  MakeCache({.capacity = 8, .negative_capacity = 4});  // small: eviction happens too
  std::vector<CreatedKey> keys;
  for (int i = 0; i < 24; ++i) keys.push_back(MustCreate(*cache_));
  std::atomic<int> revoked{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(t);
      for (int i = 0; i < 3000; ++i) {
        const CreatedKey& key = keys[random() % keys.size()];
        if (i % 1000 == 999) {
          // Each thread revokes 3 keys of its own (keys t, t+8, t+16) and changes a plan.
          const CreatedKey& mine = keys[t + 8 * (i / 1000)];
          ASSERT_OK(cache_->Revoke(mine.record.key_id, kStart));
          EXPECT_TRUE(SeenRevoked(mine));
          revoked.fetch_add(1);
        } else if (i % 500 == 250) {
          ASSERT_OK(cache_->Update(key.record.key_id, KeyUpdate{.label = "t"}));
        } else if (i % 7 == 0) {
          (void)cache_->Lookup(Sha256("sk-anyai-none-" + std::to_string(i)));
        } else {
          ASSERT_OK(cache_->Lookup(key.record.key_hash));
        }
        if (i % 100 == 0) Advance(absl::Milliseconds(50));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(revoked.load(), 24);
  for (const CreatedKey& key : keys) EXPECT_TRUE(SeenRevoked(key));
  EXPECT_LE(cache_->size().records, 8);
  EXPECT_LE(cache_->size().unknown, 4);
}

}  // namespace
}  // namespace anyai::storage
