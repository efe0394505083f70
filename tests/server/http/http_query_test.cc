// server/http/http_query.cc: the GET endpoints' query strings onto the proto requests.
#include "server/http/http_query.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ImagineRequestFromQuery, MapsTheSeedExample) {
  absl::StatusOr<v1::ImagineRequest> r = ImagineRequestFromQuery(
      "prompt=A+beautiful+landscape&negative_prompt=rain&width=1024&height=1024&steps=50"
      "&seed=123456&model=sdxl");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt(), "A beautiful landscape");
  EXPECT_EQ(r->negative_prompt(), "rain");
  EXPECT_EQ(r->width(), 1024);
  EXPECT_EQ(r->height(), 1024);
  EXPECT_EQ(r->steps(), 50);
  EXPECT_EQ(r->seed(), 123456);
  EXPECT_EQ(r->model(), "sdxl");
}

TEST(ImagineRequestFromQuery, AbsentAndEmptyParametersStayAbsent) {
  absl::StatusOr<v1::ImagineRequest> r = ImagineRequestFromQuery("prompt=fox&width=&seed");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_width());
  EXPECT_FALSE(r->has_height());
  EXPECT_FALSE(r->has_steps());
  EXPECT_FALSE(r->has_seed());
}

TEST(ImagineRequestFromQuery, DecodesPercentEscapesAndPlus) {
  absl::StatusOr<v1::ImagineRequest> r =
      ImagineRequestFromQuery("prompt=caf%C3%A9+au+lait%21&model=dall%2De%2D3");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt(), "caf\xc3\xa9 au lait!");
  EXPECT_EQ(r->model(), "dall-e-3");
}

TEST(ImagineRequestFromQuery, IntegersMustBePlainDecimalsInRange) {
  for (const char* bad : {"abc", "12.5", "1e3", " 5", "5 ", "+5", "0x10", "--1", "-", "2147483648",
                          "99999999999999999999"}) {
    absl::StatusOr<v1::ImagineRequest> r =
        ImagineRequestFromQuery(std::string("prompt=x&width=") + bad);
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("width"))) << bad;
    EXPECT_EQ(ErrorField(r.status()), "width") << bad;
  }
  // Negative numbers parse; their range is validation's business.
  absl::StatusOr<v1::ImagineRequest> r = ImagineRequestFromQuery("width=-64&seed=-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->width(), -64);
  EXPECT_EQ(r->seed(), -1);
}

TEST(ImagineRequestFromQuery, SeedTakesTheWholeInt64Range) {
  absl::StatusOr<v1::ImagineRequest> r =
      ImagineRequestFromQuery("seed=9223372036854775807&width=-2147483648");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seed(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(r->width(), std::numeric_limits<int32_t>::min());
  EXPECT_TRUE(ImagineRequestFromQuery("seed=-9223372036854775808").ok());
  EXPECT_FALSE(ImagineRequestFromQuery("seed=9223372036854775808").ok());
  EXPECT_FALSE(ImagineRequestFromQuery("seed=-9223372036854775809").ok());
}

TEST(ImagineRequestFromQuery, RefusesAParameterGivenTwice) {
  absl::StatusOr<v1::ImagineRequest> r = ImagineRequestFromQuery("prompt=a&prompt=b");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than once")));
  EXPECT_EQ(ErrorField(r.status()), "prompt");
}

TEST(ImagineRequestFromQuery, IgnoresUnknownParameters) {
  EXPECT_TRUE(ImagineRequestFromQuery("prompt=x&cachebust=1&cachebust=2").ok());
}

TEST(DecodeQuery, RefusesMalformedEscapes) {
  for (const char* bad : {"prompt=%", "prompt=%4", "prompt=%zz", "%g0=1"}) {
    EXPECT_THAT(DecodeQuery(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")))
        << bad;
  }
  EXPECT_THAT(AskRequestFromQuery("prompt=%2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt")));
}

TEST(AskRequestFromQuery, TakesThePrompt) {
  absl::StatusOr<v1::AskRequest> r = AskRequestFromQuery("prompt=what+is+AnyAI%3F");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompt(), "what is AnyAI?");
}

TEST(DescribeImageRequestFromQuery, TakesUrlAndModel) {
  absl::StatusOr<v1::DescribeImageRequest> r = DescribeImageRequestFromQuery(
      "url=https%3A%2F%2Fexample.com%2Fimage.png&model=gemini-pro-vision");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url(), "https://example.com/image.png");
  EXPECT_EQ(r->model(), "gemini-pro-vision");
}

TEST(CheckKeyFromQuery, TakesTheKey) {
  EXPECT_EQ(*CheckKeyFromQuery("key=sk-anyai-abc"), "sk-anyai-abc");
  EXPECT_EQ(*CheckKeyFromQuery(""), "");
  EXPECT_EQ(*CheckKeyFromQuery("key="), "");
}

}  // namespace
}  // namespace anyai::server
