// The usage row layout (usage_row.h) and the retention rule (usage_schema.h), without RocksDB.
#include "storage/usage_row.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/plan.h"
#include "storage/usage_schema.h"
#include "tests/testing/status_matchers.h"

namespace anyai::storage {
namespace {

using ::anyai::quota::Meter;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

// What the decoder before meters required of a key (besides a tenant and a one-byte class):
// '\0' just before the 8-byte bucket at the end. A key without it was skipped on load and kept
// by compactions.
bool PreMeterDecoderAccepts(const std::string& key) {
  return key.size() >= 9 && key[key.size() - 9] == '\0';
}

TEST(UsageRowTest, ARequestKeyIsTheLayoutBeforeMeters) {
  const std::string key =
      EncodeUsageRowKey("ip:203.0.113.7", "llm", Meter::kRequests, 0x0102030405060708);

  EXPECT_EQ(key, std::string("ip:203.0.113.7\0llm\0\x01\x02\x03\x04\x05\x06\x07\x08", 27));
}

TEST(UsageRowTest, TokenAndSpendKeysPutTheMeterByteBeforeTheBucket) {
  EXPECT_EQ(EncodeUsageRowKey("t", "llm", Meter::kTokens, 0x0102),
            std::string("t\0llm\0\x01\0\0\0\0\0\0\x01\x02", 15));
  EXPECT_EQ(EncodeUsageRowKey("t", "llm", Meter::kSpend, 0x0102),
            std::string("t\0llm\0\x02\0\0\0\0\0\0\x01\x02", 15));
}

TEST(UsageRowTest, KeysDecodeToWhatWasEncodedForEveryMeter) {
  for (const Meter meter : quota::kMeters) {
    const std::string key =
        EncodeUsageRowKey("key:0123456789abcdef", "closed_llm", meter, 28'333'333);

    const std::optional<UsageRowKey> row = DecodeUsageRowKey(key);

    ASSERT_TRUE(row.has_value()) << quota::MeterName(meter);
    EXPECT_EQ(row->tenant, "key:0123456789abcdef");
    EXPECT_EQ(row->class_name, "closed_llm");
    EXPECT_EQ(row->meter, meter);
    EXPECT_EQ(row->bucket, 28'333'333);
  }
}

TEST(UsageRowTest, AKeyWrittenBeforeMetersDecodesAsRequests) {
  // Bytes as the pre-meter EncodeUsageRowKey("key:k", "vision", 4660) wrote them.
  const std::string old_key("key:k\0vision\0\0\0\0\0\0\0\x12\x34", 21);

  const std::optional<UsageRowKey> row = DecodeUsageRowKey(old_key);

  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->tenant, "key:k");
  EXPECT_EQ(row->class_name, "vision");
  EXPECT_EQ(row->meter, Meter::kRequests);
  EXPECT_EQ(row->bucket, 0x1234);
}

TEST(UsageRowTest, OnlyRequestKeysAreRowsToTheDecoderBeforeMeters) {
  EXPECT_TRUE(PreMeterDecoderAccepts(EncodeUsageRowKey("t", "llm", Meter::kRequests, 7)));
  EXPECT_FALSE(PreMeterDecoderAccepts(EncodeUsageRowKey("t", "llm", Meter::kTokens, 7)));
  EXPECT_FALSE(PreMeterDecoderAccepts(EncodeUsageRowKey("t", "llm", Meter::kSpend, 7)));
}

TEST(UsageRowTest, KeysOfATenantSortByClassThenMeterThenBucket) {
  EXPECT_LT(EncodeUsageRowKey("t", "llm", Meter::kRequests, 255),
            EncodeUsageRowKey("t", "llm", Meter::kRequests, 256));
  EXPECT_LT(EncodeUsageRowKey("t", "llm", Meter::kRequests, int64_t{1} << 55),
            EncodeUsageRowKey("t", "llm", Meter::kTokens, 0));
  EXPECT_LT(EncodeUsageRowKey("t", "llm", Meter::kTokens, 1'000'000),
            EncodeUsageRowKey("t", "llm", Meter::kSpend, 0));
  EXPECT_LT(EncodeUsageRowKey("t", "llm", Meter::kSpend, 1'000'000),
            EncodeUsageRowKey("t", "vision", Meter::kRequests, 0));
  // A tenant's prefix does not cover a longer tenant that starts with the same bytes.
  EXPECT_NE(EncodeUsageRowKey("ip:1.2.3.45", "llm", Meter::kTokens, 0)
                .rfind(UsageRowPrefix("ip:1.2.3.4"), 0),
            0u);
}

TEST(UsageRowTest, MalformedKeysDoNotDecode) {
  EXPECT_FALSE(DecodeUsageRowKey("").has_value());
  EXPECT_FALSE(DecodeUsageRowKey("no separators at all").has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x01\x02", 8)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("\0llm\0\0\0\0\0\0\0\0\0", 13)).has_value());
  EXPECT_FALSE(
      DecodeUsageRowKey(std::string("t\0\0\0\0\0\0\0\0\0\0", 11)).has_value());  // empty class
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x80\0\0\0\0\0\0\0", 14)).has_value());
  // No second separator.
  EXPECT_FALSE(
      DecodeUsageRowKey(std::string("t\0llm\x01\x02\x03\x04\x05\x06\x07\x08", 14)).has_value());
  // Tails of 10 and 7 bytes.
  EXPECT_FALSE(
      DecodeUsageRowKey(std::string("t\0llm\0\x01\x01\0\0\0\0\0\0\0\x01", 16)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\0\0\0\0\0\0\x01", 13)).has_value());
  // A meter byte of 0 (requests have none), of a meter this version does not know, and a
  // negative bucket behind a valid meter byte.
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\0\0\0\0\0\0\0\0\x01", 15)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x03\0\0\0\0\0\0\0\x01", 15)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\xff\0\0\0\0\0\0\0\x01", 15)).has_value());
  EXPECT_FALSE(DecodeUsageRowKey(std::string("t\0llm\0\x01\x80\0\0\0\0\0\0\0", 15)).has_value());
}

TEST(UsageRowTest, OnlyTheThreeMetersAreKnown) {
  for (const Meter meter : quota::kMeters) EXPECT_TRUE(IsKnownMeter(meter));
  EXPECT_FALSE(IsKnownMeter(static_cast<Meter>(-1)));
  EXPECT_FALSE(IsKnownMeter(static_cast<Meter>(quota::kMeterCount)));
}

TEST(UsageRowTest, CountsAreEightByteLittleEndianTwosComplement) {
  EXPECT_EQ(EncodeCount(0x0102), std::string("\x02\x01\0\0\0\0\0\0", 8));
  EXPECT_EQ(EncodeCount(-1), std::string(8, '\xff'));
  EXPECT_EQ(EncodeCount(-2), std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8));
  EXPECT_EQ(DecodeCount(EncodeCount(123456789)), 123456789);
  EXPECT_EQ(DecodeCount(EncodeCount(-588)), -588);
  EXPECT_EQ(DecodeCount(EncodeCount(std::numeric_limits<int64_t>::min())),
            std::numeric_limits<int64_t>::min());
  EXPECT_EQ(DecodeCount(EncodeCount(std::numeric_limits<int64_t>::max())),
            std::numeric_limits<int64_t>::max());
  EXPECT_FALSE(DecodeCount("short").has_value());
}

TEST(UsageRowTest, ACountWrittenBeforeCountsWereSignedReadsTheSame) {
  // The pre-meter encoding of 300 as an unsigned count.
  EXPECT_EQ(DecodeCount(std::string("\x2c\x01\0\0\0\0\0\0", 8)), 300);
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
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(
      {{.name = "llm",
        .requests = {.sub_bucket = absl::Seconds(1), .longest_window = absl::Seconds(60)}}});
  ASSERT_OK(schema);
  const absl::Time now = absl::FromUnixSeconds(10'000);

  // Bucket b covers [b, b + 1) seconds. The boundary: end == now - 61 s is kept.
  EXPECT_FALSE((*schema)->Expired(0, Meter::kRequests, 10'000 - 62, now));
  EXPECT_TRUE((*schema)->Expired(0, Meter::kRequests, 10'000 - 63, now));
  EXPECT_FALSE((*schema)->Expired(0, Meter::kRequests, 10'000, now));
  EXPECT_FALSE(
      (*schema)->RowExpired(EncodeUsageRowKey("t", "llm", Meter::kRequests, 10'000 - 62), now));
  EXPECT_TRUE(
      (*schema)->RowExpired(EncodeUsageRowKey("t", "llm", Meter::kRequests, 10'000 - 63), now));
}

TEST(UsageSchemaTest, EachMeterExpiresByItsOwnWindows) {
  // Requests: 1 s sub-buckets, kept 60 s; tokens: 1 min sub-buckets, kept an hour.
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(
      {{.name = "llm",
        .requests = {.sub_bucket = absl::Seconds(1), .longest_window = absl::Seconds(60)},
        .tokens = {.sub_bucket = absl::Minutes(1), .longest_window = absl::Hours(1)}}});
  ASSERT_OK(schema);
  const absl::Time now = absl::FromUnixSeconds(600'000);  // token bucket 10'000

  // Token bucket b covers [b, b + 1) minutes; the one that ended exactly 61 min ago is kept.
  EXPECT_FALSE((*schema)->Expired(0, Meter::kTokens, 10'000 - 62, now));
  EXPECT_TRUE((*schema)->Expired(0, Meter::kTokens, 10'000 - 63, now));
  EXPECT_TRUE(
      (*schema)->RowExpired(EncodeUsageRowKey("t", "llm", Meter::kTokens, 10'000 - 63), now));
  // The same bucket number means another time for requests: second 9'937, long expired.
  EXPECT_TRUE((*schema)->Expired(0, Meter::kRequests, 10'000 - 62, now));
  EXPECT_FALSE((*schema)->Expired(0, Meter::kRequests, 600'000 - 62, now));
}

TEST(UsageSchemaTest, RowsOfAMeterWithoutWindowsNeverExpire) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(
      {{.name = "llm",
        .requests = {.sub_bucket = absl::Seconds(1), .longest_window = absl::Seconds(60)}}});
  ASSERT_OK(schema);
  const absl::Time far_future = absl::FromUnixSeconds(4'000'000'000);

  EXPECT_FALSE((*schema)->Expired(0, Meter::kSpend, 0, far_future));
  EXPECT_FALSE((*schema)->RowExpired(EncodeUsageRowKey("t", "llm", Meter::kTokens, 0), far_future));
  EXPECT_TRUE(
      (*schema)->RowExpired(EncodeUsageRowKey("t", "llm", Meter::kRequests, 0), far_future));
}

TEST(UsageSchemaTest, UnknownClassesAndUndecodableKeysNeverExpire) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(
      {{.name = "llm",
        .requests = {.sub_bucket = absl::Seconds(1), .longest_window = absl::Seconds(60)}}});
  ASSERT_OK(schema);
  const absl::Time far_future = absl::FromUnixSeconds(4'000'000'000);

  EXPECT_FALSE(
      (*schema)->RowExpired(EncodeUsageRowKey("t", "vision", Meter::kRequests, 0), far_future));
  EXPECT_FALSE((*schema)->RowExpired("garbage", far_future));
  EXPECT_FALSE((*schema)->RowExpired(std::string("t\0llm\0\x03\0\0\0\0\0\0\0\0", 15), far_future));
}

TEST(UsageSchemaTest, FindsClassesByName) {
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema =
      UsageSchema::Create({{.name = "llm", .requests = {absl::Seconds(1), absl::Hours(24)}},
                           {.name = "vision", .requests = {absl::Minutes(1), absl::Hours(24)}}});
  ASSERT_OK(schema);

  EXPECT_EQ((*schema)->Find("llm"), 0);
  EXPECT_EQ((*schema)->Find("vision"), 1);
  EXPECT_EQ((*schema)->Find("imagine"), -1);
}

TEST(UsageSchemaTest, ClassInfoOfNamesEachMetersWindows) {
  ClassInfo info{.name = "llm",
                 .requests = {absl::Seconds(1), absl::Minutes(1)},
                 .tokens = {absl::Seconds(2), absl::Minutes(2)},
                 .spend = {absl::Seconds(3), absl::Minutes(3)}};

  EXPECT_EQ(info.of(Meter::kRequests).sub_bucket, absl::Seconds(1));
  EXPECT_EQ(info.of(Meter::kTokens).sub_bucket, absl::Seconds(2));
  EXPECT_EQ(info.of(Meter::kSpend).sub_bucket, absl::Seconds(3));
  info.of(Meter::kTokens) = {};
  EXPECT_FALSE(info.tokens.has_windows());
}

TEST(UsageSchemaTest, RejectsInvalidClassesNamingThemAndTheMeter) {
  const MeterWindows hour{absl::Seconds(1), absl::Hours(1)};
  EXPECT_THAT(UsageSchema::Create({{.name = "", .requests = hour}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty name")));
  EXPECT_THAT(UsageSchema::Create({{.name = std::string("a\0b", 3), .requests = hour}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(
      UsageSchema::Create({{.name = "llm", .requests = hour}, {.name = "llm", .requests = hour}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  EXPECT_THAT(
      UsageSchema::Create({{.name = "llm", .requests = {absl::ZeroDuration(), absl::Hours(1)}}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("requests: sub_bucket")));
  EXPECT_THAT(
      UsageSchema::Create({{.name = "llm", .requests = {absl::Seconds(2), absl::Seconds(1)}}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("requests: longest_window")));
  EXPECT_THAT(
      UsageSchema::Create(
          {{.name = "llm", .requests = hour, .tokens = {absl::Seconds(1), absl::ZeroDuration()}}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"llm\") tokens: longest_window")));
  EXPECT_THAT(
      UsageSchema::Create(
          {{.name = "llm", .requests = hour, .spend = {-absl::Seconds(1), absl::Hours(1)}}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("micro_usd: sub_bucket")));
  EXPECT_THAT(UsageSchema::Create(
                  {{.name = "llm", .requests = {absl::Seconds(1), absl::InfiniteDuration()}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longest_window")));
}

TEST(UsageSchemaTest, AMeterWithoutWindowsIsValid) {
  EXPECT_OK(UsageSchema::Create({{.name = "llm", .requests = {absl::Seconds(1), absl::Hours(1)}}}));
  // Even requests: the engine decides which meters a class has.
  EXPECT_OK(UsageSchema::Create({{.name = "llm", .tokens = {absl::Seconds(1), absl::Hours(1)}}}));
}

}  // namespace
}  // namespace anyai::storage
