// Tests for server/gateway/log_limit.cc: one line per kind per interval with the count of those
// suppressed, and protobuf's invalid-UTF-8 complaint, logged once per request by its parser,
// written a bounded number of times however many bad messages arrive.
#include "server/gateway/log_limit.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"

namespace anyai::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);

TEST(LogLimiterTest, WritesOneLinePerKindPerIntervalAndCountsTheRest) {
  LogLimiter limiter({.interval = absl::Seconds(10), .max_kinds = 16});
  EXPECT_EQ(limiter.Admit("a.cc:1", kStart), 0);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(limiter.Admit("a.cc:1", kStart + absl::Milliseconds(i)), std::nullopt);
  }
  EXPECT_EQ(limiter.Admit("b.cc:2", kStart), 0);  // another kind is its own
  EXPECT_EQ(limiter.Admit("a.cc:1", kStart + absl::Seconds(10) - absl::Nanoseconds(1)),
            std::nullopt);
  EXPECT_EQ(limiter.Admit("a.cc:1", kStart + absl::Seconds(10)), 101);
  EXPECT_EQ(limiter.Admit("a.cc:1", kStart + absl::Seconds(10)), std::nullopt);
  EXPECT_EQ(limiter.Admit("a.cc:1", kStart + absl::Seconds(30)), 1);
}

TEST(LogLimiterTest, KindsPastTheBoundAreWrittenNotRemembered) {
  LogLimiter limiter({.interval = absl::Seconds(10), .max_kinds = 1});
  EXPECT_EQ(limiter.Admit("a", kStart), 0);
  EXPECT_EQ(limiter.Admit("b", kStart), 0);
  EXPECT_EQ(limiter.Admit("b", kStart), 0);
  EXPECT_EQ(limiter.Admit("a", kStart), std::nullopt);
}

int CountLines(const std::string& text, std::string_view needle) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StrContains(line, absl::string_view(needle.data(), needle.size()))) ++n;
  }
  return n;
}

TEST(ProtobufLogLimitTest, AThousandInvalidUtf8MessagesLogABoundedNumberOfLines) {
  InstallProtobufLogLimit();
  // google.protobuf.StringValue{value: "\xc3\x28"}: a proto3 string that is not UTF-8.
  const std::string wire("\x0a\x02\xc3\x28", 4);
  const absl::Time start = absl::Now();
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 1000; ++i) {
    google::protobuf::StringValue message;
    EXPECT_FALSE(message.ParseFromString(wire));
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  const int64_t intervals = (absl::Now() - start) / absl::Seconds(10);
  const int lines = CountLines(log, "invalid UTF-8");
  EXPECT_GE(lines, 1) << log;
  EXPECT_LE(lines, 1 + intervals) << log;
}

}  // namespace
}  // namespace anyai::server
