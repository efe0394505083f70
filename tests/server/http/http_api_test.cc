// The HTTP front's endpoints end to end (server/http/http_api.cc): a real Server in-process with a
// temp RocksDB and a frozen clock, real sockets, raw HTTP. Every endpoint under both path
// spellings, the seed's exact JSON shapes, streams, OpenAI's error shape and status codes,
// the rate-limit headers, and nothing counted for bad input.
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server/http/http_test_server.h"

namespace anyai::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

std::string ChatBody(const std::string& model, const std::string& content = "hello there",
                     const std::string& extra = "") {
  return absl::StrCat(R"({"model": ")", model, R"(", "messages": [{"role": "user", "content": )",
                      Json(content).dump(), "}]", extra, "}");
}

std::vector<std::string> Keys(const OrderedJson& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

// The OpenAI error of a reply: {"message", "type", "param", "code"}.
Json Error(const HttpReply& reply) {
  Json body = Json::parse(reply.body, nullptr, false);
  EXPECT_TRUE(body.is_object() && body.contains("error")) << reply.body;
  if (!body.is_object() || !body.contains("error")) return Json::object();
  EXPECT_THAT(Keys(OrderedJson::parse(reply.body)["error"]),
              ElementsAre("message", "type", "param", "code"));
  return body["error"];
}

class HttpApiTest : public HttpServerFixture {
 protected:
  // `used` of the first window of `feature_class` for `key`, as GET /check reports it.
  int64_t Used(const std::string& feature_class, const std::string& key) {
    HttpReply r = Get("/check?key=" + key);
    EXPECT_EQ(r.status, 200) << r.body;
    Json body = Json::parse(r.body, nullptr, false);
    if (!body.is_object()) return -1;
    for (const Json& c : body["classes"]) {
      if (c["feature_class"] == feature_class) return c["windows"][0]["used"].get<int64_t>();
    }
    ADD_FAILURE() << "no class " << feature_class;
    return -1;
  }

  // The anonymous tenant's (127.0.0.1) `used`, as GET /check without a key reports it.
  int64_t AnonymousUsed(const std::string& feature_class) {
    HttpReply r = Get("/check");
    EXPECT_EQ(r.status, 200) << r.body;
    nlohmann::json body = nlohmann::json::parse(r.body);
    EXPECT_EQ(body["plan"], "free");
    for (const nlohmann::json& c : body["classes"]) {
      if (c["feature_class"] == feature_class) return c["windows"][0]["used"].get<int64_t>();
    }
    ADD_FAILURE() << "no class " << feature_class;
    return -1;
  }
};

TEST_F(HttpApiTest, ChatCompletionAnswersInTheSeedShape) {
  int n = 0;
  for (const char* path : {"/v1/chat/completions", "/chat/completions"}) {
    SCOPED_TRACE(path);
    HttpReply r = Post(path, ChatBody("llama-3-8b-chat"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "application/json");
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "10");
    EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), absl::StrCat(9 - n++));
    EXPECT_FALSE(r.Header("x-ratelimit-reset-requests").empty());
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_THAT(Keys(body), ElementsAre("id", "object", "created", "model", "system_fingerprint",
                                        "choices", "usage"));
    EXPECT_THAT(body["id"].get<std::string>(), ::testing::StartsWith("chatcmpl-"));
    EXPECT_EQ(body["object"], "chat.completion");
    EXPECT_TRUE(body["created"].is_number_integer());
    EXPECT_EQ(body["model"], "llama-3-8b-chat");
    ASSERT_EQ(body["choices"].size(), 1u);
    const OrderedJson& choice = body["choices"][0];
    EXPECT_THAT(Keys(choice), ElementsAre("index", "message", "logprobs", "finish_reason"));
    EXPECT_EQ(choice["index"], 0);
    EXPECT_THAT(Keys(choice["message"]), ElementsAre("role", "content"));
    EXPECT_EQ(choice["message"]["role"], "assistant");
    EXPECT_FALSE(choice["message"]["content"].get<std::string>().empty());
    EXPECT_TRUE(choice["logprobs"].is_null());
    EXPECT_EQ(choice["finish_reason"], "stop");
    EXPECT_THAT(Keys(body["usage"]),
                ElementsAre("prompt_tokens", "completion_tokens", "total_tokens"));
    EXPECT_TRUE(body["usage"]["total_tokens"].is_number_integer());
    EXPECT_EQ(
        body["usage"]["total_tokens"].get<int>(),
        body["usage"]["prompt_tokens"].get<int>() + body["usage"]["completion_tokens"].get<int>());
  }
}

TEST_F(HttpApiTest, ChatStreamsChunksThenDone) {
  const std::string key = CreateKey("premium");
  for (const char* path : {"/v1/chat/completions", "/chat/completions"}) {
    SCOPED_TRACE(path);
    HttpReply r =
        Post(path, ChatBody("gpt-4o", "tell me a story", R"(, "stream": true)"), Bearer(key));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "text/event-stream");
    EXPECT_TRUE(r.chunked);
    EXPECT_GT(r.chunks.size(), 2u);  // written as the provider yields, not in one piece
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "50");
    const std::vector<std::string> events = Events(r.body);
    ASSERT_GT(events.size(), 3u);
    EXPECT_EQ(events.back(), "[DONE]");
    std::string text;
    std::string id;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
      OrderedJson chunk = OrderedJson::parse(events[i]);
      EXPECT_THAT(Keys(chunk),
                  ElementsAre("id", "object", "created", "model", "system_fingerprint", "choices"));
      EXPECT_EQ(chunk["object"], "chat.completion.chunk");
      if (i == 0) id = chunk["id"];
      EXPECT_EQ(chunk["id"], id);
      const OrderedJson& choice = chunk["choices"][0];
      EXPECT_THAT(Keys(choice), ElementsAre("index", "delta", "logprobs", "finish_reason"));
      if (i == 0) {
        EXPECT_EQ(choice["delta"]["role"], "assistant");
      }
      if (choice["delta"].contains("content")) text += choice["delta"]["content"];
      if (i + 2 == events.size()) {
        EXPECT_EQ(choice["finish_reason"], "stop");
        EXPECT_TRUE(choice["delta"].empty());
      } else {
        EXPECT_TRUE(choice["finish_reason"].is_null());
      }
    }
    EXPECT_THAT(text, HasSubstr("tell me a story"));
  }
  EXPECT_EQ(Used("closed_llm", key), 2);
}

TEST_F(HttpApiTest, StreamOptionsIncludeUsageAddsAUsageChunk) {
  HttpReply r = Post("/v1/chat/completions", ChatBody("phi-2", "hi", R"(, "stream": true,
                              "stream_options": {"include_usage": true})"));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<std::string> events = Events(r.body);
  ASSERT_GT(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_GT(usage["usage"]["total_tokens"].get<int>(), 0);
  Json before = Json::parse(events[events.size() - 3]);
  EXPECT_TRUE(before["usage"].is_null());
  EXPECT_EQ(before["choices"][0]["finish_reason"], "stop");
}

TEST_F(HttpApiTest, ContentPartsAreJoinedAndSdkExtrasIgnored) {
  HttpReply r = Post("/v1/chat/completions", R"({"model": "phi-2", "user": "u1", "n": 1,
      "frequency_penalty": 0, "messages": [{"role": "user", "content":
      [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("part one"));
}

TEST_F(HttpApiTest, ModelsListsTheSeedCatalogue) {
  for (const char* path : {"/v1/models", "/models"}) {
    SCOPED_TRACE(path);
    HttpReply r = Get(path);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "600");
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_THAT(Keys(body), ElementsAre("object", "data"));
    EXPECT_EQ(body["object"], "list");
    ASSERT_EQ(body["data"].size(), 103u);
    EXPECT_THAT(Keys(body["data"][0]), ElementsAre("id", "object", "created", "owned_by"));
    EXPECT_EQ(body["data"][0]["id"], "claude-3-haiku-20240307");
    EXPECT_EQ(body["data"][0]["owned_by"], "anthorpic");
    EXPECT_EQ(body["data"][0]["created"], 1686935002);
    EXPECT_EQ(body["data"][0]["object"], "model");
  }
  HttpReply one = Get("/v1/models/gpt-4o");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.body,
            R"({"id":"gpt-4o","object":"model","created":1686935002,"owned_by":"openai"})");
  EXPECT_EQ(Get("/models/command-r%2B").status, 200);
  HttpReply missing = Get("/v1/models/gpt-17");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(Error(missing)["code"], "model_not_found");
}

TEST_F(HttpApiTest, ImagesGenerationsAnswersUrlOrB64Json) {
  for (const char* path : {"/v1/images/generations", "/images/generations"}) {
    SCOPED_TRACE(path);
    HttpReply r = Post(path, R"({"prompt": "A futuristic cityscape", "model": "dall-e-2",
                                 "size": "256x256", "response_format": "b64_json"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "120");
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_THAT(Keys(body), ElementsAre("created", "data"));
    EXPECT_TRUE(body["created"].is_number_integer());
    ASSERT_EQ(body["data"].size(), 1u);
    EXPECT_THAT(Keys(body["data"][0]), ElementsAre("b64_json"));
  }
  HttpReply r = Post("/v1/images/generations",
                     R"({"prompt": "x", "model": "dall-e-2", "size": "256x256", "n": 2})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json body = Json::parse(r.body);
  ASSERT_EQ(body["data"].size(), 2u);
  // URLs of this front, from the request's Host (the test client sends "127.0.0.1").
  EXPECT_THAT(body["data"][1]["url"].get<std::string>(),
              ::testing::MatchesRegex("http://127\\.0\\.0\\.1/v1/images/files/[0-9a-f]{32}\\.png"));
  EXPECT_NE(body["data"][0]["url"], body["data"][1]["url"]);
}

TEST_F(HttpApiTest, AGeneratedImagesUrlServesThePngWithoutAKeyUntilItExpires) {
  const std::string key = CreateKey("premium");
  HttpReply r = Post("/v1/images/generations",
                     R"({"prompt": "A futuristic cityscape", "model": "dall-e-2",
                         "size": "256x256", "response_format": "url"})",
                     Bearer(key));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string url = Json::parse(r.body)["data"][0]["url"].get<std::string>();
  const std::string path = url.substr(std::string("http://127.0.0.1").size());
  for (const std::string& p : {path, path.substr(3)}) {  // with and without /v1
    SCOPED_TRACE(p);
    HttpReply image = Get(p);  // no key
    ASSERT_EQ(image.status, 200) << image.body;
    EXPECT_EQ(image.Header("content-type"), "image/png");
    EXPECT_EQ(image.Header("cache-control"), "private, max-age=3600");
    EXPECT_FALSE(image.HasHeader("x-ratelimit-limit-requests"));  // not metered
    ASSERT_GT(image.body.size(), 24u);
    EXPECT_EQ(image.body.substr(0, 8), "\x89PNG\r\n\x1a\n");
    auto be32 = [&](size_t at) {
      return (uint32_t{static_cast<uint8_t>(image.body[at])} << 24) |
             (uint32_t{static_cast<uint8_t>(image.body[at + 1])} << 16) |
             (uint32_t{static_cast<uint8_t>(image.body[at + 2])} << 8) |
             uint32_t{static_cast<uint8_t>(image.body[at + 3])};
    };
    EXPECT_EQ(be32(16), 256u);  // IHDR width
    EXPECT_EQ(be32(20), 256u);  // IHDR height
  }
  EXPECT_EQ(Get("/v1/images/files/" + std::string(32, '0') + ".png").status, 404);
  EXPECT_EQ(Get("/v1/images/files/not-an-id").status, 404);
  Advance(absl::Hours(1));
  EXPECT_EQ(Get(path).status, 404);
}

TEST_F(HttpApiTest, ImagineReturnsAPngOfTheRequestedSize) {
  for (const char* path : {"/v1/imagine", "/imagine"}) {
    SCOPED_TRACE(path);
    HttpReply r = Get(absl::StrCat(path,
                                   "?prompt=A+red+fox&negative_prompt=rain&width=64"
                                   "&height=96&steps=10&seed=123456&model=sdxl"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "image/png");
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "20");
    ASSERT_GT(r.body.size(), 24u);
    EXPECT_EQ(r.body.substr(0, 8), "\x89PNG\r\n\x1a\n");
    auto be32 = [&](size_t at) {
      return (static_cast<uint32_t>(static_cast<uint8_t>(r.body[at])) << 24) |
             (static_cast<uint32_t>(static_cast<uint8_t>(r.body[at + 1])) << 16) |
             (static_cast<uint32_t>(static_cast<uint8_t>(r.body[at + 2])) << 8) |
             static_cast<uint32_t>(static_cast<uint8_t>(r.body[at + 3]));
    };
    EXPECT_EQ(be32(16), 64u);  // IHDR width
    EXPECT_EQ(be32(20), 96u);  // IHDR height
  }
}

TEST_F(HttpApiTest, AskStreamsMessageAndUrlEvents) {
  for (const char* path : {"/v1/ask", "/ask"}) {
    SCOPED_TRACE(path);
    HttpReply r = Get(absl::StrCat(path, "?prompt=what+is+a+sliding+window"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "text/event-stream");
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "120");
    const std::vector<std::string> events = Events(r.body);
    ASSERT_GE(events.size(), 2u);
    for (const std::string& e : events) {
      OrderedJson chunk = OrderedJson::parse(e);
      EXPECT_THAT(Keys(chunk), ElementsAre("message", "url"));
      EXPECT_FALSE(chunk["message"].get<std::string>().empty());
    }
  }
}

TEST_F(HttpApiTest, VisionAnswersTextOrJson) {
  for (const char* path : {"/v1/images/vision", "/images/vision"}) {
    SCOPED_TRACE(path);
    HttpReply r = Get(absl::StrCat(path, "?url=https://example.com/image.png"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("content-type"), "text/plain; charset=utf-8");
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "25");
    EXPECT_THAT(r.body, HasSubstr("example.com"));
  }
  HttpReply r = Get("/v1/images/vision?url=https://example.com/a.png&model=gpt-4o",
                    {{"Accept", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  OrderedJson body = OrderedJson::parse(r.body);
  EXPECT_THAT(Keys(body), ElementsAre("description", "model"));
  EXPECT_EQ(body["model"], "gpt-4o");
}

TEST_F(HttpApiTest, CheckReportsAKeysUsage) {
  const std::string key = CreateKey("premium");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Post("/v1/chat/completions", ChatBody("phi-2"), Bearer(key)).status, 200);
  }
  for (const auto& [target, headers] : std::vector<std::pair<std::string, Headers>>{
           {"/check?key=" + key, {}}, {"/check", Bearer(key)}, {"/v1/check", Bearer(key)}}) {
    SCOPED_TRACE(target);
    HttpReply r = Get(target, headers);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "600");
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_THAT(Keys(body), ElementsAre("plan", "masked_key", "created", "classes"));
    EXPECT_EQ(body["plan"], "premium");
    EXPECT_NE(body["masked_key"], key);
    EXPECT_THAT(body["masked_key"].get<std::string>(), HasSubstr("…"));
    EXPECT_GT(body["created"].get<int64_t>(), 0);
    const OrderedJson& llm = body["classes"][0];
    EXPECT_EQ(llm["feature_class"], "llm");
    EXPECT_THAT(Keys(llm), ElementsAre("feature_class", "windows", "token_windows", "spend_windows",
                                       "in_flight", "max_concurrent"));
    EXPECT_THAT(Keys(llm["windows"][0]), ElementsAre("window_seconds", "used", "reserved", "limit",
                                                     "remaining", "reset_seconds"));
    // The seed's plans limit neither tokens, spend nor calls in flight.
    EXPECT_EQ(llm["token_windows"], OrderedJson::array());
    EXPECT_EQ(llm["spend_windows"], OrderedJson::array());
    EXPECT_EQ(llm["in_flight"], 0);
    EXPECT_EQ(llm["max_concurrent"], 0);
    EXPECT_EQ(llm["windows"][0]["reserved"], 0);
    EXPECT_EQ(llm["windows"][0]["window_seconds"], 60);
    EXPECT_EQ(llm["windows"][0]["used"], 3);
    EXPECT_EQ(llm["windows"][0]["limit"], 30);
    EXPECT_EQ(llm["windows"][0]["remaining"], 27);
    EXPECT_TRUE(llm["windows"][0]["reset_seconds"].is_number());
    EXPECT_EQ(llm["windows"][1]["window_seconds"], 86400);
  }
}

TEST_F(HttpApiTest, CheckWithoutAKeyReportsTheCallersAnonymousUsageAsGrpcDoes) {
  ASSERT_EQ(Post("/v1/chat/completions", ChatBody("llama-3-8b-chat")).status, 200);
  ASSERT_EQ(Post("/v1/chat/completions", ChatBody("llama-3-8b-chat")).status, 200);
  EXPECT_EQ(AnonymousUsed("llm"), 2);
  HttpReply r = Get("/check");
  EXPECT_TRUE(r.HasHeader("x-ratelimit-limit-requests"));      // counted in `meta`
  EXPECT_EQ(nlohmann::json::parse(r.body)["masked_key"], "");  // no key, nothing masked
}

TEST_F(HttpApiTest, CheckOfABadKeyIsUnauthenticated) {
  for (const auto& [target, headers] : std::vector<std::pair<std::string, Headers>>{
           {"/check?key=sk-anyai-" + std::string(64, '0'), {}}, {"/check", Bearer("nonsense")}}) {
    SCOPED_TRACE(target);
    HttpReply r = Get(target, headers);
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(Error(r)["code"], "invalid_api_key");
  }
}

TEST_F(HttpApiTest, HealthAndReadiness) {
  HttpReply health = Get("/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(Get("/readyz").status, 200);
  EXPECT_FALSE(health.HasHeader("x-ratelimit-limit-requests"));  // not metered
}

TEST_F(HttpApiTest, ReadinessTurns503WhenShutdownBegins) {
  // A request in flight when the shutdown begins is still answered, and says "not ready".
  HttpConnection c(port());
  ASSERT_TRUE(c.Send("GET /readyz HTTP/1.1\r\nHost: x\r\n"));
  absl::SleepFor(absl::Milliseconds(100));
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(5)); });
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(c.Send("\r\n"));
  std::optional<HttpReply> r = c.Read();
  c.Close();
  stopper.join();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(Fetch(port(), "GET", "/healthz").status, 0);  // no longer accepting
}

TEST_F(HttpApiTest, UnknownPathIs404AndWrongMethodIs405) {
  for (const char* path : {"/v1/nothing", "/v2/models", "/", "/v1/chat/completions/x"}) {
    HttpReply r = Get(path);
    EXPECT_EQ(r.status, 404) << path;
    Json e = Error(r);
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_EQ(e["code"], "unknown_url");
  }
  HttpReply r = Get("/v1/chat/completions");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "POST");
  EXPECT_EQ(Error(r)["code"], "method_not_allowed");
  r = Post("/v1/models", "{}");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "GET");
  EXPECT_EQ(Fetch(port(), "DELETE", "/imagine").status, 405);
}

TEST_F(HttpApiTest, BadInputIsRefusedAndNothingIsCounted) {
  const std::string key = CreateKey("free");
  const Headers auth = Bearer(key);
  struct Case {
    std::string name;
    HttpReply reply;
    int status;
    std::string param;  // "" for null
  };
  const std::string chat = "/v1/chat/completions";
  std::vector<Case> cases = {
      {"malformed JSON", Post(chat, R"({"model": "phi-2", )", auth), 400, ""},
      {"empty body", Post(chat, "", auth), 400, ""},
      {"not an object", Post(chat, "[1, 2]", auth), 400, ""},
      {"invalid UTF-8",
       Post(chat,
            "{\"model\": \"phi-2\", \"messages\": [{\"role\": \"user\", "
            "\"content\": \"a\xc3\x28"
            "b\"}]}",
            auth),
       400, ""},
      {"max_tokens a string", Post(chat, ChatBody("phi-2", "x", R"(, "max_tokens": "5")"), auth),
       400, "max_tokens"},
      {"max_tokens fractional", Post(chat, ChatBody("phi-2", "x", R"(, "max_tokens": 5.5)"), auth),
       400, "max_tokens"},
      {"stream a string", Post(chat, ChatBody("phi-2", "x", R"(, "stream": "yes")"), auth), 400,
       "stream"},
      {"unknown field", Post(chat, ChatBody("phi-2", "x", R"(, "wizard": 1)"), auth), 400,
       "wizard"},
      {"image part",
       Post(chat, R"({"model": "phi-2", "messages": [{"role": "user", "content":
           [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})",
            auth),
       400, "messages[0].content[0].type"},
      {"no messages", Post(chat, R"({"model": "phi-2", "messages": []})", auth), 400, "messages"},
      {"system not first",
       Post(chat, R"({"model": "phi-2", "messages": [
           {"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})",
            auth),
       400, "messages[1].role"},
      {"too long for free", Post(chat, ChatBody("phi-2", std::string(1001, 'a')), auth), 400,
       "messages[0].content"},
      {"temperature 3", Post(chat, ChatBody("phi-2", "x", R"(, "temperature": 3)"), auth), 400,
       "temperature"},
      {"unknown model", Post(chat, ChatBody("gpt-17"), auth), 404, "model"},
      {"imagine width abc", Get("/v1/imagine?prompt=x&width=abc", auth), 400, "width"},
      {"imagine width 12.5", Get("/v1/imagine?prompt=x&width=12.5", auth), 400, "width"},
      {"imagine width huge", Get("/v1/imagine?prompt=x&width=100000", auth), 400, "width"},
      {"imagine pluto width", Get("/v1/imagine?prompt=x&model=pluto&width=512", auth), 400,
       "width"},
      {"imagine no prompt", Get("/v1/imagine", auth), 400, "prompt"},
      {"imagine bad escape", Get("/v1/imagine?prompt=%zz", auth), 400, "prompt"},
      {"vision bad url", Get("/v1/images/vision?url=not+a+url", auth), 400, "url"},
      {"vision unknown model",
       Get("/v1/images/vision?url=https://example.com/a.png&model=gpt-17", auth), 404, "model"},
      {"images n 100", Post("/v1/images/generations", R"({"prompt": "x", "n": 100})", auth), 400,
       "n"},
      {"images n string", Post("/v1/images/generations", R"({"prompt": "x", "n": "1"})", auth), 400,
       "n"},
      {"ask no prompt", Get("/v1/ask", auth), 400, "prompt"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.reply.status, c.status) << c.reply.body;
    Json e = Error(c.reply);
    EXPECT_EQ(e["type"], "invalid_request_error");
    if (c.param.empty()) {
      EXPECT_TRUE(e["param"].is_null()) << e;
    } else {
      EXPECT_EQ(e["param"], c.param);
    }
    if (c.status == 404) {
      EXPECT_EQ(e["code"], "model_not_found");
    }
    EXPECT_FALSE(c.reply.HasHeader("x-ratelimit-limit-requests"));
  }
  for (const char* feature_class :
       {"llm", "closed_llm", "image_generation", "globalask", "imagine", "vision"}) {
    EXPECT_EQ(Used(feature_class, key), 0) << feature_class;
  }
}

TEST_F(HttpApiTest, BadKeysAre401NeverAnonymous) {
  for (const Headers& headers : std::vector<Headers>{Bearer("sk-anyai-" + std::string(64, '0')),
                                                     {{"Authorization", "nonsense"}},
                                                     {{"Authorization", "Bearer "}},
                                                     {{"Authorization", ""}}}) {
    HttpReply r = Post("/v1/chat/completions", ChatBody("phi-2"), headers);
    EXPECT_EQ(r.status, 401) << headers[0].second << ": " << r.body;
    EXPECT_EQ(Error(r)["code"], "invalid_api_key");
    EXPECT_EQ(Get("/v1/models", headers).status, 401);
  }
  EXPECT_EQ(AnonymousUsed("llm"), 0);
}

TEST_F(HttpApiTest, RateLimitedIs429WithRetryAfterAndRateLimitHeaders) {
  for (int i = 0; i < 10; ++i) {
    HttpReply r = Post("/v1/chat/completions", ChatBody("Mixtral-8x22B"));
    ASSERT_EQ(r.status, 200) << i << ": " << r.body;
    EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), absl::StrCat(9 - i));
    // The IETF fields: every request window of the class (the seed's have no others).
    EXPECT_EQ(r.Header("ratelimit-policy"),
              R"("requests-1m";q=10;w=60, "requests-1d";q=2000;w=86400)");
    EXPECT_THAT(r.Header("ratelimit"),
                ::testing::MatchesRegex(absl::StrCat(R"("requests-1m";r=)", 9 - i,
                                                     R"(;t=[0-9]+, "requests-1d";r=)", 1999 - i,
                                                     R"(;t=[0-9]+)")));
    EXPECT_EQ(r.Header("x-ratelimit-limit-tokens"), "");  // no token window
  }
  for (bool stream : {false, true}) {
    HttpReply r = Post("/v1/chat/completions",
                       ChatBody("Mixtral-8x22B", "hi", stream ? R"(, "stream": true)" : ""));
    ASSERT_EQ(r.status, 429) << r.body;
    EXPECT_EQ(r.Header("content-type"), "application/json");
    int64_t retry_after = 0;
    ASSERT_TRUE(absl::SimpleAtoi(r.Header("retry-after"), &retry_after)) << r.Header("retry-after");
    EXPECT_GE(retry_after, 1);
    EXPECT_LE(retry_after, 61);
    EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "10");
    EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), "0");
    EXPECT_FALSE(r.Header("x-ratelimit-reset-requests").empty());
    EXPECT_THAT(r.Header("ratelimit"), ::testing::StartsWith(R"("requests-1m";r=0;t=)"));
    Json e = Error(r);
    EXPECT_EQ(e["type"], "requests");
    EXPECT_EQ(e["code"], "rate_limit_exceeded");
    EXPECT_THAT(e["message"].get<std::string>(),
                ::testing::AllOf(HasSubstr("llm"), HasSubstr("1m"), HasSubstr("free")));
  }
  Advance(absl::Seconds(62));
  EXPECT_EQ(Post("/v1/chat/completions", ChatBody("Mixtral-8x22B")).status, 200);
}

TEST_F(HttpApiTest, ImagineDayLimitIs429) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(Get("/imagine?prompt=x&width=64&height=64").status, 200) << i;
  }
  HttpReply r = Get("/imagine?prompt=x&width=64&height=64");
  ASSERT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("x-ratelimit-limit-requests"), "20");
  EXPECT_THAT(Error(r)["message"].get<std::string>(),
              ::testing::AllOf(HasSubstr("imagine"), HasSubstr("24h")));
  int64_t retry_after = 0;
  ASSERT_TRUE(absl::SimpleAtoi(r.Header("retry-after"), &retry_after));
  EXPECT_GT(retry_after, 3600);
}

// The free plan's llm with token windows and a concurrency limit, as
// deploy/config/token-limits.textproto has them.
class TokenLimitsTest : public HttpApiTest {
 protected:
  void Configure(v1::ServerConfig& config) override {
    for (v1::PlanConfig& plan : *config.mutable_plans()) {
      if (plan.name() != "free") continue;
      for (v1::FeatureClassLimits& c : *plan.mutable_classes()) {
        if (c.feature_class() != "llm") continue;
        v1::TokenWindowLimit* minute = c.add_token_windows();
        minute->mutable_length()->set_seconds(60);
        minute->set_max_tokens(20000);
        v1::TokenWindowLimit* day = c.add_token_windows();
        day->mutable_length()->set_seconds(86400);
        day->set_max_tokens(1000000);
        c.set_max_concurrent(2);
      }
    }
  }
};

TEST_F(TokenLimitsTest, EveryAnswerCarriesItsSettledTokensAndEveryLimit) {
  int64_t used = 0;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    HttpReply r = Post("/v1/chat/completions", ChatBody("phi-2", "hello", R"(, "max_tokens": 50)"));
    ASSERT_EQ(r.status, 200) << r.body;
    const int64_t total = Json::parse(r.body)["usage"]["total_tokens"].get<int64_t>();
    ASSERT_GT(total, 0);
    used += total;
    // Settled: what remains is the limit less what the answers used, not what they reserved.
    EXPECT_EQ(r.Header("x-ratelimit-limit-tokens"), "20000");
    EXPECT_EQ(r.Header("x-ratelimit-remaining-tokens"), absl::StrCat(20000 - used));
    EXPECT_FALSE(r.Header("x-ratelimit-reset-tokens").empty());
    EXPECT_EQ(r.Header("x-ratelimit-remaining-requests"), absl::StrCat(9 - i));
    EXPECT_EQ(r.Header("ratelimit-policy"),
              R"("requests-1m";q=10;w=60, "requests-1d";q=2000;w=86400, )"
              R"("tokens-1m";q=20000;w=60, "tokens-1d";q=1000000;w=86400, )"
              R"("concurrency";q=2;qu="concurrent-requests")");
    EXPECT_THAT(r.Header("ratelimit"),
                ::testing::MatchesRegex(absl::StrCat(
                    R"("requests-1m";r=)", 9 - i, R"(;t=[0-9]+, "requests-1d";r=)", 1999 - i,
                    R"(;t=[0-9]+, "tokens-1m";r=)", 20000 - used, R"(;t=[0-9]+, "tokens-1d";r=)",
                    1000000 - used, R"(;t=[0-9]+, "concurrency";r=2)")));
  }
  // /check reports the same tokens, nothing reserved once the calls are over, and no call in
  // flight.
  Json check = Json::parse(Get("/check").body);
  const Json& llm = check["classes"][0];
  ASSERT_EQ(llm["feature_class"], "llm");
  ASSERT_EQ(llm["token_windows"].size(), 2u);
  EXPECT_EQ(llm["token_windows"][0]["window_seconds"], 60);
  EXPECT_EQ(llm["token_windows"][0]["used"], used);
  EXPECT_EQ(llm["token_windows"][0]["reserved"], 0);
  EXPECT_EQ(llm["token_windows"][0]["limit"], 20000);
  EXPECT_EQ(llm["token_windows"][0]["remaining"], 20000 - used);
  EXPECT_EQ(llm["token_windows"][1]["window_seconds"], 86400);
  EXPECT_EQ(llm["spend_windows"], Json::array());
  EXPECT_EQ(llm["in_flight"], 0);
  EXPECT_EQ(llm["max_concurrent"], 2);
}

TEST_F(TokenLimitsTest, ARequestThatCanNeverFitIs429WithoutRetryAfter) {
  HttpReply r =
      Post("/v1/chat/completions", ChatBody("phi-2", "hello", R"(, "max_tokens": 30000)"));
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.Header("retry-after"), "");
  EXPECT_EQ(r.Header("x-ratelimit-limit-tokens"), "20000");
  EXPECT_EQ(r.Header("x-ratelimit-remaining-tokens"), "20000");  // a smaller call still fits
  EXPECT_NE(r.Header("x-ratelimit-remaining-requests"), "0");
  EXPECT_FALSE(r.Header("ratelimit-policy").empty());
  Json e = Error(r);
  EXPECT_EQ(e["code"], "rate_limit_exceeded");
  EXPECT_THAT(e["message"].get<std::string>(),
              ::testing::MatchesRegex("Rate limit exceeded for llm: this request needs [0-9]+ "
                                      "tokens but the free plan allows 20000 per 1m \\(anonymous\\)"
                                      ": it can never be admitted; lower max_tokens or shorten "
                                      "the prompt"));
  // Nothing was held: the next request is admitted with every token left.
  HttpReply next = Post("/v1/chat/completions", ChatBody("phi-2", "hello", R"(, "max_tokens": 5)"));
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(next.Header("x-ratelimit-remaining-requests"), "9");
}

class TrustedProxyTest : public HttpApiTest {
 protected:
  void Configure(v1::ServerConfig& config) override { config.add_trusted_proxies("127.0.0.1"); }
};

TEST_F(TrustedProxyTest, EachForwardedClientIsItsOwnTenant) {
  for (const char* client : {"203.0.113.7", "203.0.113.8"}) {
    for (int i = 0; i < 10; ++i) {
      HttpReply r = Post("/v1/chat/completions", ChatBody("phi-2"), {{"X-Forwarded-For", client}});
      ASSERT_EQ(r.status, 200) << client << " " << i;
    }
    EXPECT_EQ(Post("/v1/chat/completions", ChatBody("phi-2"), {{"X-Forwarded-For", client}}).status,
              429);
  }
  EXPECT_EQ(AnonymousUsed("llm"), 0);  // the proxy itself counted nothing
}

TEST_F(HttpApiTest, ForwardedForFromAnUntrustedPeerIsIgnored) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(Post("/v1/chat/completions", ChatBody("phi-2"),
                   {{"X-Forwarded-For", absl::StrCat("198.51.100.", i)}})
                  .status,
              200);
  }
  EXPECT_EQ(AnonymousUsed("llm"), 10);
}

class ConfiguredLimitsTest : public HttpApiTest {
 protected:
  void Configure(v1::ServerConfig& config) override {
    config.set_max_body_bytes(1000);
    config.set_max_header_bytes(2000);
    config.mutable_http_read_timeout()->set_seconds(1);
  }
};

TEST_F(ConfiguredLimitsTest, TheConfigsLimitsAndTimeoutApply) {
  EXPECT_EQ(Post("/v1/chat/completions", ChatBody("phi-2", std::string(950, 'a'))).status, 413);
  EXPECT_EQ(Post("/v1/chat/completions", ChatBody("phi-2", std::string(800, 'a'))).status, 200);
  EXPECT_EQ(Get("/healthz", {{"X-Padding", std::string(2100, 'p')}}).status, 431);
  EXPECT_EQ(Get("/healthz", {{"X-Padding", std::string(1500, 'p')}}).status, 200);
  HttpConnection slow(port());
  ASSERT_TRUE(slow.Send("GET /healthz HTTP/1.1\r\n"));
  std::optional<HttpReply> r = slow.Read(absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
}

}  // namespace
}  // namespace anyai::testing
