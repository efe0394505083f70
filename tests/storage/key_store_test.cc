// RocksDbKeyStore: the KeyStore contract (key_store_contract.cc, shared with PostgreSQL's store)
// on a real RocksDB in a temp dir, and what only it promises: keys survive reopening, the clear
// key never reaches disk, storage faults are UNAVAILABLE and change nothing, a read-only
// database refuses writes, concurrent updates never undo a revoke.
#include "storage/key_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/sha256.h"
#include "tests/storage/key_store_contract.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;

const absl::Time kCreated = absl::FromUnixSeconds(1700000000);

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(DatabaseOptions options = {}) {
    store_.reset();
    db_.reset();
    options.data_dir = dir_.path();
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(options);
    ASSERT_OK(db);
    db_ = *std::move(db);
    absl::StatusOr<std::unique_ptr<RocksDbKeyStore>> store = RocksDbKeyStore::Open(*db_);
    ASSERT_OK(store);
    store_ = *std::move(store);
  }

  CreatedKey MustCreate(const std::string& plan = "free", const std::string& label = "") {
    absl::StatusOr<CreatedKey> created = store_->Create(plan, label, kCreated);
    EXPECT_OK(created);
    return created.ok() ? *created : CreatedKey{};
  }

  TempDir dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<RocksDbKeyStore> store_;
};

// The KeyStore contract (key_store_contract.cc) on RocksDB in a fresh temp dir.
struct RocksDbStore {
  TempDir dir;
  std::unique_ptr<Database> db;
  std::unique_ptr<RocksDbKeyStore> store;
};
TestKeyStore MakeRocksDbStore() {
  auto held = std::make_shared<RocksDbStore>();
  DatabaseOptions options;
  options.data_dir = held->dir.path();
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(options);
  if (!db.ok()) {
    ADD_FAILURE() << db.status();
    return {};
  }
  held->db = *std::move(db);
  return Hold(held, RocksDbKeyStore::Open(*held->db));
}
INSTANTIATE_TEST_SUITE_P(RocksDb, KeyStoreContractTest,
                         ::testing::Values(KeyStoreFactory{"RocksDb", MakeRocksDbStore}),
                         KeyStoreFactory::Name);

TEST_F(KeyStoreTest, MaskShowsOnlyThePrefixAndFourDigitsAtEachEnd) {
  const std::string key = "sk-anyai-" + std::string("3f9a") + std::string(56, '0') + "c01d";

  EXPECT_EQ(MaskKey(key),
            "sk-anyai-3f9a\xE2\x80\xA6"
            "c01d");
  EXPECT_EQ(MaskKey("not a key"), "sk-anyai-\xE2\x80\xA6");
}

TEST_F(KeyStoreTest, KeysSurviveReopen) {
  CreatedKey kept = MustCreate("premium", "kept");
  CreatedKey revoked = MustCreate("free", "revoked");
  ASSERT_OK(store_->Revoke(revoked.record.key_id, kCreated + absl::Seconds(5)));
  absl::StatusOr<KeyRecord> revoked_record = store_->Get(revoked.record.key_id);
  ASSERT_OK(revoked_record);

  Reopen();

  absl::StatusOr<KeyRecord> kept_after = Authenticate(*store_, kept.key);
  ASSERT_OK(kept_after);
  EXPECT_EQ(*kept_after, kept.record);
  absl::StatusOr<KeyRecord> revoked_after = store_->Get(revoked.record.key_id);
  ASSERT_OK(revoked_after);
  EXPECT_EQ(*revoked_after, *revoked_record);
  EXPECT_THAT(Authenticate(*store_, revoked.key),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
}

TEST_F(KeyStoreTest, TheClearKeyIsNeverWrittenToDisk) {
  CreatedKey created = MustCreate("free", "label");
  const std::string random_part = created.key.substr(9);

  store_.reset();
  db_.reset();  // closes, so every file is complete

  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string contents((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    EXPECT_EQ(contents.find(random_part), std::string::npos) << entry.path();
    EXPECT_EQ(contents.find(absl::BytesToHexString(created.record.key_hash)), std::string::npos)
        << entry.path();
  }
}

TEST_F(KeyStoreTest, StorageFailuresAreUnavailableNotUnauthenticated) {
  CreatedKey created = MustCreate();

  db_->InjectFailure(InjectedFailure::kReadsAndWrites);

  EXPECT_THAT(Authenticate(*store_, created.key),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(store_->Get(created.record.key_id),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(store_->List(10, ""),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(store_->Create("free", "", kCreated),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
}

TEST_F(KeyStoreTest, FailedWritesAreCountedAndChangeNothing) {
  CreatedKey created = MustCreate("free", "");
  db_->InjectFailure(InjectedFailure::kWrites);

  EXPECT_THAT(store_->Update(created.record.key_id, KeyUpdate{.plan = "premium"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(store_->Revoke(created.record.key_id, kCreated),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));

  db_->InjectFailure(InjectedFailure::kNone);
  absl::StatusOr<KeyRecord> record = store_->Get(created.record.key_id);
  ASSERT_OK(record);
  EXPECT_EQ(*record, created.record);
  const WriteStats stats = store_->write_stats();
  EXPECT_EQ(stats.writes, 3u);
  EXPECT_EQ(stats.write_errors, 2u);
  EXPECT_EQ(stats.in_flight, 0);
}

TEST_F(KeyStoreTest, AReadOnlyDatabaseRefusesWritesWithRocksDbsMessage) {
  CreatedKey created = MustCreate();

  Reopen({.read_only = true});

  EXPECT_OK(Authenticate(*store_, created.key));
  EXPECT_THAT(store_->Create("free", "", kCreated),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read only")));
  EXPECT_THAT(store_->Revoke(created.record.key_id, kCreated),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("read only")));
}

TEST_F(KeyStoreTest, ConcurrentUpdatesNeverUndoARevoke) {
  CreatedKey created = MustCreate();
  const std::string key_id = created.record.key_id;

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_OK(store_->Update(key_id, KeyUpdate{.label = std::to_string(t * 100 + i)}));
      }
    });
  }
  threads.emplace_back([&] { EXPECT_OK(store_->Revoke(key_id, kCreated)); });
  for (std::thread& thread : threads) thread.join();

  absl::StatusOr<KeyRecord> record = store_->Get(key_id);
  ASSERT_OK(record);
  EXPECT_TRUE(record->revoked);
}

}  // namespace
}  // namespace anyai::storage
