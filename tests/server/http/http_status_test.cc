// server/http/http_status.cc: absl::Status -> HTTP status, OpenAI error body and headers.
#include "server/http/http_status.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/gateway/errors.h"
#include "tests/server/gateway/random_refusals.h"

namespace anyai::server {
namespace {

std::string Header(const HttpResponse& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

TEST(ErrorResponse, HasOpenAisErrorShape) {
  HttpResponse r = ErrorResponse(InvalidField("messages[1].content", "must not be empty"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Header(r, "content-type"), "application/json");
  EXPECT_EQ(r.body,
            R"({"error":{"message":"messages[1].content: must not be empty",)"
            R"("type":"invalid_request_error","param":"messages[1].content","code":null}})");
}

TEST(ProtocolError, WritesItsBodyAsNlohmannJsonDumpsIt) {
  // The body is written without a JSON tree; a message may quote what the client sent.
  for (const std::string& message :
       {std::string("plain"), std::string("\"quoted\" \\ \t\n\x01\x7f"),
        std::string("caf\xc3\xa9 and \xff")}) {
    nlohmann::ordered_json expected;
    expected["error"]["message"] = message;
    expected["error"]["type"] = "invalid_request_error";
    expected["error"]["param"] = nullptr;
    expected["error"]["code"] = "a\"code";
    EXPECT_EQ(ProtocolError(400, message, "a\"code").body,
              expected.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        << message;
  }
}

TEST(ErrorResponse, MapsEveryCode) {
  const struct {
    absl::Status status;
    int http;
    const char* type;
    const char* code;  // JSON
    const char* param;
  } cases[] = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request_error", "null", "null"},
      {Unauthenticated("unknown or revoked API key"), 401, "invalid_request_error",
       "\"invalid_api_key\"", "null"},
      {absl::PermissionDeniedError("x"), 403, "invalid_request_error", "\"permission_denied\"",
       "null"},
      {UnknownModel("model", "gpt-17"), 404, "invalid_request_error", "\"model_not_found\"",
       "\"model\""},
      {absl::NotFoundError("x"), 404, "invalid_request_error", "\"not_found\"", "null"},
      {absl::UnavailableError("storage"), 503, "server_error", "\"service_unavailable\"", "null"},
      {FromProvider(absl::UnavailableError("upstream")), 502, "server_error", "\"upstream_error\"",
       "null"},
      {absl::DeadlineExceededError("slow"), 504, "server_error", "\"timeout\"", "null"},
      {absl::UnimplementedError("no"), 501, "server_error", "\"not_implemented\"", "null"},
      {absl::InternalError("bug"), 500, "server_error", "\"internal_error\"", "null"},
  };
  for (const auto& c : cases) {
    HttpResponse r = ErrorResponse(c.status);
    SCOPED_TRACE(c.status.ToString());
    EXPECT_EQ(r.status, c.http);
    nlohmann::json body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["error"]["type"], c.type);
    EXPECT_EQ(body["error"]["code"].dump(), c.code);
    EXPECT_EQ(body["error"]["param"].dump(), c.param);
    EXPECT_EQ(body["error"]["message"], std::string(c.status.message()));
    EXPECT_EQ(Header(r, "retry-after"), "<absent>");
  }
}

TEST(ErrorResponse, RateLimitedCarriesRetryAfter) {
  HttpResponse r = ErrorResponse(RateLimited({.feature_class = "llm",
                                              .plan = "free",
                                              .window = absl::Minutes(1),
                                              .limit = 10,
                                              .retry_after = absl::Milliseconds(12'300),
                                              .tenant_description = ""}));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Header(r, "retry-after"), "13");
  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"]["type"], "requests");
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
  EXPECT_THAT(body["error"]["message"].get<std::string>(),
              ::testing::AllOf(::testing::HasSubstr("llm"), ::testing::HasSubstr("1m")));
}

TEST(ErrorResponse, ARequestThatNeverFitsHasNoRetryAfter) {
  HttpResponse r = ErrorResponse(RateLimited({.feature_class = "llm",
                                              .plan = "free",
                                              .kind = quota::LimitKind::kTokens,
                                              .window = absl::Minutes(1),
                                              .limit = 20000,
                                              .requested = 30000,
                                              .never_fits = true,
                                              .retry_after = absl::ZeroDuration(),
                                              .tenant_description = ""}));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Header(r, "retry-after"), "<absent>");
  EXPECT_EQ(Header(r, "x-should-retry"), "false");  // the OpenAI SDKs' no-retry signal
  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(body["error"]["type"], "tokens");
  EXPECT_THAT(body["error"]["message"].get<std::string>(),
              ::testing::HasSubstr("it can never be admitted"));
}

TEST(ErrorResponse, ATokenRefusalCarriesItsRealWait) {
  HttpResponse r = ErrorResponse(RateLimited({.feature_class = "llm",
                                              .plan = "free",
                                              .kind = quota::LimitKind::kTokens,
                                              .window = absl::Minutes(1),
                                              .limit = 20000,
                                              .requested = 1200,
                                              .retry_after = absl::Milliseconds(11'100),
                                              .tenant_description = ""}));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Header(r, "retry-after"), "12");
  EXPECT_EQ(Header(r, "x-should-retry"), "<absent>");
}

TEST(AddRateLimitHeaders, WritesEveryHeaderOfTheState) {
  RateLimitState state{.limit = 10, .remaining = 9, .reset = absl::Seconds(6)};
  state.tokens = quota::MeterState{.limit = 20000, .remaining = 18800, .reset = absl::Seconds(60)};
  state.limits = {{.kind = quota::LimitKind::kRequests,
                   .window = absl::Minutes(1),
                   .limit = 10,
                   .remaining = 9,
                   .reset = absl::Seconds(6)},
                  {.kind = quota::LimitKind::kTokens,
                   .window = absl::Minutes(1),
                   .limit = 20000,
                   .remaining = 18800,
                   .reset = absl::Seconds(60)},
                  {.kind = quota::LimitKind::kConcurrency,
                   .window = absl::ZeroDuration(),
                   .limit = 4,
                   .remaining = 3,
                   .reset = absl::ZeroDuration()}};
  HttpHeaders headers = {{"content-type", "application/json"}};
  AddRateLimitHeaders(state, &headers);
  EXPECT_EQ(
      headers,
      (HttpHeaders{{"content-type", "application/json"},
                   {"x-ratelimit-limit-requests", "10"},
                   {"x-ratelimit-remaining-requests", "9"},
                   {"x-ratelimit-reset-requests", "6s"},
                   {"x-ratelimit-limit-tokens", "20000"},
                   {"x-ratelimit-remaining-tokens", "18800"},
                   {"x-ratelimit-reset-tokens", "1m0s"},
                   {"ratelimit-policy", R"("requests-1m";q=10;w=60, "tokens-1m";q=20000;w=60, )"
                                        R"("concurrency";q=4;qu="concurrent-requests")"},
                   {"ratelimit", R"("requests-1m";r=9;t=6, "tokens-1m";r=18800;t=60, )"
                                 R"("concurrency";r=3)"}}));
}

TEST(AddRateLimitHeaders, WritesTheFiguresOrNothing) {
  HttpHeaders headers;
  AddRateLimitHeaders(RateLimitState{.limit = 30, .remaining = 29, .reset = absl::Seconds(61)},
                      &headers);
  EXPECT_EQ(headers, (HttpHeaders{{"x-ratelimit-limit-requests", "30"},
                                  {"x-ratelimit-remaining-requests", "29"},
                                  {"x-ratelimit-reset-requests", "1m1s"}}));
  headers.clear();
  AddRateLimitHeaders(std::nullopt, &headers);  // not decided (fail-open): no headers
  EXPECT_TRUE(headers.empty());
}

TEST(RetryAfterSeconds, RoundsUp) {
  EXPECT_EQ(RetryAfterSeconds(absl::ZeroDuration()), 0);
  EXPECT_EQ(RetryAfterSeconds(absl::Milliseconds(1)), 1);
  EXPECT_EQ(RetryAfterSeconds(absl::Seconds(2)), 2);
  EXPECT_EQ(RetryAfterSeconds(absl::Milliseconds(2001)), 3);
}

TEST(ProtocolError, IsAnInvalidRequestWithACode) {
  HttpResponse r = ProtocolError(413, "too big", "request_too_large");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, R"({"error":{"message":"too big","type":"invalid_request_error",)"
                    R"("param":null,"code":"request_too_large"}})");
}

// The whole response of a refusal, as the transport writes it (status, headers, body).
std::string Describe(const HttpResponse& r) {
  std::string out = std::to_string(r.status) + "\n";
  for (const auto& [n, v] : r.headers) out += n + ": " + v + "\n";
  return out + r.body;
}

TEST(ErrorResponse, ARefusalFromTheMemoIsAnsweredAsAFreshOne) {
  testing::RandomRefusals random(5);
  for (int i = 0; i < 20000; ++i) {
    const RateLimitInfo info = random.Next();
    const std::string memoized = Describe(ErrorResponse(RateLimited(info)));
    ASSERT_EQ(memoized, Describe(ErrorResponse(RateLimitedUncached(info)))) << i;
    ASSERT_EQ(memoized, Describe(ErrorResponse(RateLimited(info)))) << i;
  }
}

TEST(ErrorResponse, RefusalsTheClientCanTellApartAreAnsweredApart) {
  testing::RandomRefusals random(6);
  for (int i = 0; i < 2000; ++i) {
    const RateLimitInfo base = random.Next();
    for (int field = 0; field < testing::RandomRefusals::kFields; ++field) {
      RateLimitInfo variant = base;
      random.Redraw(field, variant);
      const std::string a = Describe(ErrorResponse(RateLimited(base)));
      const std::string b = Describe(ErrorResponse(RateLimited(variant)));
      ASSERT_EQ(b, Describe(ErrorResponse(RateLimitedUncached(variant)))) << "field " << field;
      // The body leaves out RetryInfo's milliseconds (Retry-After is whole seconds): states
      // apart only there may share a response.
      RateLimitInfo base_s = RateLimitKey(base), variant_s = RateLimitKey(variant);
      base_s.retry_after = absl::Seconds(RetryAfterSeconds(base_s.retry_after));
      variant_s.retry_after = absl::Seconds(RetryAfterSeconds(variant_s.retry_after));
      if (base_s == variant_s) {
        EXPECT_EQ(a, b) << "field " << field;
      } else {
        EXPECT_NE(a, b) << "field " << field;
      }
    }
  }
}

}  // namespace
}  // namespace anyai::server
