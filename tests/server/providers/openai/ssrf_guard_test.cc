// Tests for server/providers/openai/ssrf_guard.cc: user-supplied URLs never lead into private,
// loopback or link-local space, whether the host is an address or a name that resolves there,
// unless the allow-list says so.
#include "server/providers/openai/ssrf_guard.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

// A resolver with fixed answers; a name it does not know does not exist.
HostResolver FixedResolver(std::vector<std::pair<std::string, std::vector<std::string>>> table,
                           std::vector<std::string>* asked = nullptr) {
  return [table, asked](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    if (asked != nullptr) asked->push_back(host);
    for (const auto& [name, addresses] : table) {
      if (name == host) return addresses;
    }
    return absl::NotFoundError("no such host");
  };
}

SsrfGuard Guard(std::vector<std::string> allowlist = {}, HostResolver resolver = nullptr) {
  absl::StatusOr<SsrfGuard> guard =
      resolver ? SsrfGuard::Create(allowlist, std::move(resolver)) : SsrfGuard::Create(allowlist);
  EXPECT_OK(guard);
  return *std::move(guard);
}

TEST(SsrfGuardTest, RefusesNonPublicAddressLiterals) {
  const SsrfGuard guard = Guard({}, FixedResolver({}));
  for (const char* url : {
           "http://127.0.0.1/cat.png",
           "http://127.8.9.10:8080/",
           "http://10.1.2.3/x",
           "http://172.16.0.1/x",
           "http://172.31.255.255/x",
           "http://192.168.1.1/x",
           "http://169.254.169.254/latest/meta-data/",
           "http://0.0.0.0/",
           "http://[::1]/x",
           "http://[::]/x",
           "http://[fc00::1]/x",
           "http://[fd12:3456::1]/x",
           "http://[fe80::1]/x",
           "http://[febf::1]/x",
           "http://[::ffff:127.0.0.1]/x",
           "http://[::ffff:10.0.0.1]/x",
           "http://[::ffff:169.254.169.254]/x",
           "https://100.64.0.1/x",
       }) {
    const absl::Status s = guard.CheckUrl(url);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-public"))) << url;
    EXPECT_EQ(ErrorField(s), "url") << url;
  }
}

TEST(SsrfGuardTest, AllowsPublicAddressLiterals) {
  const SsrfGuard guard = Guard({}, FixedResolver({}));
  for (const char* url :
       {"http://8.8.8.8/x.png", "https://172.15.255.255/x", "https://172.32.0.1/x",
        "http://192.169.0.1/x", "https://[2606:4700:4700::1111]/x", "http://[::ffff:8.8.8.8]/x"}) {
    EXPECT_OK(guard.CheckUrl(url)) << url;
  }
}

TEST(SsrfGuardTest, RefusesLocalhostThroughTheSystemResolver) {
  const SsrfGuard guard = Guard();
  EXPECT_THAT(guard.CheckUrl("http://localhost/cat.png"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"localhost\"")));
  EXPECT_THAT(guard.CheckUrl("http://LOCALHOST:9000/cat.png"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-public")));
}

TEST(SsrfGuardTest, RefusesANameWithAnyNonPublicAddressWithoutSayingWhich) {
  const SsrfGuard guard = Guard({}, FixedResolver({{"mixed.example", {"93.184.216.34", "10.0.0.7"}},
                                                   {"v6.example", {"2606:4700::1", "fe80::1"}}}));
  const absl::Status s = guard.CheckUrl("https://mixed.example/cat.png");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-public")));
  // Naming the address would make the gateway an oracle for internal DNS.
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("10.0.0.7")));
  EXPECT_THAT(guard.CheckUrl("https://v6.example/cat.png"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SsrfGuardTest, AllowsANameWhoseAddressesAreAllPublic) {
  std::vector<std::string> asked;
  const SsrfGuard guard =
      Guard({}, FixedResolver({{"images.example", {"93.184.216.34", "2606:4700::1"}}}, &asked));
  EXPECT_OK(guard.CheckUrl("https://Images.Example./a/cat.png?size=2"));
  EXPECT_THAT(asked, ::testing::ElementsAre("images.example"));
}

TEST(SsrfGuardTest, ANameThatDoesNotResolveIsRefusedAndAResolverOutageIsUnavailable) {
  const SsrfGuard guard = Guard({}, FixedResolver({}));
  EXPECT_THAT(guard.CheckUrl("https://nowhere.example/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not resolve")));
  const SsrfGuard outage =
      Guard({}, [](const std::string&) -> absl::StatusOr<std::vector<std::string>> {
        return absl::UnavailableError("resolver down");
      });
  EXPECT_THAT(outage.CheckUrl("https://images.example/x"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("try again")));
}

TEST(SsrfGuardTest, RefusesWhatIsNotAnHttpUrl) {
  const SsrfGuard guard = Guard({}, FixedResolver({}));
  for (const char* url : {"", "ftp://8.8.8.8/x", "file:///etc/passwd", "http://user@8.8.8.8/",
                          "http://2130706433/", "http://0x7f.0.0.1/", "gopher://8.8.8.8/"}) {
    EXPECT_THAT(guard.CheckUrl(url), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << url;
  }
}

TEST(SsrfGuardTest, AnAllowListedHostSkipsTheCheckButOnlyThatHost) {
  std::vector<std::string> asked;
  const SsrfGuard guard =
      Guard({"images.internal"},
            FixedResolver({{"images.internal", {"10.0.0.5"}}, {"a.images.internal", {"10.0.0.6"}}},
                          &asked));
  EXPECT_OK(guard.CheckUrl("http://images.internal/cat.png"));
  EXPECT_OK(guard.CheckUrl("http://IMAGES.internal:8080/cat.png"));
  EXPECT_TRUE(asked.empty());
  EXPECT_THAT(guard.CheckUrl("http://a.images.internal/cat.png"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SsrfGuardTest, AnAllowListedCidrAdmitsItsAddressesOnly) {
  const SsrfGuard guard = Guard(
      {"192.168.0.0/16", "::1", "fd00::/8"},
      FixedResolver({{"nas.lan", {"192.168.7.7"}}, {"router.lan", {"192.168.1.1", "10.0.0.1"}}}));
  EXPECT_OK(guard.CheckUrl("http://192.168.200.1/x"));
  EXPECT_OK(guard.CheckUrl("http://[::ffff:192.168.3.4]/x"));
  EXPECT_OK(guard.CheckUrl("http://[::1]/x"));
  EXPECT_OK(guard.CheckUrl("http://[fd12::1]/x"));
  EXPECT_OK(guard.CheckUrl("http://nas.lan/x"));
  EXPECT_THAT(guard.CheckUrl("http://router.lan/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(guard.CheckUrl("http://10.0.0.1/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(guard.CheckUrl("http://127.0.0.1/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(guard.CheckUrl("http://[fc00::1]/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SsrfGuardTest, ABadAllowListEntryIsNamed) {
  EXPECT_THAT(SsrfGuard::Create(std::vector<std::string>{"ok.example", "10.0.0.0/33"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ssrf_allowlist[1]")));
  EXPECT_THAT(SsrfGuard::Create(std::vector<std::string>{"not a host"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ssrf_allowlist[0]")));
  EXPECT_THAT(SsrfGuard::Create(std::vector<std::string>{"::1/129"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ssrf_allowlist[0]")));
  EXPECT_THAT(SsrfGuard::Create(std::vector<std::string>{"1.2.3.4/x"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ssrf_allowlist[0]")));
}

}  // namespace
}  // namespace anyai::server
