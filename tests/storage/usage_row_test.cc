// The usage row layout (usage_row.h) and the retention rule (usage_schema.h), without RocksDB.
#include "storage/usage_row.h"

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/usage_schema.h"
#include "tests/testing/status_matchers.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

TEST(UsageRowTest, KeyIsTenantNulClassNulBigEndianBucket) {
  const std::string key = EncodeUsageRowKey("ip:203.0.113.7", "llm", 0x0102030405060708);

  EXPECT_EQ(key, std::string("ip:203.0.113.7\0llm\0\x01\x02\x03\x04\x05\x06\x07\x08", 27));
}

TEST(UsageRowTest, KeysDecodeToWhatWasEncoded) {
  const std::string key = EncodeUsageRowKey("key:0123456789abcdef", "closed_llm", 28'333'333);

  const std::optional<UsageRowKey> row = DecodeUsageRowKey(key);

  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->tenant, "key:0123456789abcdef");
  EXPECT_EQ(row->class_name, "closed_llm");
  EXPECT_EQ(row->bucket, 28'333'333);
}

TEST(UsageRowTest, KeysOfATenantSortByClassThenBucket) {
  EXPECT_LT(EncodeUsageRowKey("t", "llm", 255), EncodeUsageRowKey("t", "llm", 256));
  EXPECT_LT(EncodeUsageRowKey("t", "llm", 1'000'000), EncodeUsageRowKey("t", "vision", 0));
  // A tenant's prefix does not cover a longer tenant that starts with the same bytes.
  EXPECT_NE(EncodeUsageRowKey("ip:1.2.3.45", "llm", 0).rfind(UsageRowPrefix("ip:1.2.3.4"), 0), 0u);
}

TEST(UsageRowTest, MalformedKeysDoNotDecode) {
  EXPECT_FALSE(DecodeUsageRowKey("").has_value());
  EXPECT_FALSE(DecodeUsageRowKey("no separators at all").has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x01\x02", 8)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("\0llm\0\0\0\0\0\0\0\0\0", 13)).has_value());
  EXPECT_FALSE(
      DecodeUsageRowKey(std::string("t\0\0\0\0\0\0\0\0\0\0", 11)).has_value());  // empty class
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x80\0\0\0\0\0\0\0", 14)).has_value());
}

TEST(UsageRowTest, CountsAreEightByteLittleEndian) {
  EXPECT_EQ(EncodeCount(0x0102), std::string("\x02\x01\0\0\0\0\0\0", 8));
  EXPECT_EQ(DecodeCount(EncodeCount(123456789)), 123456789u);
  EXPECT_FALSE(DecodeCount("short").has_value());
}

TEST(UsageRowTest, ValidTenantsAreNonEmptyBoundedAndNulFree) {
  EXPECT_OK(ValidateTenant("ip:203.0.113.7"));
  EXPECT_OK(ValidateTenant("ip:2001:db8::1"));
  EXPECT_THAT(ValidateTenant(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ValidateTenant(std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(ValidateTenant(std::string(kMaxTenantSize + 1, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes")));
}

TEST(UsageSchemaTest, ARowExpiresOnceItsBucketEndedMoreThanTheLongestWindowAndASubBucketAgo) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema =
      UsageSchema::Create({{"llm", absl::Seconds(1), absl::Seconds(60)}});
  ASSERT_OK(schema);
  const absl::Time now = absl::FromUnixSeconds(10'000);

  // Bucket b covers [b, b + 1) seconds. The boundary: end == now - 61 s is kept.
  EXPECT_FALSE((*schema)->Expired(0, 10'000 - 62, now));
  EXPECT_TRUE((*schema)->Expired(0, 10'000 - 63, now));
  EXPECT_FALSE((*schema)->Expired(0, 10'000, now));
  EXPECT_FALSE((*schema)->RowExpired(EncodeUsageRowKey("t", "llm", 10'000 - 62), now));
  EXPECT_TRUE((*schema)->RowExpired(EncodeUsageRowKey("t", "llm", 10'000 - 63), now));
}

TEST(UsageSchemaTest, UnknownClassesAndUndecodableKeysNeverExpire) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema =
      UsageSchema::Create({{"llm", absl::Seconds(1), absl::Seconds(60)}});
  ASSERT_OK(schema);
  const absl::Time far_future = absl::FromUnixSeconds(4'000'000'000);

  EXPECT_FALSE((*schema)->RowExpired(EncodeUsageRowKey("t", "vision", 0), far_future));
  EXPECT_FALSE((*schema)->RowExpired("garbage", far_future));
}

TEST(UsageSchemaTest, FindsClassesByName) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(
      {{"llm", absl::Seconds(1), absl::Hours(24)}, {"vision", absl::Minutes(1), absl::Hours(24)}});
  ASSERT_OK(schema);

  EXPECT_EQ((*schema)->Find("llm"), 0);
  EXPECT_EQ((*schema)->Find("vision"), 1);
  EXPECT_EQ((*schema)->Find("imagine"), -1);
}

TEST(UsageSchemaTest, RejectsInvalidClassesNamingThem) {
  EXPECT_THAT(UsageSchema::Create({{"", absl::Seconds(1), absl::Hours(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty name")));
  EXPECT_THAT(UsageSchema::Create({{std::string("a\0b", 3), absl::Seconds(1), absl::Hours(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(UsageSchema::Create({{"llm", absl::Seconds(1), absl::Hours(1)},
                                   {"llm", absl::Seconds(1), absl::Hours(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  EXPECT_THAT(UsageSchema::Create({{"llm", absl::ZeroDuration(), absl::Hours(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sub_bucket")));
  EXPECT_THAT(UsageSchema::Create({{"llm", absl::Seconds(2), absl::Seconds(1)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longest_window")));
}

}  // namespace
}  // namespace anyai::storage
