// The usage page (server/http/usage_page.cc): its figures, escaping, bars and Accept
// negotiation as pure functions, then GET /check through a whole in-process Server over real
// sockets: a browser gets the page (with the x-ratelimit-* headers), everyone else the JSON.
#include "server/http/usage_page.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/gateway/proto_time.h"
#include "tests/server/http/http_test_server.h"

namespace anyai::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// What Chromium sends for a page it navigates to.
constexpr char kBrowserAccept[] =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);  // 2026-01-01 00:00:00 UTC

void AddWindowTo(google::protobuf::RepeatedPtrField<v1::WindowUsage>* into, absl::Duration window,
                 int64_t used, int64_t limit, absl::Duration reset, int64_t reserved = 0) {
  v1::WindowUsage* w = into->Add();
  w->set_reserved(reserved);
  *w->mutable_window() = server::ToProto(window);
  w->set_used(used);
  w->set_limit(limit);
  w->set_remaining(std::max<int64_t>(0, limit - used));
  *w->mutable_reset() = server::ToProto(reset);
}

void AddWindow(v1::ClassUsage* c, absl::Duration window, int64_t used, int64_t limit,
               absl::Duration reset) {
  AddWindowTo(c->mutable_windows(), window, used, limit, reset);
}

v1::CheckKeyResponse PremiumUsage() {
  v1::CheckKeyResponse usage;
  usage.set_plan("premium");
  usage.set_masked_key("sk-anyai-12…cdef");
  usage.set_created(1'767'139'200);  // 2025-12-31 00:00:00 UTC
  v1::ClassUsage* llm = usage.add_classes();
  llm->set_feature_class("llm");
  AddWindow(llm, absl::Minutes(1), 3, 30, absl::Seconds(42));
  AddWindow(llm, absl::Hours(24), 3, 1000, absl::Hours(23) + absl::Minutes(59));
  AddWindow(llm, absl::Hours(24 * 7), 3, 9000, absl::Hours(24) + absl::Minutes(17));
  v1::ClassUsage* imagine = usage.add_classes();
  imagine->set_feature_class("imagine");
  AddWindow(imagine, absl::Hours(24), 0, 0, absl::ZeroDuration());
  return usage;
}

TEST(UsagePageHtmlTest, ShowsPlanMaskedKeyAndEveryWindowsFigures) {
  const std::string page = server::UsagePageHtml(PremiumUsage(), kNow);
  EXPECT_THAT(page, HasSubstr("<title>AnyAI usage: premium plan</title>"));
  EXPECT_THAT(page, HasSubstr("<dt>Plan</dt><dd>premium</dd>"));
  EXPECT_THAT(page, HasSubstr("<code>sk-anyai-12…cdef</code>"));
  EXPECT_THAT(page, HasSubstr("2025-12-31 00:00:00 UTC"));  // created
  EXPECT_THAT(page, HasSubstr("2026-01-01 00:00:00 UTC"));  // as of
  EXPECT_THAT(page, HasSubstr("<h2>llm</h2>"));
  EXPECT_THAT(page, HasSubstr("<h2>imagine</h2>"));
  EXPECT_THAT(page, HasSubstr("<td>per minute</td><td class=\"num\">3 / 30</td>"
                              "<td class=\"num\">27 left</td><td>resets in 42 s"));
  EXPECT_THAT(page, HasSubstr("at 00:00:42 UTC"));
  EXPECT_THAT(page, HasSubstr("<td>per day</td><td class=\"num\">3 / 1000</td>"
                              "<td class=\"num\">997 left</td><td>resets in 23 h 59 min"));
  EXPECT_THAT(page, HasSubstr("at 23:59:00 UTC"));
  // Over a day: still in hours, and the reset time with its date.
  EXPECT_THAT(page, HasSubstr("<td>per week</td><td class=\"num\">3 / 9000</td>"
                              "<td class=\"num\">8997 left</td><td>resets in 24 h 17 min"
                              "<br><small>at Jan 02 00:17 UTC</small>"));
  EXPECT_THAT(page, HasSubstr("0 / 0</td><td class=\"num\">0 left</td><td>nothing counted"));
}

TEST(UsagePageHtmlTest, WithoutTokenSpendOrConcurrencyLimitsThePageIsAsBefore) {
  const std::string page = server::UsagePageHtml(PremiumUsage(), kNow);
  EXPECT_THAT(page, Not(HasSubstr("requests per")));
  EXPECT_THAT(page, Not(HasSubstr("tokens per")));
  EXPECT_THAT(page, Not(HasSubstr("reserved")));
  EXPECT_THAT(page, Not(HasSubstr("In flight")));
  EXPECT_THAT(page, Not(HasSubstr("max_tokens")));
}

// The free plan's closed_llm of deploy/config/token-limits.textproto, one call in flight.
v1::CheckKeyResponse ClosedLlmWithEveryLimit() {
  v1::CheckKeyResponse usage;
  usage.set_plan("free");
  v1::ClassUsage* c = usage.add_classes();
  c->set_feature_class("closed_llm");
  AddWindowTo(c->mutable_windows(), absl::Hours(1), 2, 25, absl::Minutes(30), 1);
  AddWindowTo(c->mutable_token_windows(), absl::Hours(1), 1512, 50000, absl::Minutes(30), 1200);
  AddWindowTo(c->mutable_token_windows(), absl::Hours(24), 1512, 200000, absl::Hours(23));
  AddWindowTo(c->mutable_spend_windows(), absl::Hours(24), 15'600, 1'000'000, absl::Hours(23),
              12'500);
  c->set_in_flight(1);
  c->set_max_concurrent(2);
  v1::ClassUsage* ask = usage.add_classes();
  ask->set_feature_class("globalask");
  AddWindow(ask, absl::Minutes(1), 1, 120, absl::Seconds(5));
  ask->set_in_flight(3);  // no limit on calls in flight, but some are
  return usage;
}

TEST(UsagePageHtmlTest, ShowsTokenAndSpendWindowsReservedUnitsAndCallsInFlight) {
  const std::string page = server::UsagePageHtml(ClosedLlmWithEveryLimit(), kNow);
  // With tokens limited too, request windows say what they count.
  EXPECT_THAT(page, HasSubstr("<td>requests per hour</td><td class=\"num\">2 / 25<br><small>1 "
                              "reserved</small></td><td class=\"num\">23 left</td>"));
  EXPECT_THAT(page, HasSubstr("<td>tokens per hour</td><td class=\"num\">1512 / 50000<br><small>"
                              "1200 reserved</small></td><td class=\"num\">48488 left</td>"));
  EXPECT_THAT(page, HasSubstr("<td>tokens per day</td><td class=\"num\">1512 / 200000</td>"
                              "<td class=\"num\">198488 left</td>"));
  EXPECT_THAT(page, HasSubstr("<td>spend per day</td><td class=\"num\">$0.0156 / $1.00<br><small>"
                              "$0.0125 reserved</small></td><td class=\"num\">$0.9844 left</td>"));
  EXPECT_THAT(page, HasSubstr("aria-valuemax=\"1000000\" aria-valuenow=\"15600\""));
  EXPECT_THAT(page, HasSubstr("<p class=\"flight\">In flight: <span class=\"num\">1 of at most 2 "
                              "calls</span></p>"));
  EXPECT_THAT(page, HasSubstr("<span class=\"num\">3 calls (no limit)</span>"));
  // The globalask card has no token windows: its request rows keep their short names.
  EXPECT_THAT(page, HasSubstr("<h2>globalask</h2>"));
  EXPECT_THAT(page, HasSubstr("<td>per minute</td><td class=\"num\">1 / 120</td>"));
  EXPECT_THAT(page, HasSubstr("<code>max_tokens</code>"));  // the note on reservations
}

TEST(UsagePageHtmlTest, IsSelfContainedWithoutScriptsOrExternalAssets) {
  const std::string page = server::UsagePageHtml(PremiumUsage(), kNow);
  EXPECT_THAT(page, HasSubstr("<style>"));
  for (const char* absent : {"<script", "<link", "<img", "src=", "href=", "url(", "@import"}) {
    EXPECT_THAT(page, Not(HasSubstr(absent))) << absent;
  }
}

TEST(UsagePageHtmlTest, AnonymousCallerIsNamedAndHasNoCreatedTime) {
  v1::CheckKeyResponse usage = PremiumUsage();
  usage.set_plan("free");
  usage.clear_masked_key();
  usage.set_created(0);
  const std::string page = server::UsagePageHtml(usage, kNow);
  EXPECT_THAT(page, HasSubstr("anonymous (your IP&#39;s free-plan usage)"));
  EXPECT_THAT(page, Not(HasSubstr("<dd><code>")));
  EXPECT_THAT(page, Not(HasSubstr("Created")));
}

TEST(UsagePageHtmlTest, EscapesEveryInterpolatedString) {
  v1::CheckKeyResponse usage = PremiumUsage();
  usage.set_plan("p\"l'an&");
  usage.set_masked_key("<script>alert(1)</script>");
  usage.mutable_classes(0)->set_feature_class("<img src=x onerror=alert(2)>");
  const std::string page = server::UsagePageHtml(usage, kNow);
  EXPECT_THAT(page, Not(HasSubstr("<script")));
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(page, HasSubstr("<h2>&lt;img src=x onerror=alert(2)&gt;</h2>"));
  EXPECT_THAT(page, HasSubstr("<dd>p&quot;l&#39;an&amp;</dd>"));
}

TEST(UsagePageHtmlTest, BarWidthIsUsedOverLimitClampedAndFullForALimitOfZero) {
  v1::CheckKeyResponse usage;
  usage.set_plan("free");
  v1::ClassUsage* c = usage.add_classes();
  c->set_feature_class("llm");
  AddWindow(c, absl::Minutes(1), 1, 3, absl::Seconds(1));     // 33.3 %
  AddWindow(c, absl::Hours(1), 8, 10, absl::Seconds(1));      // 80 %: warn
  AddWindow(c, absl::Hours(24), 12, 10, absl::Seconds(1));    // over the limit: 100 %
  AddWindow(c, absl::Hours(48), 0, 0, absl::ZeroDuration());  // no division by zero
  AddWindow(c, absl::Hours(72), 0, 5, absl::ZeroDuration());  // empty
  const std::string page = server::UsagePageHtml(usage, kNow);
  EXPECT_THAT(page, HasSubstr("<div class=\"bar\" role=\"progressbar\" aria-valuemin=\"0\" "
                              "aria-valuemax=\"3\" aria-valuenow=\"1\" title=\"33.3% used\">"
                              "<span style=\"width:33.3%\">"));
  EXPECT_THAT(page, HasSubstr("<div class=\"bar warn\""));
  EXPECT_THAT(page, HasSubstr("title=\"80.0% used\"><span style=\"width:80.0%\">"));
  EXPECT_THAT(page, HasSubstr("aria-valuemax=\"10\" aria-valuenow=\"12\" title=\"100.0% used\">"
                              "<span style=\"width:100.0%\">"));
  EXPECT_THAT(page, HasSubstr("<div class=\"bar full\" role=\"progressbar\" aria-valuemin=\"0\" "
                              "aria-valuemax=\"0\" aria-valuenow=\"0\" title=\"100.0% used\">"));
  EXPECT_THAT(page, HasSubstr("aria-valuemax=\"5\" aria-valuenow=\"0\" title=\"0.0% used\">"
                              "<span style=\"width:0.0%\">"));
  EXPECT_THAT(page, HasSubstr("<td>per 2 d</td>"));
  EXPECT_THAT(page, HasSubstr("<td>per 3 d</td>"));
}

TEST(UsagePageTest, ResponseIsUtf8HtmlThatForbidsLoadingAnythingAndIsNotCached) {
  const server::HttpResponse r = server::UsagePage(PremiumUsage(), kNow);
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers,
              ::testing::Contains(::testing::Pair("content-type", "text/html; charset=utf-8")));
  EXPECT_THAT(r.headers,
              ::testing::Contains(::testing::Pair(
                  "content-security-policy",
                  "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")));
  EXPECT_THAT(r.headers, ::testing::Contains(::testing::Pair("cache-control", "no-store")));
  EXPECT_THAT(r.headers, ::testing::Contains(::testing::Pair("referrer-policy", "no-referrer")));
}

TEST(UsageErrorPageTest, KeepsTheStatusAndShowsAClientErrorsMessageEscaped) {
  const server::HttpResponse r = server::UsageErrorPage(absl::UnauthenticatedError("bad <key>"));
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.headers,
              ::testing::Contains(::testing::Pair("content-type", "text/html; charset=utf-8")));
  EXPECT_THAT(r.body, HasSubstr("bad &lt;key&gt;"));
}

TEST(UsageErrorPageTest, HidesAServerErrorsMessage) {
  const server::HttpResponse r =
      server::UsageErrorPage(absl::InternalError("rocksdb: IO error: /var/lib/anyai/LOCK"));
  EXPECT_EQ(r.status, 500);
  EXPECT_THAT(r.body, Not(HasSubstr("rocksdb")));
  EXPECT_THAT(r.body, HasSubstr("try again"));
}

TEST(PrefersHtmlTest, OnlyWhenHtmlOutranksJson) {
  EXPECT_TRUE(server::PrefersHtml(kBrowserAccept));
  EXPECT_TRUE(server::PrefersHtml("text/html"));
  EXPECT_TRUE(server::PrefersHtml("TEXT/HTML; charset=utf-8"));
  EXPECT_TRUE(server::PrefersHtml("application/json;q=0.5, text/*"));
  EXPECT_FALSE(server::PrefersHtml(std::nullopt));
  EXPECT_FALSE(server::PrefersHtml(""));
  EXPECT_FALSE(server::PrefersHtml("*/*"));
  EXPECT_FALSE(server::PrefersHtml("application/json"));
  EXPECT_FALSE(server::PrefersHtml("text/html, application/json"));  // a tie keeps JSON
  EXPECT_FALSE(server::PrefersHtml("text/html;q=0.5, application/json"));
  EXPECT_FALSE(server::PrefersHtml("text/html;q=0, */*"));
  EXPECT_FALSE(server::PrefersHtml("text/html;q=bogus"));
}

class UsagePageServerTest : public HttpServerFixture {};

TEST_F(UsagePageServerTest, ApiClientsStillGetJson) {
  for (const Headers& headers :
       std::vector<Headers>{{}, {{"Accept", "application/json"}}, {{"Accept", "*/*"}}}) {
    HttpReply r = Get("/check", headers);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "application/json");
    nlohmann::json body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["plan"], "free");
    EXPECT_EQ(body["masked_key"], "");
  }
}

TEST_F(UsagePageServerTest, BrowserGetsThePageWithTheJsonsFiguresAndRateLimitHeaders) {
  const std::string key = CreateKey("premium");
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(
        Post("/v1/chat/completions",
             R"({"model": "phi-2", "messages": [{"role": "user", "content": "hi"}]})", Bearer(key))
            .status,
        200);
  }
  nlohmann::json json = nlohmann::json::parse(Get("/check?key=" + key).body);
  HttpReply r = Get("/v1/check?key=" + key, {{"Accept", kBrowserAccept}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
  EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "600");
  EXPECT_THAT(r.body, Not(HasSubstr(key)));
  EXPECT_THAT(r.body, HasSubstr(json["masked_key"].get<std::string>()));
  EXPECT_THAT(r.body, HasSubstr("<dd>premium</dd>"));
  for (const nlohmann::json& c : json["classes"]) {
    EXPECT_THAT(r.body, HasSubstr(absl::StrCat("<h2>", c["feature_class"].get<std::string>())));
  }
  EXPECT_EQ(json["classes"][0]["feature_class"], "llm");
  EXPECT_THAT(r.body, HasSubstr("<h2>llm</h2>\n"));
  EXPECT_THAT(r.body, HasSubstr("<td>per minute</td><td class=\"num\">2 / 30</td>"
                                "<td class=\"num\">28 left</td>"));
}

TEST_F(UsagePageServerTest, BrowserGetsAnHtmlErrorPageWithTheSameStatus) {
  HttpReply r = Get("/check?key=sk-anyai-" + std::string(64, '0'), {{"Accept", kBrowserAccept}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_THAT(r.body, HasSubstr("<h1>AnyAI usage: error 401</h1>"));
  EXPECT_THAT(r.body, Not(HasSubstr(std::string(64, '0'))));
}

}  // namespace
}  // namespace anyai::testing
