#include "storage/key_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
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
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

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

TEST_F(KeyStoreTest, CreateReturnsAWellFormedRandomKeyAndItsRecord) {
  absl::StatusOr<CreatedKey> created = store_->Create("premium", "ci bot", kCreated);

  ASSERT_OK(created);
  EXPECT_THAT(created->key, MatchesRegex("sk-anyai-[0-9a-f]{64}"));
  EXPECT_TRUE(IsWellFormedKey(created->key));
  const KeyRecord& record = created->record;
  EXPECT_EQ(record.key_hash, Sha256(created->key));
  EXPECT_EQ(record.key_id, absl::BytesToHexString(record.key_hash.substr(0, 8)));
  EXPECT_EQ(record.plan, "premium");
  EXPECT_EQ(record.label, "ci bot");
  EXPECT_EQ(record.created, kCreated);
  EXPECT_FALSE(record.revoked);
  EXPECT_EQ(record.masked_key, MaskKey(created->key));
}

TEST_F(KeyStoreTest, CreatedKeysAreDistinctAndWellFormed) {
  std::set<std::string> keys;
  std::set<std::string> ids;

  for (int i = 0; i < 50; ++i) {
    CreatedKey created = MustCreate();
    EXPECT_TRUE(IsWellFormedKey(created.key)) << created.key;
    keys.insert(created.key);
    ids.insert(created.record.key_id);
  }

  EXPECT_EQ(keys.size(), 50u);
  EXPECT_EQ(ids.size(), 50u);
}

TEST_F(KeyStoreTest, MaskShowsOnlyThePrefixAndFourDigitsAtEachEnd) {
  const std::string key = "sk-anyai-" + std::string("3f9a") + std::string(56, '0') + "c01d";

  EXPECT_EQ(MaskKey(key),
            "sk-anyai-3f9a\xE2\x80\xA6"
            "c01d");
  EXPECT_EQ(MaskKey("not a key"), "sk-anyai-\xE2\x80\xA6");
}

TEST_F(KeyStoreTest, LookupFindsTheRecordByTheHashOfTheKey) {
  CreatedKey created = MustCreate("premium", "x");

  absl::StatusOr<KeyRecord> record = store_->Lookup(Sha256(created.key));

  ASSERT_OK(record);
  EXPECT_EQ(*record, created.record);
}

TEST_F(KeyStoreTest, LookupOfAnUnknownHashIsNotFound) {
  EXPECT_THAT(store_->Lookup(Sha256("sk-anyai-unknown")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("hash")));
}

TEST_F(KeyStoreTest, LookupRejectsAHashOfTheWrongSize) {
  EXPECT_THAT(store_->Lookup("short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
}

TEST_F(KeyStoreTest, GetFindsTheRecordByKeyId) {
  CreatedKey created = MustCreate("free", "label");

  absl::StatusOr<KeyRecord> record = store_->Get(created.record.key_id);

  ASSERT_OK(record);
  EXPECT_EQ(*record, created.record);
}

TEST_F(KeyStoreTest, GetOfAnUnknownKeyIdIsNotFound) {
  EXPECT_THAT(store_->Get("0123456789abcdef"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_F(KeyStoreTest, GetRejectsAMalformedKeyId) {
  EXPECT_THAT(store_->Get("0123456789ABCDEF"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("16 lowercase hex")));
  EXPECT_THAT(store_->Get("abc"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("abc")));
}

TEST_F(KeyStoreTest, CreateRejectsAnEmptyPlanAndOversizedFields) {
  EXPECT_THAT(store_->Create("", "", kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
  EXPECT_THAT(store_->Create(std::string(kMaxPlanNameSize + 1, 'p'), "", kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
  EXPECT_THAT(store_->Create("free", std::string(kMaxLabelSize + 1, 'l'), kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label")));
}

TEST_F(KeyStoreTest, ListPagesThroughEveryKeyInKeyIdOrder) {
  std::vector<std::string> expected_ids;
  for (int i = 0; i < 25; ++i) expected_ids.push_back(MustCreate().record.key_id);
  std::sort(expected_ids.begin(), expected_ids.end());

  std::vector<std::string> listed_ids;
  std::vector<size_t> page_sizes;
  std::string token;
  do {
    absl::StatusOr<KeyPage> page = store_->List(10, token);
    ASSERT_OK(page);
    page_sizes.push_back(page->keys.size());
    for (const KeyRecord& record : page->keys) listed_ids.push_back(record.key_id);
    token = page->next_page_token;
  } while (!token.empty());

  EXPECT_EQ(listed_ids, expected_ids);
  EXPECT_EQ(page_sizes, (std::vector<size_t>{10, 10, 5}));
}

TEST_F(KeyStoreTest, ListOfAnEmptyStoreIsOneEmptyPage) {
  absl::StatusOr<KeyPage> page = store_->List(0, "");

  ASSERT_OK(page);
  EXPECT_TRUE(page->keys.empty());
  EXPECT_EQ(page->next_page_token, "");
}

TEST_F(KeyStoreTest, ListWithAnExactMultipleOfThePageSizeEndsWithoutAnEmptyPage) {
  for (int i = 0; i < 4; ++i) MustCreate();

  absl::StatusOr<KeyPage> first = store_->List(2, "");
  ASSERT_OK(first);
  absl::StatusOr<KeyPage> second = store_->List(2, first->next_page_token);
  ASSERT_OK(second);

  EXPECT_EQ(first->keys.size(), 2u);
  EXPECT_EQ(second->keys.size(), 2u);
  EXPECT_EQ(second->next_page_token, "");
}

TEST_F(KeyStoreTest, ListRejectsBadPageSizesAndTokens) {
  EXPECT_THAT(store_->List(-1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(store_->List(kMaxPageSize + 1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(store_->List(10, "garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(KeyStoreTest, UpdateChangesOnlyTheGivenFields) {
  CreatedKey created = MustCreate("free", "old label");

  absl::StatusOr<KeyRecord> plan_changed =
      store_->Update(created.record.key_id, KeyUpdate{.plan = "premium"});
  absl::StatusOr<KeyRecord> label_changed =
      store_->Update(created.record.key_id, KeyUpdate{.label = "new label"});

  ASSERT_OK(plan_changed);
  EXPECT_EQ(plan_changed->plan, "premium");
  EXPECT_EQ(plan_changed->label, "old label");
  ASSERT_OK(label_changed);
  EXPECT_EQ(label_changed->plan, "premium");
  EXPECT_EQ(label_changed->label, "new label");
  absl::StatusOr<KeyRecord> stored = store_->Lookup(created.record.key_hash);
  ASSERT_OK(stored);
  EXPECT_EQ(*stored, *label_changed);
}

TEST_F(KeyStoreTest, UpdateOfAnUnknownKeyIsNotFoundAndABadPlanIsRejected) {
  CreatedKey created = MustCreate();

  EXPECT_THAT(store_->Update("0123456789abcdef", KeyUpdate{.plan = "premium"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
  EXPECT_THAT(store_->Update(created.record.key_id, KeyUpdate{.plan = ""}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
}

TEST_F(KeyStoreTest, RevokeMarksTheKeyRevokedAndIsIdempotent) {
  CreatedKey created = MustCreate();
  const absl::Time first = kCreated + absl::Hours(1);

  absl::StatusOr<KeyRecord> revoked = store_->Revoke(created.record.key_id, first);
  absl::StatusOr<KeyRecord> again = store_->Revoke(created.record.key_id, first + absl::Hours(1));

  ASSERT_OK(revoked);
  EXPECT_TRUE(revoked->revoked);
  EXPECT_EQ(revoked->revoked_at, first);
  ASSERT_OK(again);
  EXPECT_EQ(*again, *revoked);
  absl::StatusOr<KeyRecord> looked_up = store_->Lookup(created.record.key_hash);
  ASSERT_OK(looked_up);
  EXPECT_TRUE(looked_up->revoked);
}

TEST_F(KeyStoreTest, RevokeOfAnUnknownKeyIsNotFound) {
  EXPECT_THAT(store_->Revoke("0123456789abcdef", kCreated),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_F(KeyStoreTest, AuthenticateAcceptsAKeyUntilItIsRevoked) {
  CreatedKey created = MustCreate("premium", "");

  absl::StatusOr<KeyRecord> before = Authenticate(*store_, created.key);
  ASSERT_OK(store_->Revoke(created.record.key_id, kCreated + absl::Minutes(1)));
  absl::StatusOr<KeyRecord> after = Authenticate(*store_, created.key);

  ASSERT_OK(before);
  EXPECT_EQ(before->plan, "premium");
  EXPECT_THAT(after, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
}

TEST_F(KeyStoreTest, AuthenticateRefusesMalformedAndUnknownKeysAlike) {
  const std::string unknown = "sk-anyai-" + std::string(64, 'a');

  EXPECT_THAT(Authenticate(*store_, ""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
  EXPECT_THAT(Authenticate(*store_, "sk-anyai-short"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
  EXPECT_THAT(Authenticate(*store_, unknown),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
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
