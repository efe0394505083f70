// Tests for server/net/ip_address.cc: one canonical text per address, IPv4-mapped IPv6 as the
// IPv4 address, nothing that is not an address, and which addresses are public.
#include "server/net/ip_address.h"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::net {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

std::string Canonical(const std::string& text) {
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_OK(ip) << text;
  return ip.ok() ? ip->ToString() : "";
}

bool IsPublic(const std::string& text) {
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(text);
  return ip.ok() && ip->IsPublic();
}

TEST(IpAddressTest, PrintsOneCanonicalTextHoweverTheAddressWasWritten) {
  EXPECT_EQ(Canonical("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(Canonical("2001:DB8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(Canonical("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  EXPECT_EQ(Canonical("::"), "::");
  EXPECT_EQ(Canonical("::1"), "::1");
  EXPECT_EQ(Canonical("fe80::1:2"), "fe80::1:2");
}

TEST(IpAddressTest, AnIpv4MappedAddressIsTheIpv4Address) {
  absl::StatusOr<IpAddress> mapped = IpAddress::Parse("::FFFF:203.0.113.7");
  ASSERT_OK(mapped);
  EXPECT_TRUE(mapped->is_ipv4());
  EXPECT_EQ(mapped->ToString(), "203.0.113.7");
  EXPECT_EQ(*mapped, *IpAddress::Parse("203.0.113.7"));
  EXPECT_EQ(*IpAddress::Parse("::ffff:cb00:7107"), *IpAddress::Parse("203.0.113.7"));
  EXPECT_FALSE(IpAddress::Parse("::203.0.113.7")->is_ipv4()) << "IPv4-compatible is not mapped";
  EXPECT_FALSE(IpAddress::Parse("64:ff9b::cb00:7107")->is_ipv4()) << "NAT64 is not mapped";
}

TEST(IpAddressTest, ReadsBackItsOwnText) {
  for (const char* text : {"0.0.0.0", "255.255.255.255", "10.1.2.3", "::", "::1", "2001:db8::1",
                           "::ffff:10.0.0.1", "fe80::1", "ff02::1:ff00:1"}) {
    const IpAddress ip = *IpAddress::Parse(text);
    EXPECT_EQ(*IpAddress::Parse(ip.ToString()), ip) << text;
  }
}

TEST(IpAddressTest, PrintsEveryOctetAsInetNtopDoes) {
  // Each octet value in each position, against the C library's own text.
  for (int position = 0; position < 4; ++position) {
    for (int value = 0; value < 256; ++value) {
      std::array<uint8_t, 4> bytes = {1, 22, 203, 9};
      bytes[position] = static_cast<uint8_t>(value);
      char expected[INET_ADDRSTRLEN];
      ASSERT_NE(inet_ntop(AF_INET, bytes.data(), expected, sizeof(expected)), nullptr);
      EXPECT_EQ(IpAddress::FromIpv4Bytes(bytes).ToString(), expected);
    }
  }
}

TEST(IpAddressTest, BuildsFromTheBytesOfAResolverAnswer) {
  EXPECT_EQ(IpAddress::FromIpv4Bytes({192, 0, 2, 1}).ToString(), "192.0.2.1");
  std::array<uint8_t, 16> v6{};
  v6[0] = 0x20;
  v6[1] = 0x01;
  v6[2] = 0x0d;
  v6[3] = 0xb8;
  v6[15] = 1;
  EXPECT_EQ(IpAddress::FromIpv6Bytes(v6).ToString(), "2001:db8::1");
  const std::array<uint8_t, 16> mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  EXPECT_EQ(IpAddress::FromIpv6Bytes(mapped), *IpAddress::Parse("10.0.0.1"));
}

TEST(IpAddressTest, RefusesWhatIsNotAnAddress) {
  for (const std::string& text : std::vector<std::string>{"",
                                                          "1.2.3",
                                                          "1.2.3.4.5",
                                                          "256.1.1.1",
                                                          "1.2.3.-4",
                                                          "01.2.3.4",
                                                          "127.000.0.1",
                                                          "127.1",
                                                          "0x7f.0.0.1",
                                                          "2130706433",
                                                          "1.2.3.4.",
                                                          " 1.2.3.4",
                                                          "1.2.3.4 ",
                                                          "::g",
                                                          ":::",
                                                          "1::2::3",
                                                          "[::1]",
                                                          "fe80::1%eth0",
                                                          "::1/128",
                                                          "1.2.3.4:80",
                                                          "localhost",
                                                          std::string("1.2.3.4\0", 8),
                                                          std::string(100, ':')}) {
    EXPECT_THAT(IpAddress::Parse(text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an IPv4 or IPv6")))
        << text;
  }
}

TEST(IpAddressTest, TheErrorQuotesTheTextEscaped) {
  EXPECT_THAT(IpAddress::Parse("1.2.3"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  "\"1.2.3\" is not an IPv4 or IPv6 address"));
  EXPECT_THAT(IpAddress::Parse("a\"\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\\\"\\n\"")));
}

TEST(IpAddressTest, KnowsTheUnspecifiedAddresses) {
  EXPECT_TRUE(IpAddress::Parse("0.0.0.0")->IsUnspecified());
  EXPECT_TRUE(IpAddress::Parse("::")->IsUnspecified());
  EXPECT_TRUE(IpAddress::Parse("0:0::0")->IsUnspecified());
  EXPECT_TRUE(IpAddress().IsUnspecified());
  EXPECT_FALSE(IpAddress::Parse("0.0.0.1")->IsUnspecified());
  EXPECT_FALSE(IpAddress::Parse("::1")->IsUnspecified());
}

TEST(IpAddressTest, PublicAddresses) {
  for (const char* ip :
       {"8.8.8.8", "93.184.216.34", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255",
        "172.32.0.0", "223.255.255.255", "2606:4700:4700::1111", "2001:4860:4860::8888",
        "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_TRUE(IsPublic(ip)) << ip;
  }
}

TEST(IpAddressTest, NonPublicAddresses) {
  for (const char* ip : {"0.0.0.0",
                         "10.1.2.3",
                         "100.64.0.1",
                         "127.0.0.1",
                         "127.255.255.254",
                         "169.254.169.254",
                         "172.16.0.1",
                         "172.31.255.255",
                         "192.0.0.8",
                         "192.0.2.1",
                         "192.88.99.1",
                         "192.168.1.1",
                         "198.18.0.1",
                         "198.19.255.255",
                         "198.51.100.7",
                         "203.0.113.9",
                         "224.0.0.1",
                         "239.255.255.250",
                         "240.0.0.1",
                         "255.255.255.255",
                         "::",
                         "::1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.0.0.1",
                         "::127.0.0.1",
                         "64:ff9b::7f00:1",
                         "64:ff9b:1::1",
                         "100::1",
                         "fc00::1",
                         "fd12:3456::1",
                         "fe80::1",
                         "fec0::1",
                         "ff02::1",
                         "2001:db8::1",
                         "2001:0:4136:e378::1",
                         "2002:7f00:1::1",
                         "2002:a00:1::",
                         "3fff::1",
                         "4000::1"}) {
    EXPECT_FALSE(IsPublic(ip)) << ip;
  }
}

TEST(IpAddressTest, AnIpv4AddressIsJudgedTheSameBareAndMapped) {
  for (int a = 0; a < 256; a += 3) {
    for (int b : {0, 18, 19, 51, 64, 88, 168, 254}) {
      const std::string v4 = absl::StrCat(a, ".", b, ".", (a * 7) % 256, ".", (b * 13) % 256);
      ASSERT_EQ(IsPublic(v4), IsPublic("::ffff:" + v4)) << v4;
    }
  }
}

}  // namespace
}  // namespace anyai::net
