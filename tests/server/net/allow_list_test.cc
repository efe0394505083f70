// Tests for server/net/allow_list.cc: names match exactly (case and a final dot aside),
// addresses by range, and a bad entry is named by its index.
#include "server/net/allow_list.h"

#include <string>
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

AllowList List(const std::vector<std::string>& entries) {
  absl::StatusOr<AllowList> list = AllowList::Parse(entries, "allow");
  EXPECT_OK(list);
  return *std::move(list);
}

TEST(AllowListTest, ANameMatchesOnlyItself) {
  const AllowList list = List({"images.internal", "NAS.lan."});
  EXPECT_TRUE(list.ContainsName("images.internal"));
  EXPECT_TRUE(list.ContainsName("IMAGES.internal."));
  EXPECT_TRUE(list.ContainsName("nas.lan"));
  EXPECT_FALSE(list.ContainsName("a.images.internal"));
  EXPECT_FALSE(list.ContainsName("internal"));
  EXPECT_FALSE(list.Contains(*IpAddress::Parse("10.0.0.1")));
}

TEST(AllowListTest, AnAddressMatchesByRange) {
  const AllowList list = List({"192.168.0.0/16", "::1", "fd00::/8"});
  EXPECT_TRUE(list.Contains(*IpAddress::Parse("192.168.200.1")));
  EXPECT_TRUE(list.Contains(*IpAddress::Parse("::ffff:192.168.3.4")));
  EXPECT_TRUE(list.Contains(*IpAddress::Parse("::1")));
  EXPECT_TRUE(list.Contains(*IpAddress::Parse("fd12::1")));
  EXPECT_FALSE(list.Contains(*IpAddress::Parse("10.0.0.1")));
  EXPECT_FALSE(list.Contains(*IpAddress::Parse("fc00::1")));
  EXPECT_FALSE(list.ContainsName("192.168.0.0"));
}

TEST(AllowListTest, AnEmptyListAllowsNothing) {
  const AllowList list;
  EXPECT_FALSE(list.ContainsName("localhost"));
  EXPECT_FALSE(list.Contains(*IpAddress::Parse("127.0.0.1")));
}

TEST(AllowListTest, NamesTheFirstBadEntry) {
  EXPECT_THAT(AllowList::Parse({"ok.example", "10.0.0.0/33"}, "ssrf_allowlist"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "ssrf_allowlist[1]: \"10.0.0.0/33\" is not a CIDR: the prefix length must "
                       "be in [0, 32]"));
  EXPECT_THAT(AllowList::Parse({"::1/129"}, "ssrf_allowlist"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[0, 128]")));
  for (const char* bad : {"not a host", "http://images.internal/", "10.0.0/8", "1.2.3.4/x", "",
                          "[::1]", "127.1", "user@host"}) {
    EXPECT_THAT(AllowList::Parse({"ok.example", bad}, "ssrf_allowlist"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ssrf_allowlist[1]: ")))
        << bad;
  }
  EXPECT_THAT(
      AllowList::Parse({"http://images.internal/"}, "ssrf_allowlist"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is neither a host name nor a CIDR")));
}

}  // namespace
}  // namespace anyai::net
