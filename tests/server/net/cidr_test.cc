// Tests for server/net/cidr.cc: what a range holds for IPv4 and IPv6, the IPv4-mapped forms, a
// bare address as a range of one, and bad ranges refused saying what is wrong.
#include "server/net/cidr.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/net/ip_address.h"
#include "tests/testing/status_matchers.h"

namespace anyai::net {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

Cidr Range(const std::string& text) {
  absl::StatusOr<Cidr> range = Cidr::Parse(text);
  EXPECT_OK(range) << text;
  return *std::move(range);
}

bool Contains(const std::string& range, const std::string& address) {
  return Range(range).Contains(*IpAddress::Parse(address));
}

TEST(CidrTest, Ipv4RangeHoldsItsAddressesOnly) {
  EXPECT_TRUE(Contains("10.0.0.0/8", "10.0.0.0"));
  EXPECT_TRUE(Contains("10.0.0.0/8", "10.255.255.255"));
  EXPECT_FALSE(Contains("10.0.0.0/8", "11.0.0.0"));
  EXPECT_FALSE(Contains("10.0.0.0/8", "9.255.255.255"));
  EXPECT_TRUE(Contains("172.16.0.0/12", "172.31.1.1"));
  EXPECT_FALSE(Contains("172.16.0.0/12", "172.32.0.0"));
  EXPECT_TRUE(Contains("0.0.0.0/0", "203.0.113.7"));
  EXPECT_FALSE(Contains("0.0.0.0/0", "2001:db8::1")) << "an IPv4 range holds no IPv6 address";
}

TEST(CidrTest, Ipv6RangeHoldsItsAddressesOnly) {
  EXPECT_TRUE(Contains("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(Contains("2001:db8::/32", "2001:db9::1"));
  EXPECT_TRUE(Contains("fe80::/10", "febf::1"));
  EXPECT_FALSE(Contains("fe80::/10", "fec0::1"));
  EXPECT_TRUE(Contains("::1/128", "::1"));
  EXPECT_FALSE(Contains("::1/128", "::2"));
  EXPECT_TRUE(Contains("::/0", "2001:db8::1"));
  EXPECT_TRUE(Contains("::/0", "10.0.0.1")) << "::/0 holds ::ffff:0:0/96 too";
}

TEST(CidrTest, AnIpv4RangeHoldsTheMappedFormsOfItsAddresses) {
  EXPECT_TRUE(Contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  EXPECT_TRUE(Contains("::ffff:10.0.0.0/104", "10.1.2.3"));
  EXPECT_EQ(Range("::ffff:10.0.0.0/104"), Range("10.0.0.0/8"));
  EXPECT_EQ(Range("::ffff:0:0/96").ToString(), "0.0.0.0/0");
}

TEST(CidrTest, ABareAddressIsARangeOfOne) {
  EXPECT_EQ(Range("203.0.113.7").ToString(), "203.0.113.7/32");
  EXPECT_EQ(Range("::1").ToString(), "::1/128");
  EXPECT_TRUE(Contains("203.0.113.7", "203.0.113.7"));
  EXPECT_FALSE(Contains("203.0.113.7", "203.0.113.8"));
  EXPECT_TRUE(Contains("::ffff:203.0.113.7", "203.0.113.7"));
}

TEST(CidrTest, BitsPastThePrefixAreIgnored) {
  const Cidr range = Range("10.1.2.3/8");
  EXPECT_EQ(range, Range("10.0.0.0/8"));
  EXPECT_EQ(range.base().ToString(), "10.0.0.0");
  EXPECT_EQ(range.prefix_length(), 8);
  EXPECT_EQ(Range("2001:db8:1:2::5/33").ToString(), "2001:db8::/33");
  EXPECT_EQ(Range("10.0.0.0/0").ToString(), "0.0.0.0/0");
  EXPECT_EQ(Range("10.255.0.0/9").ToString(), "10.128.0.0/9");
}

TEST(CidrTest, RefusesABadAddressNamingIt) {
  for (const char* text :
       {"", "/8", "10.0.0/8", "example.com/8", "::g/64", "[::1]/128", "10.0.0.0 /8"}) {
    EXPECT_THAT(Cidr::Parse(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("is not an IPv4 or IPv6 address")))
        << text;
  }
  EXPECT_THAT(Cidr::Parse("example.com/8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"example.com/8\" is not a CIDR (e.g. 10.0.0.0/8 or ::1/128): "
                       "\"example.com\" is not an IPv4 or IPv6 address"));
}

TEST(CidrTest, RefusesABadPrefixLengthSayingTheRange) {
  EXPECT_THAT(Cidr::Parse("10.0.0.0/33"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"10.0.0.0/33\" is not a CIDR: the prefix length must be in [0, 32]"));
  EXPECT_THAT(Cidr::Parse("::1/129"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[0, 128]")));
  for (const char* text : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/x", "10.0.0.0/8/8",
                           "10.0.0.0/0008", "10.0.0.0/ 8", "::/1000"}) {
    EXPECT_THAT(Cidr::Parse(text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prefix length")))
        << text;
  }
}

}  // namespace
}  // namespace anyai::net
