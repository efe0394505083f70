// server/http/http_router.cc: every route with and without /v1, 404 and 405 with Allow.
#include "server/http/http_router.h"

#include "gtest/gtest.h"

namespace anyai::server {
namespace {

HttpRouter Router() {
  HttpRouter router;
  auto nothing = [](HttpExchange&) {};
  EXPECT_TRUE(router.Add("POST", "/chat/completions", nothing).ok());
  EXPECT_TRUE(router.Add("GET", "/models", nothing).ok());
  EXPECT_TRUE(router.Add("GET", "/models/*", nothing).ok());
  EXPECT_TRUE(router.Add("GET", "/check", nothing).ok());
  EXPECT_TRUE(router.Add("HEAD", "/check", nothing).ok());
  return router;
}

TEST(HttpRouter, FindsEveryPathWithAndWithoutV1) {
  HttpRouter router = Router();
  for (const char* path : {"/chat/completions", "/v1/chat/completions"}) {
    HttpRouter::Match m = router.Find("POST", path);
    ASSERT_NE(m.route, nullptr) << path;
    EXPECT_EQ(m.route->path, "/chat/completions");
  }
  EXPECT_NE(router.Find("GET", "/v1/check").route, nullptr);
  EXPECT_NE(router.Find("GET", "/check").route, nullptr);
}

TEST(HttpRouter, WildcardMatchesOneSegment) {
  HttpRouter router = Router();
  HttpRouter::Match m = router.Find("GET", "/v1/models/gpt-4o");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->path, "/models/*");
  EXPECT_EQ(router.Find("GET", "/v1/models/").route, nullptr);
  EXPECT_EQ(router.Find("GET", "/v1/models/a/b").route, nullptr);
  EXPECT_EQ(router.Find("GET", "/v1/models").route->path, "/models");
}

TEST(HttpRouter, WrongMethodIs405WithAllow) {
  HttpRouter router = Router();
  HttpRouter::Match m = router.Find("GET", "/v1/chat/completions");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "POST");
  EXPECT_EQ(router.Find("DELETE", "/check").allow, "GET, HEAD");
}

TEST(HttpRouter, UnknownPathIs404) {
  HttpRouter router = Router();
  for (const char* path : {"/", "/v1", "/v1/", "/v2/models", "/v1/v1/models", "/models/",
                           "/chat/completions/", "models", ""}) {
    HttpRouter::Match m = router.Find("GET", path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_EQ(m.status, 404) << path;
  }
}

TEST(HttpRouter, RefusesBadOrDuplicateRoutes) {
  HttpRouter router = Router();
  auto nothing = [](HttpExchange&) {};
  EXPECT_FALSE(router.Add("GET", "/models", nothing).ok());
  EXPECT_FALSE(router.Add("GET", "/v1/metrics", nothing).ok());
  EXPECT_FALSE(router.Add("GET", "metrics", nothing).ok());
  EXPECT_TRUE(router.Add("GET", "/metrics", nothing, HttpRouter::Dispatch::kInline).ok());
}

TEST(WithoutV1, StripsOnlyAWholeLeadingSegment) {
  EXPECT_EQ(WithoutV1("/v1/models"), "/models");
  EXPECT_EQ(WithoutV1("/v1"), "/");
  EXPECT_EQ(WithoutV1("/v10/models"), "/v10/models");
  EXPECT_EQ(WithoutV1("/models"), "/models");
}

}  // namespace
}  // namespace anyai::server
