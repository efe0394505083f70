// server/http/http_status.cc: absl::Status -> HTTP status, OpenAI error body and headers.
#include "server/http/http_status.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/gateway/errors.h"

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

TEST(ErrorResponse, MapsEveryCode) {
  const struct {
    absl::Status status;
    ErrorSource source;
    int http;
    const char* type;
    const char* code;  // JSON
    const char* param;
  } cases[] = {
      {absl::InvalidArgumentError("x"), ErrorSource::kGateway, 400, "invalid_request_error", "null",
       "null"},
      {Unauthenticated("unknown or revoked API key"), ErrorSource::kGateway, 401,
       "invalid_request_error", "\"invalid_api_key\"", "null"},
      {absl::PermissionDeniedError("x"), ErrorSource::kGateway, 403, "invalid_request_error",
       "\"permission_denied\"", "null"},
      {UnknownModel("model", "gpt-17"), ErrorSource::kGateway, 404, "invalid_request_error",
       "\"model_not_found\"", "\"model\""},
      {absl::NotFoundError("x"), ErrorSource::kGateway, 404, "invalid_request_error",
       "\"not_found\"", "null"},
      {absl::UnavailableError("storage"), ErrorSource::kGateway, 503, "server_error",
       "\"service_unavailable\"", "null"},
      {absl::UnavailableError("upstream"), ErrorSource::kProvider, 502, "server_error",
       "\"upstream_error\"", "null"},
      {absl::DeadlineExceededError("slow"), ErrorSource::kProvider, 504, "server_error",
       "\"timeout\"", "null"},
      {absl::UnimplementedError("no"), ErrorSource::kProvider, 501, "server_error",
       "\"not_implemented\"", "null"},
      {absl::InternalError("bug"), ErrorSource::kGateway, 500, "server_error", "\"internal_error\"",
       "null"},
  };
  for (const auto& c : cases) {
    HttpResponse r = ErrorResponse(c.status, c.source);
    SCOPED_TRACE(c.status.ToString());
    EXPECT_EQ(r.status, c.http);
    EXPECT_EQ(HttpStatusOf(c.status, c.source), c.http);
    nlohmann::json body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["error"]["type"], c.type);
    EXPECT_EQ(body["error"]["code"].dump(), c.code);
    EXPECT_EQ(body["error"]["param"].dump(), c.param);
    EXPECT_EQ(body["error"]["message"], std::string(c.status.message()));
    EXPECT_EQ(Header(r, "retry-after"), "<absent>");
  }
}

TEST(ErrorResponse, RateLimitedCarriesRetryAfterAndRateLimitHeaders) {
  HttpResponse r = ErrorResponse(RateLimited({.feature_class = "llm",
                                              .plan = "free",
                                              .window = absl::Minutes(1),
                                              .limit = 10,
                                              .retry_after = absl::Milliseconds(12'300),
                                              .tenant_description = ""}));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(Header(r, "retry-after"), "13");
  EXPECT_EQ(Header(r, "x-ratelimit-limit-requests"), "10");
  EXPECT_EQ(Header(r, "x-ratelimit-remaining-requests"), "0");
  EXPECT_EQ(Header(r, "x-ratelimit-reset-requests"), "12.3s");
  nlohmann::json body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"]["type"], "requests");
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
  EXPECT_THAT(body["error"]["message"].get<std::string>(),
              ::testing::AllOf(::testing::HasSubstr("llm"), ::testing::HasSubstr("1m")));
}

TEST(AddRateLimitHeaders, WritesTheDecisionOrNothing) {
  quota::Decision d;
  d.admitted = true;
  d.limit = 30;
  d.remaining = 29;
  d.reset = absl::Seconds(61);
  HttpHeaders headers;
  AddRateLimitHeaders(d, &headers);
  EXPECT_EQ(headers, (HttpHeaders{{"x-ratelimit-limit-requests", "30"},
                                  {"x-ratelimit-remaining-requests", "29"},
                                  {"x-ratelimit-reset-requests", "1m1s"}}));
  headers.clear();
  AddRateLimitHeaders(quota::Decision{}, &headers);  // fail-open: no limit, no headers
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

}  // namespace
}  // namespace anyai::server
