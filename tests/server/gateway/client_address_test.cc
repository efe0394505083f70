// Tests for server/gateway/client_address.cc: the client of a gRPC peer string, one canonical
// address per client, and X-Forwarded-For believed only from trusted proxies.
#include "server/gateway/client_address.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::StartsWith;

TrustedProxies Proxies(const std::vector<std::string>& cidrs) {
  absl::StatusOr<TrustedProxies> proxies = TrustedProxies::Create(cidrs);
  EXPECT_OK(proxies);
  return *std::move(proxies);
}

TEST(AddressOfGrpcPeerTest, TakesTheAddressOutOfThePeer) {
  EXPECT_EQ(AddressOfGrpcPeer("ipv4:203.0.113.7:5555"), "203.0.113.7");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[::1]:5555"), "::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[2001:DB8:0::1]:443"), "2001:db8::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[::ffff:10.0.0.1]:5555"), "10.0.0.1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[fe80::1%25eth0]:5555"), "fe80::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:[fe80::1%eth0]:5555"), "fe80::1");
}

TEST(AddressOfGrpcPeerTest, ReadsThePeerAsTheUriGrpcWrites) {
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:%5B::1%5D:54621"), "::1");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:%5B2001:db8::7%5D:443"), "2001:db8::7");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:%5B::ffff:203.0.113.7%5D:5555"), "203.0.113.7");
  EXPECT_EQ(AddressOfGrpcPeer("ipv6:%5Bfe80::1%25eth0%5D:5555"), "fe80::1");
}

TEST(AddressOfGrpcPeerTest, LeavesOtherPeersAlone) {
  EXPECT_EQ(AddressOfGrpcPeer("unix:/run/anyai.sock"), "unix:/run/anyai.sock");
  EXPECT_EQ(AddressOfGrpcPeer("ipv4:garbage"), "ipv4:garbage");
  EXPECT_EQ(AddressOfGrpcPeer(""), "");
}

TEST(CanonicalAddressTest, OneClientIsOneAddressHoweverItIsWritten) {
  EXPECT_THAT(CanonicalAddress("::FFFF:203.0.113.7"), Optional(std::string("203.0.113.7")));
  EXPECT_THAT(CanonicalAddress("2001:DB8:0:0::1"), Optional(std::string("2001:db8::1")));
  EXPECT_EQ(CanonicalAddress("203.0.113.07"), std::nullopt);
  EXPECT_EQ(CanonicalAddress("localhost"), std::nullopt);
}

TEST(TrustedProxiesTest, ABadEntryIsNamedByItsIndex) {
  EXPECT_THAT(TrustedProxies::Create(std::vector<std::string>{"10.0.0.0/8", "10.0.0.0/33"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("trusted_proxies[1]: \"10.0.0.0/33\" is not a CIDR")));
  EXPECT_THAT(TrustedProxies::Create(std::vector<std::string>{"example.com"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("trusted_proxies[0]: "), HasSubstr("not an IPv4"))));
}

TEST(TrustedProxiesTest, ContainsTheAddressesOfItsRanges) {
  const TrustedProxies proxies = Proxies({"10.0.0.0/8", "::1"});
  EXPECT_TRUE(proxies.Contains("10.1.2.3"));
  EXPECT_TRUE(proxies.Contains("::ffff:10.1.2.3"));
  EXPECT_TRUE(proxies.Contains("::1"));
  EXPECT_FALSE(proxies.Contains("11.0.0.1"));
  EXPECT_FALSE(proxies.Contains("not an address"));
  EXPECT_FALSE(TrustedProxies().Contains("10.1.2.3"));
}

TEST(TrustedProxiesTest, BelievesForwardedForOnlyFromATrustedPeer) {
  const TrustedProxies proxies = Proxies({"10.0.0.0/8"});
  EXPECT_EQ(proxies.ClientAddress("10.0.0.1", "198.51.100.9"), "198.51.100.9");
  EXPECT_EQ(proxies.ClientAddress("203.0.113.7", "198.51.100.9"), "203.0.113.7");
  EXPECT_EQ(proxies.ClientAddress("::ffff:203.0.113.7", ""), "203.0.113.7");
}

TEST(TrustedProxiesTest, TakesTheRightMostHopThatIsNotAProxy) {
  const TrustedProxies proxies = Proxies({"10.0.0.0/8"});
  EXPECT_EQ(proxies.ClientAddress("10.0.0.1", "192.0.2.1, 198.51.100.9, 10.0.0.2"), "198.51.100.9");
  EXPECT_EQ(proxies.ClientAddress("10.0.0.1", " 2001:DB8::1 "), "2001:db8::1");
  // A malformed hop ends the walk at the last good one.
  EXPECT_EQ(proxies.ClientAddress("10.0.0.1", "198.51.100.9, junk, 10.0.0.2"), "10.0.0.2");
  EXPECT_EQ(proxies.ClientAddress("10.0.0.1", "junk"), "10.0.0.1");
}

TEST(ClientNetworkTest, GroupsAnIpv6AddressIntoItsNetwork) {
  EXPECT_EQ(ClientNetwork("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientNetwork("2001:db8:1:2::1", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientNetwork("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
  EXPECT_EQ(ClientNetwork("2001:db8:1:2ff::1", 56), "2001:db8:1:200::/56");
  EXPECT_EQ(ClientNetwork("2001:db8:1:2::1", 61), "2001:db8:1::/61");
  EXPECT_EQ(ClientNetwork("2001:db8:1:f::1", 61), "2001:db8:1:8::/61");
  EXPECT_EQ(ClientNetwork("2001:db8::1", 0), "::/0");
}

TEST(ClientNetworkTest, KeepsTheAddressAt128AndIpv4AsIs) {
  EXPECT_EQ(ClientNetwork("2001:db8:1:2::1", 128), "2001:db8:1:2::1");
  EXPECT_EQ(ClientNetwork("203.0.113.7", 64), "203.0.113.7");
  EXPECT_EQ(ClientNetwork("203.0.113.7", 8), "203.0.113.7");
  // An IPv4-mapped IPv6 address is the IPv4 client, whatever the IPv6 prefix.
  EXPECT_EQ(ClientNetwork("::ffff:203.0.113.7", 64), "203.0.113.7");
  EXPECT_EQ(ClientNetwork("unix:/run/anyai.sock", 64), "unix:/run/anyai.sock");
}

}  // namespace
}  // namespace anyai::server
