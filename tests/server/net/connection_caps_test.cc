// Tests for server/net/connection_caps.cc: the total and per-address caps count and give back
// places, a trusted peer escapes only the per-address cap, and the key of an address (IPv4,
// IPv4-mapped, IPv6 networks) from text or from a sockaddr.
#include "server/net/connection_caps.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <thread>
#include <vector>

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

// The key of a sockaddr, or the error's message.
template <class SockAddr>
std::string KeyOf(const SockAddr& address, socklen_t length) {
  absl::StatusOr<std::string> key =
      AddressKey(reinterpret_cast<const sockaddr*>(&address), length, 64);
  return key.ok() ? *key : std::string(key.status().message());
}

std::string Key(const std::string& text, int prefix = 64) {
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_OK(ip) << text;
  return ip.ok() ? AddressKey(*ip, prefix) : "";
}

TEST(ConnectionCapsTest, RefusesTheThirdConnectionFromOneAddress) {
  ConnectionCaps caps(10, 2);
  EXPECT_TRUE(caps.TryAdmit("a", true));
  EXPECT_TRUE(caps.TryAdmit("a", true));
  EXPECT_FALSE(caps.TryAdmit("a", true));
  EXPECT_EQ(caps.open(), 2);
  EXPECT_EQ(caps.open_from("a"), 2);
  EXPECT_TRUE(caps.TryAdmit("b", true));
  EXPECT_EQ(caps.open(), 3);
}

TEST(ConnectionCapsTest, RefusesOnceTheTotalIsFullWhateverTheAddress) {
  ConnectionCaps caps(3, 2);
  EXPECT_TRUE(caps.TryAdmit("a", true));
  EXPECT_TRUE(caps.TryAdmit("b", true));
  EXPECT_TRUE(caps.TryAdmit("c", true));
  EXPECT_FALSE(caps.TryAdmit("d", true));
  EXPECT_FALSE(caps.TryAdmit("proxy", false));
  EXPECT_EQ(caps.open(), 3);
  EXPECT_EQ(caps.open_from("d"), 0);
}

TEST(ConnectionCapsTest, ReleaseGivesThePlaceBack) {
  ConnectionCaps caps(2, 1);
  ASSERT_TRUE(caps.TryAdmit("a", true));
  EXPECT_FALSE(caps.TryAdmit("a", true));
  caps.Release("a");
  EXPECT_EQ(caps.open(), 0);
  EXPECT_EQ(caps.open_from("a"), 0);
  EXPECT_TRUE(caps.TryAdmit("a", true));
}

TEST(ConnectionCapsTest, AnUncappedPeerIsBoundOnlyByTheTotal) {
  ConnectionCaps caps(4, 1);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(caps.TryAdmit("proxy", false)) << i;
  EXPECT_FALSE(caps.TryAdmit("proxy", false));
  EXPECT_EQ(caps.open_from("proxy"), 4);
  // The same key, counted as an ordinary client, is already over its share.
  caps.Release("proxy");
  EXPECT_FALSE(caps.TryAdmit("proxy", true));
}

TEST(ConnectionCapsTest, ReleasingAKeyNeverAdmittedChangesNothing) {
  ConnectionCaps caps(1, 1);
  ASSERT_TRUE(caps.TryAdmit("a", true));
  caps.Release("b");
  EXPECT_EQ(caps.open(), 1);
  EXPECT_FALSE(caps.TryAdmit("c", true));
}

TEST(ConnectionCapsTest, CapsBelowOneAreOne) {
  ConnectionCaps caps(0, -5);
  EXPECT_EQ(caps.max_connections(), 1);
  EXPECT_EQ(caps.max_connections_per_address(), 1);
  EXPECT_TRUE(caps.TryAdmit("a", true));
  EXPECT_FALSE(caps.TryAdmit("b", true));
}

TEST(ConnectionCapsTest, CountsExactlyUnderConcurrentAdmitsAndReleases) {
  ConnectionCaps caps(1000, 1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&caps, t] {
      const std::string key = t % 2 == 0 ? "k0" : "k1";
      for (int i = 0; i < 2000; ++i) {
        if (caps.TryAdmit(key, true)) caps.Release(key);
      }
      for (int i = 0; i < 100; ++i) EXPECT_TRUE(caps.TryAdmit(key, true));
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(caps.open(), 400);
  EXPECT_EQ(caps.open_from("k0"), 200);
  EXPECT_EQ(caps.open_from("k1"), 200);
}

TEST(AddressKeyTest, Ipv4IsTheAddress) {
  EXPECT_EQ(Key("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(Key("::ffff:203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(Key("::FFFF:cb00:7107"), "203.0.113.7");
}

TEST(AddressKeyTest, Ipv6IsItsNetwork) {
  EXPECT_EQ(Key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  EXPECT_EQ(Key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(Key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
  EXPECT_EQ(Key("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6/128");
  EXPECT_EQ(Key("2001:db8:1:2:3:4:5:6", 57), "2001:db8:1::/57");
  EXPECT_EQ(Key("2001:db8:1:ff:3:4:5:6", 57), "2001:db8:1:80::/57");
  EXPECT_EQ(Key("::1"), "::/64");
  EXPECT_NE(Key("2001:db8:1:2::1"), Key("2001:db8:1:3::1"));
  // Out of range: clamped.
  EXPECT_EQ(Key("2001:db8::1", 200), "2001:db8::1/128");
  EXPECT_EQ(Key("2001:db8::1", -1), "::/0");
}

TEST(AddressKeyTest, FromASockaddrAsFromItsText) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "198.51.100.9", &in.sin_addr), 1);
  EXPECT_EQ(KeyOf(in, sizeof(in)), "198.51.100.9");

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:198.51.100.9", &in6.sin6_addr), 1);
  EXPECT_EQ(KeyOf(in6, sizeof(in6)), "198.51.100.9");
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8:a:b:c:d:e:f", &in6.sin6_addr), 1);
  EXPECT_EQ(KeyOf(in6, sizeof(in6)), "2001:db8:a:b::/64");
}

TEST(AddressKeyTest, RefusesWhatIsNotAnIpSocketAddress) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_THAT(AddressKey(reinterpret_cast<const sockaddr*>(&un), sizeof(un), 64),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an IPv4 or IPv6")));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  EXPECT_THAT(AddressKey(reinterpret_cast<const sockaddr*>(&in6), sizeof(sockaddr_in), 64),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an IPv4 or IPv6")));
  EXPECT_THAT(IpAddressOf(nullptr, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an IPv4 or IPv6")));
}

TEST(RaiseDescriptorLimitTest, ReportsALimit) { EXPECT_GT(RaiseDescriptorLimit(), 0); }

}  // namespace
}  // namespace anyai::net
