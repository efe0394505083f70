// Tests for server/net/host_port.cc: hosts (names, IPv4, bracketed IPv6), HOST:PORT with its
// port range, and the errors that say what is wrong.
#include "server/net/host_port.h"

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
using ::testing::StartsWith;

TEST(IsHostNameTest, AcceptsDnsAndServiceNames) {
  for (const char* name : {"localhost", "example.com", "Example.COM", "my-host.internal",
                           "cdn_1.example.com", "example.com.", "a", "x1.y2", "1a.example"}) {
    EXPECT_TRUE(IsHostName(name)) << name;
  }
}

TEST(IsHostNameTest, RefusesWhatIsNotAName) {
  for (const std::string& name :
       {std::string(""), std::string("."), std::string("example..com"), std::string("-a.com"),
        std::string("a-.com"), std::string("a b"), std::string("a/b"), std::string("a:b"),
        std::string("ex\xc3\xa4mple.com"), std::string("%65xample.com"), std::string("1.2.3.4"),
        std::string("2130706433"), std::string("0x7f.1"), std::string("example.123"),
        std::string(64, 'a') + ".com", std::string(254, 'a')}) {
    EXPECT_FALSE(IsHostName(name)) << name;
  }
  EXPECT_TRUE(IsHostName(std::string(63, 'a') + ".com"));
}

TEST(HostTest, ReadsNamesAndAddresses) {
  absl::StatusOr<Host> name = Host::Parse("Images.Example.");
  ASSERT_OK(name);
  EXPECT_EQ(name->name, "images.example.");
  EXPECT_FALSE(name->address.has_value());

  absl::StatusOr<Host> v4 = Host::Parse("10.0.0.1.");
  ASSERT_OK(v4);
  EXPECT_EQ(v4->name, "10.0.0.1");
  EXPECT_EQ(v4->address, IpAddress::Parse("10.0.0.1").value());

  absl::StatusOr<Host> v6 = Host::Parse("[2001:DB8::1]");
  ASSERT_OK(v6);
  EXPECT_EQ(v6->name, "2001:db8::1");
  EXPECT_EQ(v6->address, IpAddress::Parse("2001:db8::1").value());
  EXPECT_EQ(v6->ToString(), "[2001:db8::1]");

  absl::StatusOr<Host> mapped = Host::Parse("[::ffff:10.0.0.1]");
  ASSERT_OK(mapped);
  EXPECT_TRUE(mapped->address->is_ipv4());
}

TEST(HostTest, RefusesBadHostsSayingWhy) {
  EXPECT_THAT(Host::Parse(""), StatusIs(absl::StatusCode::kInvalidArgument, "no host"));
  EXPECT_THAT(Host::Parse("::1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be in brackets")));
  EXPECT_THAT(Host::Parse("127.1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"127.1\" is numeric but not a dotted-quad IPv4 address"));
  for (const char* text : {"[::g]", "[1.2.3.4]", "[fe80::1%25eth0]", "[]", "[::1"}) {
    EXPECT_THAT(Host::Parse(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("is not an IPv6 address in brackets")))
        << text;
  }
  EXPECT_THAT(Host::Parse("a b"),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"a b\" is not a host name"));
}

TEST(HostPortTest, SplitsHostAndPort) {
  absl::StatusOr<HostPort> v6 = HostPort::Parse("[::1]:8080");
  ASSERT_OK(v6);
  EXPECT_EQ(v6->host.name, "::1");
  EXPECT_EQ(v6->host.address, IpAddress::Parse("::1").value());
  EXPECT_EQ(v6->port, 8080);
  EXPECT_EQ(v6->ToString(), "[::1]:8080");

  absl::StatusOr<HostPort> v4 = HostPort::Parse("0.0.0.0:50051");
  ASSERT_OK(v4);
  EXPECT_TRUE(v4->host.address->IsUnspecified());
  EXPECT_EQ(v4->port, 50051);

  absl::StatusOr<HostPort> name = HostPort::Parse("My-Host.internal:65535");
  ASSERT_OK(name);
  EXPECT_EQ(name->host.name, "my-host.internal");
  EXPECT_EQ(name->port, 65535);
}

TEST(HostPortTest, PortZeroMeansAnyFreePort) {
  absl::StatusOr<HostPort> any = HostPort::Parse("127.0.0.1:0");
  ASSERT_OK(any);
  EXPECT_EQ(any->port, 0);
}

TEST(HostPortTest, RefusesBadPorts) {
  for (const char* text : {"0.0.0.0:65536", "0.0.0.0:70000", "0.0.0.0:-1", "0.0.0.0:", "0.0.0.0:x",
                           "0.0.0.0:80x", "0.0.0.0:000080", "[::1]:", "[::1]:http"}) {
    EXPECT_THAT(HostPort::Parse(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("the port must be a number in [0, 65535]")))
        << text;
  }
}

TEST(HostPortTest, RefusesBadHostsQuotingTheWholeText) {
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"localhost", "no ':PORT'"},
           {"", "no HOST"},
           {":8080", "no HOST"},
           {"::1:8080", "more than one ':'"},
           {"[::1", "no closing ']'"},
           {"[::1:8080", "no closing ']'"},
           {"[::1]8080", "text after the ']' is not :PORT"},
           {"[nope]:8080", "is not an IPv6 address in brackets"},
           {"300.1.1.1:80", "is numeric but not a dotted-quad IPv4 address"},
           {"a b:80", "is not a host name"},
           {"[::1]", "no ':PORT'"},
       }) {
    EXPECT_THAT(HostPort::Parse(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(StartsWith("\"" + text + "\" is not HOST:PORT (e.g. "),
                                          HasSubstr(why))))
        << text;
  }
}

}  // namespace
}  // namespace anyai::net
