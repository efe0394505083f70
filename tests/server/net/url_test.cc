// Tests for server/net/url.cc: the pieces of an absolute URL, the default ports, and what is
// refused so that no other parser could read a different host out of the same text.
#include "server/net/url.h"

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/net/ip_address.h"
#include "tests/testing/status_matchers.h"

namespace anyai::net {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(UrlTest, SplitsSchemeHostPortAndTheRest) {
  absl::StatusOr<Url> url = Url::Parse("HTTPS://Example.COM:8443/a/b.png?x=1&y=2#frag");
  ASSERT_OK(url);
  EXPECT_EQ(url->scheme, "https");
  EXPECT_EQ(url->host.name, "example.com");
  EXPECT_FALSE(url->host.address.has_value());
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->path, "/a/b.png");
  EXPECT_THAT(url->query, Optional(std::string("x=1&y=2")));
  EXPECT_THAT(url->fragment, Optional(std::string("frag")));
  EXPECT_EQ(url->PathAndQuery(), "/a/b.png?x=1&y=2");
}

TEST(UrlTest, DefaultsThePortByScheme) {
  EXPECT_EQ(Url::Parse("http://example.com")->port, 80);
  EXPECT_EQ(Url::Parse("https://example.com")->port, 443);
  EXPECT_EQ(Url::Parse("gopher://example.com")->port, 0);
  EXPECT_EQ(Url::Parse("gopher://example.com:70")->port, 70);
}

TEST(UrlTest, AnEmptyPathIsTheRoot) {
  absl::StatusOr<Url> bare = Url::Parse("http://example.com");
  ASSERT_OK(bare);
  EXPECT_EQ(bare->path, "");
  EXPECT_EQ(bare->query, std::nullopt);
  EXPECT_EQ(bare->fragment, std::nullopt);
  EXPECT_EQ(bare->PathAndQuery(), "/");
  EXPECT_EQ(Url::Parse("https://example.com?q=1")->PathAndQuery(), "/?q=1");
  EXPECT_EQ(Url::Parse("https://example.com#x")->PathAndQuery(), "/");
  EXPECT_THAT(Url::Parse("https://example.com/?")->query, Optional(std::string("")));
}

TEST(UrlTest, ReadsAddressHosts) {
  absl::StatusOr<Url> v6 = Url::Parse("http://[2001:DB8::1]:81/p");
  ASSERT_OK(v6);
  EXPECT_EQ(v6->host.name, "2001:db8::1");
  EXPECT_EQ(v6->host.address, IpAddress::Parse("2001:db8::1").value());
  EXPECT_EQ(v6->port, 81);

  absl::StatusOr<Url> v4 = Url::Parse("http://10.0.0.1./p");
  ASSERT_OK(v4);
  EXPECT_EQ(v4->host.name, "10.0.0.1");
  EXPECT_EQ(v4->host.address, IpAddress::Parse("10.0.0.1").value());

  absl::StatusOr<Url> mapped = Url::Parse("http://[::ffff:127.0.0.1]/");
  ASSERT_OK(mapped);
  EXPECT_EQ(mapped->host.address->ToString(), "127.0.0.1");
}

TEST(UrlTest, RefusesWhatIsNotAnAbsoluteUrl) {
  for (const char* url : {"", "example.com/image.png", "https:/example.com/x",
                          "javascript:alert(1)", "1http://example.com/", "ht~tp://example.com/"}) {
    EXPECT_THAT(Url::Parse(url),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute URL")))
        << url;
  }
}

TEST(UrlTest, RefusesWhatParsersDisagreeOn) {
  for (const std::string& url :
       {std::string("https://exa mple.com/x.png"), std::string(" https://example.com/"),
        std::string("https://example.com/x\n"), std::string("https://ex\xc3\xa4mple.com/"),
        std::string("https://example.com/\0", 21)}) {
    EXPECT_THAT(Url::Parse(url),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("printable ASCII")))
        << absl::CHexEscape(url);
  }
  EXPECT_THAT(Url::Parse("https://example.com\\@evil.com/"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("backslash")));
  for (const char* url : {"https://user:pass@example.com/x", "https://user@example.com/x"}) {
    EXPECT_THAT(Url::Parse(url),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("user information")))
        << url;
  }
}

TEST(UrlTest, RefusesBadHostsAndPortsSayingWhich) {
  for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
           {"https://", "no HOST"},
           {"https:///path", "no HOST"},
           {"https://:80/", "no HOST"},
           {"https://[::1/", "no closing ']'"},
           {"https://[::1]x/", "text after the ']' is not :PORT"},
           {"https://[zz::1]/", "is not an IPv6 address in brackets"},
           {"https://[fe80::1%25eth0]/", "is not an IPv6 address in brackets"},
           {"https://example..com/", "is not a host name"},
           {"https://-/", "is not a host name"},
           {"https://%65xample.com/", "is not a host name"},
           {"https://2130706433/", "dotted-quad"},
           {"https://0x7f.0.0.1/", "dotted-quad"},
           {"https://127.1/", "dotted-quad"},
           {"https://127.000.0.1/", "dotted-quad"},
           {"https://256.1.1.1/", "dotted-quad"},
           {"https://example.com:0/", "the port must be a number in [1, 65535]"},
           {"https://example.com:65536/", "the port must be a number in [1, 65535]"},
           {"https://example.com:/", "the port must be a number in [1, 65535]"},
           {"https://example.com:http/", "the port must be a number in [1, 65535]"},
           {"https://example.com:80:80/", "more than one ':'"},
       }) {
    EXPECT_THAT(Url::Parse(url),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr("has a bad host or port: "), HasSubstr(why))))
        << url;
  }
}

TEST(UrlTest, TheErrorDoesNotRepeatTheUrl) {
  const absl::Status s = Url::Parse("https://secret-token@example.com/").status();
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("secret-token")));
}

}  // namespace
}  // namespace anyai::net
