// Every request example of the seed (../shared/seed/anyai-api.md), sent verbatim as a user who
// copies it would, over HTTP against a whole in-process gateway: each answers 200 in the seed's
// response shape. The chat example asks for "claude-3-opus", an undated name: it resolves to the
// newest dated model of its family, counts in that model's class, and is echoed back.
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server/http/http_test_server.h"

namespace anyai::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsSupersetOf;
using ::testing::MatchesRegex;
using OrderedJson = nlohmann::ordered_json;

std::vector<std::string> Keys(const OrderedJson& object) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : object.items()) keys.push_back(k);
  return keys;
}

uint32_t Be32(const std::string& bytes, size_t at) {
  return (uint32_t{static_cast<uint8_t>(bytes[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(bytes[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(bytes[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(bytes[at + 3])};
}

// The seed's "Request Body" of the Chat Completions endpoint, as printed.
constexpr char kSeedChatBody[] = R"json({
  "model": "claude-3-opus",
  "messages": [
    {"role": "system", "content": "System prompt (only the first message, once)"},
    {"role": "user", "content": "Message content"},
    {"role": "assistant", "content": "Assistant response"}
  ],
  "max_tokens": 2048,
  "stream": false,
  "temperature": 0.7,
  "top_p": 0.5,
  "top_k": 0
})json";

// The seed's "Request Body" of the Image Generations endpoint.
constexpr char kSeedImagesBody[] = R"({
  "prompt": "A futuristic cityscape",
  "model": "dall-e-3",
  "n": 1,
  "quality": "hd",
  "response_format": "url",
  "size": "1024x1024"
})";

class SeedExamplesTest : public HttpServerFixture {
 protected:
  // `used` of the shortest window of `feature_class`, as GET /check?key= reports it.
  int64_t Used(const std::string& key, const std::string& feature_class) {
    HttpReply r = Get("/check?key=" + key);
    EXPECT_EQ(r.status, 200) << r.body;
    const OrderedJson body = OrderedJson::parse(r.body);
    for (const auto& c : body["classes"]) {
      if (c["feature_class"] == feature_class) return c["windows"][0]["used"].get<int64_t>();
    }
    ADD_FAILURE() << "no class " << feature_class;
    return -1;
  }
};

TEST_F(SeedExamplesTest, TheChatExampleAnswersInTheSeedsShapeEchoingClaude3Opus) {
  const std::string key = CreateKey("premium");
  for (const char* path : {"/v1/chat/completions", "/chat/completions"}) {
    SCOPED_TRACE(path);
    HttpReply r = Post(path, kSeedChatBody, Bearer(key));
    ASSERT_EQ(r.status, 200) << r.body;
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_THAT(Keys(body), IsSupersetOf({"id", "object", "created", "model", "choices", "usage"}));
    EXPECT_EQ(body["object"], "chat.completion");
    EXPECT_EQ(body["model"], "claude-3-opus");
    ASSERT_EQ(body["choices"].size(), 1u);
    EXPECT_EQ(body["choices"][0]["index"], 0);
    EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
    EXPECT_TRUE(body["choices"][0]["message"]["content"].is_string());
    EXPECT_TRUE(body["choices"][0]["finish_reason"].is_string());
    EXPECT_THAT(Keys(body["usage"]),
                ElementsAre("prompt_tokens", "completion_tokens", "total_tokens"));
  }
  // claude-3-opus-20240229 is a closed model: the alias counts there, twice.
  EXPECT_EQ(Used(key, "closed_llm"), 2);
  EXPECT_EQ(Used(key, "llm"), 0);
}

TEST_F(SeedExamplesTest, TheStreamedChatExampleEchoesTheAliasInEveryChunk) {
  std::string body = kSeedChatBody;
  body.replace(body.find("\"stream\": false"), 15, "\"stream\": true");
  HttpReply r = Post("/v1/chat/completions", body, Bearer(CreateKey("premium")));
  ASSERT_EQ(r.status, 200) << r.body;
  int chunks = 0;
  for (size_t at = r.body.find("data: {"); at != std::string::npos;
       at = r.body.find("data: {", at + 1)) {
    const size_t end = r.body.find("\n\n", at);
    OrderedJson chunk = OrderedJson::parse(r.body.substr(at + 6, end - at - 6));
    EXPECT_EQ(chunk["model"], "claude-3-opus");
    ++chunks;
  }
  EXPECT_GT(chunks, 1);
}

TEST_F(SeedExamplesTest, TheAliasIsAModelOfItsOwnButNotListed) {
  HttpReply model = Get("/v1/models/claude-3-opus");
  ASSERT_EQ(model.status, 200) << model.body;
  OrderedJson m = OrderedJson::parse(model.body);
  EXPECT_EQ(m["id"], "claude-3-opus");
  EXPECT_EQ(m["owned_by"], "anthorpic");  // the seed's own spelling
  HttpReply list = Get("/v1/models");
  ASSERT_EQ(list.status, 200);
  std::vector<std::string> ids;
  const OrderedJson listed = OrderedJson::parse(list.body);
  for (const auto& e : listed["data"]) ids.push_back(e["id"]);
  EXPECT_EQ(ids.size(), 103u);  // the seed's catalogue, verbatim
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "claude-3-opus"), 0);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), "claude-3-opus-20240229"), 1);
}

TEST_F(SeedExamplesTest, TheModelsExampleListsTheCatalogue) {
  for (const char* path : {"/v1/models", "/models"}) {
    HttpReply r = Get(path);
    ASSERT_EQ(r.status, 200) << r.body;
    OrderedJson body = OrderedJson::parse(r.body);
    EXPECT_EQ(body["object"], "list");
    EXPECT_THAT(Keys(body["data"][0]), ElementsAre("id", "object", "created", "owned_by"));
  }
}

TEST_F(SeedExamplesTest, TheImageGenerationsExampleAnswersAUrlThatDownloadsThePng) {
  HttpReply r = Post("/v1/images/generations", kSeedImagesBody);
  ASSERT_EQ(r.status, 200) << r.body;
  OrderedJson body = OrderedJson::parse(r.body);
  EXPECT_THAT(Keys(body), ElementsAre("created", "data"));
  ASSERT_EQ(body["data"].size(), 1u);
  const std::string url = body["data"][0]["url"];
  EXPECT_THAT(url, MatchesRegex("http://127\\.0\\.0\\.1/v1/images/files/[0-9a-f]{32}\\.png"));
  HttpReply image = Get(url.substr(std::string("http://127.0.0.1").size()));
  ASSERT_EQ(image.status, 200);
  EXPECT_EQ(image.Header("content-type"), "image/png");
  EXPECT_EQ(Be32(image.body, 16), 1024u);
  EXPECT_EQ(Be32(image.body, 20), 1024u);
}

TEST_F(SeedExamplesTest, TheImagineExampleAnswersAPng) {
  HttpReply r =
      Get("/v1/imagine?prompt=A+beautiful+landscape&negative_prompt=rain&width=1024&height=1024"
          "&steps=50&seed=123456&model=sdxl");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "image/png");
  EXPECT_EQ(Be32(r.body, 16), 1024u);
  EXPECT_EQ(Be32(r.body, 20), 1024u);
}

TEST_F(SeedExamplesTest, TheGlobalAskExampleStreamsMessageAndUrlChunks) {
  HttpReply r = Get("/v1/ask?prompt=What+is+the+capital+of+France");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  const size_t at = r.body.find("data: {");
  ASSERT_NE(at, std::string::npos) << r.body;
  OrderedJson chunk = OrderedJson::parse(r.body.substr(at + 6, r.body.find("\n\n", at) - at - 6));
  EXPECT_THAT(Keys(chunk), ElementsAre("message", "url"));
}

TEST_F(SeedExamplesTest, TheVisionExampleAnswersADescription) {
  HttpReply r = Get("/v1/images/vision?url=https://example.com/image.png&model=gemini-pro-vision");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.Header("content-type"), ::testing::StartsWith("text/plain"));
  EXPECT_FALSE(r.body.empty());
}

TEST_F(SeedExamplesTest, TheCheckExampleReportsTheKeysUsage) {
  const std::string key = CreateKey("premium");
  HttpReply r = Get("/check?key=" + key);
  ASSERT_EQ(r.status, 200) << r.body;
  OrderedJson body = OrderedJson::parse(r.body);
  EXPECT_EQ(body["plan"], "premium");
  // Masked: no 8 characters of the key's secret part in a row.
  const std::string masked = body["masked_key"];
  const std::string secret = key.substr(std::string("sk-anyai-").size());
  for (size_t i = 0; i + 8 <= secret.size(); ++i) {
    EXPECT_EQ(masked.find(secret.substr(i, 8)), std::string::npos) << masked;
  }
  EXPECT_EQ(r.Header("vary"), "Accept");
  EXPECT_EQ(r.Header("cache-control"), "no-store");
}

}  // namespace
}  // namespace anyai::testing
