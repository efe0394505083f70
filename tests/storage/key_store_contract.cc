#include "tests/storage/key_store_contract.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"

namespace anyai::storage {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

namespace {
const absl::Time kCreated = absl::FromUnixSeconds(1700000000);
}  // namespace

void KeyStoreContractTest::SetUp() {
  held_ = GetParam().make();
  store_ = held_.store;
  ASSERT_NE(store_, nullptr) << GetParam().name << ": no store";
}

CreatedKey KeyStoreContractTest::MustCreate(const std::string& plan, const std::string& label) {
  absl::StatusOr<CreatedKey> created = store_->Create(plan, label, kCreated);
  EXPECT_OK(created);
  return created.ok() ? *created : CreatedKey{};
}

TEST_P(KeyStoreContractTest, CreateReturnsAWellFormedRandomKeyAndItsRecord) {
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

TEST_P(KeyStoreContractTest, CreatedKeysAreDistinctAndWellFormed) {
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

TEST_P(KeyStoreContractTest, LookupFindsTheRecordByTheHashOfTheKey) {
  CreatedKey created = MustCreate("premium", "x");

  absl::StatusOr<KeyRecord> record = store_->Lookup(Sha256(created.key));

  ASSERT_OK(record);
  EXPECT_EQ(*record, created.record);
}

TEST_P(KeyStoreContractTest, LookupOfAnUnknownHashIsNotFound) {
  EXPECT_THAT(store_->Lookup(Sha256("sk-anyai-unknown")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("hash")));
}

TEST_P(KeyStoreContractTest, LookupRejectsAHashOfTheWrongSize) {
  EXPECT_THAT(store_->Lookup("short"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
}

TEST_P(KeyStoreContractTest, GetFindsTheRecordByKeyId) {
  CreatedKey created = MustCreate("free", "label");

  absl::StatusOr<KeyRecord> record = store_->Get(created.record.key_id);

  ASSERT_OK(record);
  EXPECT_EQ(*record, created.record);
}

TEST_P(KeyStoreContractTest, GetOfAnUnknownKeyIdIsNotFound) {
  EXPECT_THAT(store_->Get("0123456789abcdef"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_P(KeyStoreContractTest, GetRejectsAMalformedKeyId) {
  EXPECT_THAT(store_->Get("0123456789ABCDEF"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("16 lowercase hex")));
  EXPECT_THAT(store_->Get("abc"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("abc")));
}

TEST_P(KeyStoreContractTest, CreateRejectsAnEmptyPlanAndOversizedFields) {
  EXPECT_THAT(store_->Create("", "", kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
  EXPECT_THAT(store_->Create(std::string(kMaxPlanNameSize + 1, 'p'), "", kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
  EXPECT_THAT(store_->Create("free", std::string(kMaxLabelSize + 1, 'l'), kCreated),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label")));
}

TEST_P(KeyStoreContractTest, ListPagesThroughEveryKeyInKeyIdOrder) {
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

TEST_P(KeyStoreContractTest, ListOfAnEmptyStoreIsOneEmptyPage) {
  absl::StatusOr<KeyPage> page = store_->List(0, "");

  ASSERT_OK(page);
  EXPECT_TRUE(page->keys.empty());
  EXPECT_EQ(page->next_page_token, "");
}

TEST_P(KeyStoreContractTest, ListWithAnExactMultipleOfThePageSizeEndsWithoutAnEmptyPage) {
  for (int i = 0; i < 4; ++i) MustCreate();

  absl::StatusOr<KeyPage> first = store_->List(2, "");
  ASSERT_OK(first);
  absl::StatusOr<KeyPage> second = store_->List(2, first->next_page_token);
  ASSERT_OK(second);

  EXPECT_EQ(first->keys.size(), 2u);
  EXPECT_EQ(second->keys.size(), 2u);
  EXPECT_EQ(second->next_page_token, "");
}

TEST_P(KeyStoreContractTest, ListRejectsBadPageSizesAndTokens) {
  EXPECT_THAT(store_->List(-1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(store_->List(kMaxPageSize + 1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(store_->List(10, "garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_P(KeyStoreContractTest, UpdateChangesOnlyTheGivenFields) {
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

TEST_P(KeyStoreContractTest, UpdateOfAnUnknownKeyIsNotFoundAndABadPlanIsRejected) {
  CreatedKey created = MustCreate();

  EXPECT_THAT(store_->Update("0123456789abcdef", KeyUpdate{.plan = "premium"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
  EXPECT_THAT(store_->Update(created.record.key_id, KeyUpdate{.plan = ""}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plan")));
}

TEST_P(KeyStoreContractTest, RevokeMarksTheKeyRevokedAndIsIdempotent) {
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

TEST_P(KeyStoreContractTest, RevokeOfAnUnknownKeyIsNotFound) {
  EXPECT_THAT(store_->Revoke("0123456789abcdef", kCreated),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_P(KeyStoreContractTest, AuthenticateAcceptsAKeyUntilItIsRevoked) {
  CreatedKey created = MustCreate("premium", "");

  absl::StatusOr<KeyRecord> before = Authenticate(*store_, created.key);
  ASSERT_OK(store_->Revoke(created.record.key_id, kCreated + absl::Minutes(1)));
  absl::StatusOr<KeyRecord> after = Authenticate(*store_, created.key);

  ASSERT_OK(before);
  EXPECT_EQ(before->plan, "premium");
  EXPECT_THAT(after, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
}

TEST_P(KeyStoreContractTest, AuthenticateRefusesMalformedAndUnknownKeysAlike) {
  const std::string unknown = "sk-anyai-" + std::string(64, 'a');

  EXPECT_THAT(Authenticate(*store_, ""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
  EXPECT_THAT(Authenticate(*store_, "sk-anyai-short"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
  EXPECT_THAT(Authenticate(*store_, unknown),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
}

TEST_P(KeyStoreContractTest, LabelsAndPlansAreStoredAsTheirBytes) {
  const std::string label("bytes \0 and \xff\xfe, quotes ' \" and $1", 34);
  CreatedKey created = MustCreate("plan'; DROP TABLE anyai_keys; --", label);

  absl::StatusOr<KeyRecord> got = store_->Get(created.record.key_id);
  ASSERT_OK(got);
  EXPECT_EQ(got->label, label);
  EXPECT_EQ(got->plan, "plan'; DROP TABLE anyai_keys; --");
}

TEST_P(KeyStoreContractTest, AnUpdateOfARevokedKeyKeepsItRevoked) {
  CreatedKey created = MustCreate("free", "old");
  ASSERT_OK(store_->Revoke(created.record.key_id, kCreated + absl::Seconds(5)));

  absl::StatusOr<KeyRecord> relabelled =
      store_->Update(created.record.key_id, KeyUpdate{.label = "new"});

  ASSERT_OK(relabelled);
  EXPECT_TRUE(relabelled->revoked);
  EXPECT_EQ(relabelled->revoked_at, kCreated + absl::Seconds(5));
  EXPECT_EQ(relabelled->label, "new");
  EXPECT_THAT(Authenticate(*store_, created.key),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
}

}  // namespace anyai::storage
