// server/http/http_json.cc: OpenAI-style JSON bodies onto the proto requests (what is mapped,
// ignored, refused, and which field an error names) and the responses' exact shapes.
#include "server/http/http_json.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/gateway/errors.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kSeedChat[] = R"json({
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

// The `param` of a refusal: the field it names.
std::string Param(const absl::Status& s) { return ErrorField(s); }

TEST(ParseChatCompletionBody, MapsTheSeedBodyFieldForField) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(kSeedChat);
  ASSERT_TRUE(body.ok()) << body.status();
  const v1::ChatCompletionRequest& r = body->request;
  EXPECT_EQ(r.model(), "claude-3-opus");
  ASSERT_EQ(r.messages_size(), 3);
  EXPECT_EQ(r.messages(0).role(), "system");
  EXPECT_EQ(r.messages(2).content(), "Assistant response");
  EXPECT_EQ(r.max_tokens(), 2048);
  EXPECT_TRUE(r.has_stream());
  EXPECT_FALSE(r.stream());
  EXPECT_DOUBLE_EQ(r.temperature(), 0.7);
  EXPECT_DOUBLE_EQ(r.top_p(), 0.5);
  EXPECT_TRUE(r.has_top_k());
  EXPECT_EQ(r.top_k(), 0);
  EXPECT_FALSE(body->stream);
}

TEST(ParseChatCompletionBody, AbsentAndNullFieldsStayAbsent) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(
      R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
          "max_tokens": null, "temperature": null, "stream": null, "top_k": null})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_FALSE(body->request.has_max_tokens());
  EXPECT_FALSE(body->request.has_temperature());
  EXPECT_FALSE(body->request.has_stream());
  EXPECT_FALSE(body->request.has_top_p());
  EXPECT_FALSE(body->request.has_top_k());
}

TEST(ParseChatCompletionBody, AcceptsWhatOpenAiSdksSendAndIgnoresIt) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(R"({
    "model": "gpt-4o", "messages": [{"role": "user", "content": "hi", "name": "ann"},
                                    {"role": "assistant", "content": null, "refusal": null}],
    "user": "u-1", "n": 1, "frequency_penalty": 0.5, "presence_penalty": 0, "seed": 7,
    "stop": ["\n"], "logprobs": false, "logit_bias": {"50256": -100}, "tools": [],
    "response_format": {"type": "text"}, "stream": true,
    "stream_options": {"include_usage": true}, "max_completion_tokens": 64})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_TRUE(body->stream);
  EXPECT_TRUE(body->include_usage);
  EXPECT_EQ(body->request.max_tokens(), 64);  // from max_completion_tokens
  EXPECT_EQ(body->request.messages(1).content(), "");
}

TEST(ParseChatCompletionBody, IncludeUsageOnlyWhenStreaming) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(
      R"({"model": "m", "messages": [], "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(body.ok());
  EXPECT_FALSE(body->include_usage);
}

TEST(ParseChatCompletionBody, JoinsTextPartsOfContent) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(
      R"({"model": "m", "messages": [{"role": "user", "content":
          [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->request.messages(0).content(), "first\nsecond");
}

TEST(ParseChatCompletionBody, RefusesNonTextParts) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(
      R"({"model": "m", "messages": [{"role": "user", "content":
          [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})");
  EXPECT_THAT(body, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("image_url")));
  EXPECT_EQ(Param(body.status()), "messages[0].content[0].type");
}

TEST(ParseChatCompletionBody, RefusesWrongTypesNamingTheField) {
  const struct {
    const char* body;
    const char* param;
  } cases[] = {
      {R"({"model": 5})", "model"},
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": ["hi"]})", "messages[0]"},
      {R"({"messages": [{"role": 1}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": 7}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": "x", "colour": "red"}]})",
       "messages[0].colour"},
      {R"({"max_tokens": "5"})", "max_tokens"},
      {R"({"max_tokens": 5.5})", "max_tokens"},
      {R"({"max_tokens": 1e20})", "max_tokens"},
      {R"({"max_tokens": 4294967296})", "max_tokens"},
      {R"({"max_tokens": true})", "max_tokens"},
      {R"({"top_k": -2147483649})", "top_k"},
      {R"({"temperature": "hot"})", "temperature"},
      {R"({"top_p": [1]})", "top_p"},
      {R"({"stream": "true"})", "stream"},
      {R"({"stream": 1})", "stream"},
      {R"({"n": 2})", "n"},
      {R"({"n": 1.5})", "n"},
      {R"({"stream_options": true})", "stream_options"},
      {R"({"stream_options": {"include_usage": "yes"}})", "stream_options.include_usage"},
      {R"({"model": "m", "wizard": true})", "wizard"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(c.body);
    EXPECT_THAT(body, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.param))) << c.body;
    EXPECT_EQ(Param(body.status()), c.param) << c.body;
  }
}

TEST(ParseChatCompletionBody, AcceptsWholeNumbersWrittenAsFloats) {
  absl::StatusOr<ChatCompletionBody> body =
      ParseChatCompletionBody(R"({"max_tokens": 64.0, "top_k": 1e2, "temperature": 1})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->request.max_tokens(), 64);
  EXPECT_EQ(body->request.top_k(), 100);
  EXPECT_DOUBLE_EQ(body->request.temperature(), 1.0);
}

TEST(ParseChatCompletionBody, RefusesWhatIsNotAJsonObject) {
  for (const char* text : {"", "   ", "{", "{\"model\": }", "[]", "\"hi\"", "42", "null",
                           "{\"a\":1} trailing", "{'model': 'x'}", "{\"model\": \"x\",}"}) {
    absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(text);
    EXPECT_THAT(body, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("could not parse the JSON body")))
        << text;
    EXPECT_EQ(Param(body.status()), "") << text;
  }
}

TEST(ParseChatCompletionBody, RefusesInvalidUtf8AndLoneSurrogates) {
  for (const std::string& text :
       {std::string(
            "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}"),
        std::string("{\"model\": \"\xff\"}"), std::string(R"({"model": "\ud800"})"),
        std::string(R"({"model": "\udc00x"})")}) {
    EXPECT_THAT(ParseChatCompletionBody(text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("could not parse")))
        << text;
  }
  // A proper surrogate pair is fine.
  absl::StatusOr<ChatCompletionBody> ok = ParseChatCompletionBody(R"({"model": "\ud83d\ude00"})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->request.model(), "\xf0\x9f\x98\x80");
}

TEST(ParseChatCompletionBody, RefusesDeepNestingBeforeParsing) {
  const std::string deep = "{\"tools\": " + std::string(1000, '[') + std::string(1000, ']') + "}";
  EXPECT_THAT(ParseChatCompletionBody(deep),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deeper")));
  // Brackets inside strings do not count.
  const std::string text = "{\"model\": \"" + std::string(1000, '[') + "\"}";
  EXPECT_TRUE(ParseChatCompletionBody(text).ok());
}

TEST(ParseGenerateImagesBody, MapsTheSeedBody) {
  absl::StatusOr<v1::GenerateImagesRequest> r = ParseGenerateImagesBody(R"({
    "prompt": "A futuristic cityscape", "model": "dall-e-3", "n": 1, "quality": "hd",
    "response_format": "url", "size": "1024x1024", "user": "u", "style": "vivid"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt(), "A futuristic cityscape");
  EXPECT_EQ(r->model(), "dall-e-3");
  EXPECT_EQ(r->n(), 1);
  EXPECT_EQ(r->quality(), "hd");
  EXPECT_EQ(r->response_format(), "url");
  EXPECT_EQ(r->size(), "1024x1024");
}

TEST(ParseGenerateImagesBody, RefusesWrongTypesAndUnknownFields) {
  EXPECT_EQ(Param(ParseGenerateImagesBody(R"({"n": "2"})").status()), "n");
  EXPECT_EQ(Param(ParseGenerateImagesBody(R"({"size": 1024})").status()), "size");
  EXPECT_EQ(Param(ParseGenerateImagesBody(R"({"prompt": "x", "seed": 3})").status()), "seed");
  EXPECT_FALSE(ParseGenerateImagesBody("[1]").ok());
}

TEST(ChatCompletionJson, HasTheSeedShapeAndKeyOrder) {
  v1::ChatCompletion c;
  c.set_id("chatcmpl-123");
  c.set_object("chat.completion");
  c.set_created(1677652288);
  c.set_model("claude-3-opus");
  c.set_system_fingerprint("fp_44709d6fcb");
  v1::ChatCompletionChoice* choice = c.add_choices();
  choice->set_index(0);
  choice->mutable_message()->set_role("assistant");
  choice->mutable_message()->set_content("Response content");
  choice->set_finish_reason("stop");
  c.mutable_usage()->set_prompt_tokens(9);
  c.mutable_usage()->set_completion_tokens(12);
  c.mutable_usage()->set_total_tokens(21);
  EXPECT_EQ(ChatCompletionJson(c),
            R"({"id":"chatcmpl-123","object":"chat.completion","created":1677652288,)"
            R"("model":"claude-3-opus","system_fingerprint":"fp_44709d6fcb","choices":[{)"
            R"("index":0,"message":{"role":"assistant","content":"Response content"},)"
            R"("logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,)"
            R"("completion_tokens":12,"total_tokens":21}})");
}

TEST(ChatCompletionJson, WritesEveryStringAsNlohmannJsonDumpsIt) {
  // The answer is written without a JSON tree: each string must come out as the dump of one
  // (error_handler replace) would write it, whatever the provider put in it.
  const std::string strings[] = {
      "",
      "plain text",
      R"(quotes " and \ backslashes \" )",
      "controls \b\t\n\f\r \x01\x1f\x7f end",
      std::string("nul \0 inside", 12),
      "UTF-8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "invalid UTF-8: \xff \xc3 \xe2\x82 \xed\xa0\x80 end",
      "mixed \"\xc3\xa9\" \n\x02",
  };
  for (const std::string& text : strings) {
    v1::ChatCompletion c;
    c.set_id(text);
    c.set_model(text);
    c.set_system_fingerprint(text);
    c.set_created(-5);
    v1::ChatCompletionChoice* choice = c.add_choices();
    choice->set_index(3);
    choice->mutable_message()->set_role(text);
    choice->mutable_message()->set_content(text);
    c.add_choices()->set_finish_reason(text);  // a second choice, role and content defaulted
    c.mutable_usage()->set_total_tokens(7);
    nlohmann::ordered_json expected;
    expected["id"] = text;
    expected["object"] = "chat.completion";
    expected["created"] = -5;
    expected["model"] = text;
    expected["system_fingerprint"] = text;
    nlohmann::ordered_json first, second;
    first["index"] = 3;
    first["message"]["role"] = text.empty() ? "assistant" : text;
    first["message"]["content"] = text;
    first["logprobs"] = nullptr;
    first["finish_reason"] = nullptr;
    second["index"] = 0;
    second["message"]["role"] = "assistant";
    second["message"]["content"] = "";
    second["logprobs"] = nullptr;
    if (text.empty()) {
      second["finish_reason"] = nullptr;
    } else {
      second["finish_reason"] = text;
    }
    expected["choices"] = nlohmann::ordered_json::array({first, second});
    expected["usage"]["prompt_tokens"] = 0;
    expected["usage"]["completion_tokens"] = 0;
    expected["usage"]["total_tokens"] = 7;
    EXPECT_EQ(ChatCompletionJson(c),
              expected.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        << text;
  }
}

TEST(ChatCompletionChunkJson, HasOpenAisChunkShape) {
  v1::ChatCompletionChunk chunk;
  chunk.set_id("chatcmpl-1");
  chunk.set_object("chat.completion.chunk");
  chunk.set_created(1694268190);
  chunk.set_model("gpt-4o");
  chunk.set_system_fingerprint("fp_1");
  v1::ChatCompletionChunkChoice* c = chunk.add_choices();
  c->mutable_delta()->set_role("assistant");
  c->mutable_delta()->set_content("");
  EXPECT_EQ(ChatCompletionChunkJson(chunk, false),
            R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,)"
            R"("model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,)"
            R"("delta":{"role":"assistant","content":""},"logprobs":null,)"
            R"("finish_reason":null}]})");
  c->mutable_delta()->Clear();
  c->set_finish_reason("stop");
  chunk.mutable_usage()->set_total_tokens(5);
  EXPECT_EQ(ChatCompletionChunkJson(chunk, true),
            R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,)"
            R"("model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,)"
            R"("delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})");
  EXPECT_EQ(ChatUsageChunkJson(chunk),
            R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,)"
            R"("model":"gpt-4o","system_fingerprint":"fp_1","choices":[],)"
            R"("usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":5}})");
}

TEST(ModelListJson, HasTheSeedShape) {
  v1::ListModelsResponse list;
  list.set_object("list");
  v1::Model* m = list.add_data();
  m->set_id("gpt-4");
  m->set_object("model");
  m->set_created(1686935002);
  m->set_owned_by("openai");
  EXPECT_EQ(ModelListJson(list),
            R"({"object":"list","data":[{"id":"gpt-4","object":"model","created":1686935002,)"
            R"("owned_by":"openai"}]})");
}

TEST(GenerateImagesJson, WritesUrlOrB64Json) {
  v1::GenerateImagesResponse r;
  r.set_created(1686935002);
  r.add_data()->set_url("https://example.com/a.png");
  r.add_data()->set_b64_json("iVBOR");
  EXPECT_EQ(GenerateImagesJson(r),
            R"({"created":1686935002,"data":[{"url":"https://example.com/a.png"},)"
            R"({"b64_json":"iVBOR"}]})");
}

TEST(CheckKeyJson, WritesDurationsAsSeconds) {
  v1::CheckKeyResponse r;
  r.set_plan("premium");
  r.set_masked_key("sk-ab…wxyz");
  r.set_created(1767225600);
  v1::ClassUsage* c = r.add_classes();
  c->set_feature_class("llm");
  v1::WindowUsage* w = c->add_windows();
  w->mutable_window()->set_seconds(60);
  w->set_used(3);
  w->set_limit(30);
  w->set_remaining(27);
  w->mutable_reset()->set_seconds(12);
  w->mutable_reset()->set_nanos(500'000'000);
  EXPECT_EQ(CheckKeyJson(r),
            R"({"plan":"premium","masked_key":"sk-ab…wxyz","created":1767225600,"classes":[)"
            R"({"feature_class":"llm","windows":[{"window_seconds":60,"used":3,"reserved":0,)"
            R"("limit":30,"remaining":27,"reset_seconds":12.5}],"token_windows":[],)"
            R"("spend_windows":[],"in_flight":0,"max_concurrent":0}]})");
}

TEST(CheckKeyJson, ReportsTokenAndSpendWindowsReservedAndInFlight) {
  v1::CheckKeyResponse r;
  r.set_plan("free");
  v1::ClassUsage* c = r.add_classes();
  c->set_feature_class("closed_llm");
  const auto add = [](google::protobuf::RepeatedPtrField<v1::WindowUsage>* into, int64_t seconds,
                      int64_t used, int64_t reserved, int64_t limit) {
    v1::WindowUsage* w = into->Add();
    w->mutable_window()->set_seconds(seconds);
    w->set_used(used);
    w->set_reserved(reserved);
    w->set_limit(limit);
    w->set_remaining(limit - used);
    w->mutable_reset()->set_seconds(seconds);
  };
  add(c->mutable_windows(), 3600, 2, 1, 25);
  add(c->mutable_token_windows(), 3600, 1512, 1200, 50000);
  add(c->mutable_token_windows(), 86400, 1512, 1200, 200000);
  add(c->mutable_spend_windows(), 86400, 15'600, 12'500, 1'000'000);
  c->set_in_flight(1);
  c->set_max_concurrent(2);
  EXPECT_EQ(
      CheckKeyJson(r),
      R"({"plan":"free","masked_key":"","created":0,"classes":[{"feature_class":"closed_llm",)"
      R"("windows":[{"window_seconds":3600,"used":2,"reserved":1,"limit":25,"remaining":23,)"
      R"("reset_seconds":3600}],)"
      R"("token_windows":[{"window_seconds":3600,"used":1512,"reserved":1200,"limit":50000,)"
      R"("remaining":48488,"reset_seconds":3600},{"window_seconds":86400,"used":1512,)"
      R"("reserved":1200,"limit":200000,"remaining":198488,"reset_seconds":86400}],)"
      R"("spend_windows":[{"window_seconds":86400,"used":15600,"reserved":12500,)"
      R"("limit":1000000,"remaining":984400,"reset_seconds":86400}],)"
      R"("in_flight":1,"max_concurrent":2}]})");
}

TEST(AskChunkJson, IsMessageAndUrl) {
  v1::AskChunk chunk;
  chunk.set_message("Response \"message\"");
  chunk.set_url("https://example.com");
  EXPECT_EQ(AskChunkJson(chunk),
            R"({"message":"Response \"message\"","url":"https://example.com"})");
}

TEST(Json, OutputNeverThrowsOnBadBytes) {
  v1::AskChunk chunk;
  chunk.set_message("\xff\xfe");
  const std::string json = AskChunkJson(chunk);
  EXPECT_TRUE(nlohmann::json::accept(json)) << json;
}

}  // namespace
}  // namespace anyai::server
