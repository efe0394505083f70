// Tests for server/gateway/auth_failure_limit.cc: an exact sliding minute of failures per
// network, and a bounded number of networks under a flood of addresses.
#include "server/gateway/auth_failure_limit.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace anyai::server {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);

TEST(AuthFailureLimitTest, RefusesOnceTheLimitIsReachedWithinTheWindow) {
  AuthFailureLimit limit({.max_failures = 3, .window = absl::Minutes(1), .max_networks = 100});
  EXPECT_TRUE(limit.empty());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limit.RetryAfter("203.0.113.7", kStart + absl::Seconds(i)), absl::ZeroDuration());
    limit.RecordFailure("203.0.113.7", kStart + absl::Seconds(i));
  }
  EXPECT_FALSE(limit.empty());
  // The oldest of the three leaves at kStart + 1 min.
  EXPECT_EQ(limit.RetryAfter("203.0.113.7", kStart + absl::Seconds(2)), absl::Seconds(58));
  EXPECT_EQ(limit.RetryAfter("203.0.113.7", kStart + absl::Seconds(60) - absl::Nanoseconds(1)),
            absl::Nanoseconds(1));
  EXPECT_EQ(limit.RetryAfter("203.0.113.7", kStart + absl::Seconds(60)), absl::ZeroDuration());
  EXPECT_EQ(limit.RetryAfter("203.0.113.8", kStart + absl::Seconds(2)), absl::ZeroDuration());
}

TEST(AuthFailureLimitTest, ZeroFailuresAllowedMeansNoLimit) {
  AuthFailureLimit limit({.max_failures = 0, .window = absl::Minutes(1), .max_networks = 100});
  for (int i = 0; i < 100; ++i) limit.RecordFailure("203.0.113.7", kStart);
  EXPECT_EQ(limit.RetryAfter("203.0.113.7", kStart), absl::ZeroDuration());
  EXPECT_TRUE(limit.empty());
}

TEST(AuthFailureLimitTest, AFloodOfAddressesKeepsAtMostMaxNetworks) {
  AuthFailureLimit limit({.max_failures = 2, .window = absl::Minutes(1), .max_networks = 1024});
  // 100,000 live networks within one minute: never more than the bound is held.
  for (int i = 0; i < 100'000; ++i) {
    limit.RecordFailure(absl::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256),
                        kStart + absl::Microseconds(i));
  }
  EXPECT_LE(limit.tracked(), 1024u);
  EXPECT_GT(limit.tracked(), 0u);
  // The most recent network is still tracked: the oldest ones were dropped first.
  limit.RecordFailure("10.1.134.159", kStart + absl::Milliseconds(100));
  EXPECT_GT(limit.RetryAfter("10.1.134.159", kStart + absl::Milliseconds(100)),
            absl::ZeroDuration());
}

TEST(AuthFailureLimitTest, AFullShardForgetsNetworksWithNoFailureLeft) {
  AuthFailureLimit limit({.max_failures = 2, .window = absl::Minutes(1), .max_networks = 16});
  limit.RecordFailure("old", kStart);
  limit.RecordFailure("old", kStart);
  // A shard of one: the next new network in the same shard sweeps the expired one out.
  for (int i = 0; i < 64; ++i) {
    limit.RecordFailure(absl::StrCat("new-", i), kStart + absl::Minutes(2));
  }
  EXPECT_LE(limit.tracked(), 16u);
  EXPECT_EQ(limit.RetryAfter("old", kStart + absl::Minutes(2)), absl::ZeroDuration());
}

}  // namespace
}  // namespace anyai::server
