// Tests for server/providers/openai/openai_provider.cc (and
// server/providers/openai/upstream_http.cc under it), against FakeUpstream, a scripted
// OpenAI-compatible server on a local socket: what the provider sends, how it maps answers and
// failures back, that streams pass through chunk by chunk as they arrive, that a client going away
// closes the upstream connection at once, and timeouts.
#include "server/providers/openai/openai_provider.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "server/providers/builtin/png_encoder.h"
#include "server/providers/openai/ssrf_guard.h"
#include "tests/server/providers/openai/fake_upstream.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::FakeUpstream;
using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr int64_t kNow = 1700000000;
constexpr char kApiKey[] = "sk-upstream-secret-0123456789";

absl::Time FixedNow() { return absl::FromUnixSeconds(kNow); }

// How long a call that should fail fast may take at most, on a loaded machine under ASan.
constexpr absl::Duration kSlack = absl::Seconds(2);

v1::ChatCompletionRequest ChatRequest() {
  v1::ChatCompletionRequest request;
  request.set_model("gpt-4o");
  v1::ChatMessage* system = request.add_messages();
  system->set_role("system");
  system->set_content("You are terse.");
  v1::ChatMessage* user = request.add_messages();
  user->set_role("user");
  user->set_content("Capital of France?");
  return request;
}

std::string CompletionJson(const std::string& content) {
  return Json{{"id", "chatcmpl-up1"},
              {"object", "chat.completion"},
              {"created", 1699999999},
              {"model", "gpt-4o-2024-08-06"},
              {"system_fingerprint", "fp_up"},
              {"choices",
               {{{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", content}}},
                 {"logprobs", nullptr},
                 {"finish_reason", "stop"}}}},
              {"usage", {{"prompt_tokens", 12}, {"completion_tokens", 3}, {"total_tokens", 15}}}}
      .dump();
}

std::string ChunkJson(const Json& delta, const Json& finish_reason = nullptr) {
  return Json{{"id", "chatcmpl-up2"},
              {"object", "chat.completion.chunk"},
              {"created", 1699999998},
              {"model", "gpt-4o-2024-08-06"},
              {"system_fingerprint", nullptr},
              {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish_reason}}}},
              {"usage", nullptr}}
      .dump();
}

std::string UsageChunkJson() {
  return Json{{"id", "chatcmpl-up2"},
              {"object", "chat.completion.chunk"},
              {"created", 1699999998},
              {"model", "gpt-4o-2024-08-06"},
              {"choices", Json::array()},
              {"usage", {{"prompt_tokens", 9}, {"completion_tokens", 2}, {"total_tokens", 11}}}}
      .dump();
}

FakeUpstream::Step Data(const std::string& event) {
  return {.data = absl::StrCat("data: ", event, "\n\n")};
}

// A host name resolver for vision URLs that needs no network.
HostResolver TestResolver() {
  return [](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    if (host == "images.example") return std::vector<std::string>{"93.184.216.34"};
    if (host == "internal.example") return std::vector<std::string>{"10.1.2.3"};
    return absl::NotFoundError("no such host");
  };
}

class OpenAIProviderTest : public ::testing::Test {
 protected:
  OpenAIProviderTest() : upstream_(FakeUpstream::Start()) {
    // libcurl honours proxy variables; the fake upstream must be reached directly.
    for (const char* name : {"http_proxy", "https_proxy", "all_proxy", "ALL_PROXY"}) {
      unsetenv(name);
    }
  }

  OpenAIProviderOptions Options() const {
    OpenAIProviderOptions options;
    options.name = "up";
    options.base_url = upstream_->base_url();
    options.api_key = kApiKey;
    options.timeout = absl::Seconds(20);
    options.model_map = {{"gpt-4o", "gpt-4o-2024-08-06"}, {"sdxl", "stable-diffusion-xl"}};
    return options;
  }

  std::unique_ptr<OpenAIProvider> Make(OpenAIProviderOptions options) {
    absl::StatusOr<SsrfGuard> guard = SsrfGuard::Create(std::vector<std::string>{}, TestResolver());
    EXPECT_OK(guard);
    absl::StatusOr<std::unique_ptr<OpenAIProvider>> provider =
        OpenAIProvider::Create(std::move(options), *std::move(guard), &FixedNow);
    EXPECT_OK(provider);
    return *std::move(provider);
  }
  std::unique_ptr<OpenAIProvider> Make() { return Make(Options()); }

  // The JSON body of the request the upstream got, by position.
  Json SentBody(size_t i = 0) const {
    const std::vector<FakeUpstream::Request> requests = upstream_->requests();
    EXPECT_GT(requests.size(), i);
    if (requests.size() <= i) return Json();
    return Json::parse(requests[i].body);
  }

  std::unique_ptr<FakeUpstream> upstream_;
};

// --- Chat ---

TEST_F(OpenAIProviderTest, ChatSendsTheMappedModelMessagesParametersAndKey) {
  upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("Paris.")));
  v1::ChatCompletionRequest request = ChatRequest();
  request.set_max_tokens(50);
  request.set_temperature(0.5);
  request.set_top_p(0.25);
  request.set_top_k(40);

  absl::StatusOr<v1::ChatCompletion> completion = Make()->Chat(request);

  ASSERT_OK(completion);
  const std::vector<FakeUpstream::Request> requests = upstream_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(requests[0].Header("authorization"), absl::StrCat("Bearer ", kApiKey));
  EXPECT_EQ(requests[0].Header("content-type"), "application/json");
  const Json body = SentBody();
  EXPECT_EQ(body["model"], "gpt-4o-2024-08-06");
  EXPECT_EQ(body["messages"], Json::parse(R"([{"role":"system","content":"You are terse."},
                                              {"role":"user","content":"Capital of France?"}])"));
  EXPECT_EQ(body["max_tokens"], 50);
  EXPECT_EQ(body["temperature"], 0.5);
  EXPECT_EQ(body["top_p"], 0.25);
  EXPECT_EQ(body["top_k"], 40);
  EXPECT_FALSE(body.contains("stream"));
}

TEST_F(OpenAIProviderTest, ChatMapsTheAnswerAndShowsTheModelAsAsked) {
  upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("Paris.")));

  absl::StatusOr<v1::ChatCompletion> completion = Make()->Chat(ChatRequest());

  ASSERT_OK(completion);
  EXPECT_EQ(completion->id(), "chatcmpl-up1");
  EXPECT_EQ(completion->object(), "chat.completion");
  EXPECT_EQ(completion->created(), 1699999999);
  EXPECT_EQ(completion->model(), "gpt-4o");
  EXPECT_EQ(completion->system_fingerprint(), "fp_up");
  ASSERT_EQ(completion->choices_size(), 1);
  EXPECT_EQ(completion->choices(0).message().role(), "assistant");
  EXPECT_EQ(completion->choices(0).message().content(), "Paris.");
  EXPECT_EQ(completion->choices(0).finish_reason(), "stop");
  EXPECT_EQ(completion->usage().prompt_tokens(), 12);
  EXPECT_EQ(completion->usage().completion_tokens(), 3);
  EXPECT_EQ(completion->usage().total_tokens(), 15);
}

TEST_F(OpenAIProviderTest, ChatLeavesOutUnsetParametersAndSendsNoKeyWhenNoneIsConfigured) {
  upstream_->Enqueue(FakeUpstream::Json(
      200, R"({"choices":[{"message":{"content":"hi"},"finish_reason":"length"}]})"));
  OpenAIProviderOptions options = Options();
  options.api_key.clear();
  v1::ChatCompletionRequest request = ChatRequest();
  request.set_model("llama-3-8b-chat");  // not in model_map: sent as it is
  request.set_top_k(0);                  // 0 disables top_k: not sent

  absl::StatusOr<v1::ChatCompletion> completion = Make(std::move(options))->Chat(request);

  ASSERT_OK(completion);
  const Json body = SentBody();
  EXPECT_EQ(body["model"], "llama-3-8b-chat");
  for (const char* absent : {"max_tokens", "temperature", "top_p", "top_k", "stream"}) {
    EXPECT_FALSE(body.contains(absent)) << absent;
  }
  EXPECT_EQ(upstream_->requests()[0].Header("authorization"), "");
  // What the upstream left out is filled in: the created time from the clock, an id.
  EXPECT_EQ(completion->created(), kNow);
  EXPECT_THAT(completion->id(), ::testing::StartsWith("chatcmpl-"));
  EXPECT_EQ(completion->choices(0).message().role(), "assistant");
  EXPECT_EQ(completion->choices(0).finish_reason(), "length");
}

TEST_F(OpenAIProviderTest, ChatReusesTheConnectionForTheNextCall) {
  upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("one")));
  upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("two")));
  std::unique_ptr<OpenAIProvider> provider = Make();

  ASSERT_OK(provider->Chat(ChatRequest()));
  ASSERT_OK(provider->Chat(ChatRequest()));

  EXPECT_EQ(upstream_->requests().size(), 2u);
  EXPECT_EQ(upstream_->connections(), 1);
}

TEST_F(OpenAIProviderTest, OneProviderServesConcurrentCalls) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 4;
  for (int i = 0; i < kThreads * kCallsPerThread; ++i) {
    upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("ok")));
  }
  std::unique_ptr<OpenAIProvider> provider = Make();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        absl::StatusOr<v1::ChatCompletion> c = provider->Chat(ChatRequest());
        if (c.ok() && c->choices(0).message().content() == "ok") ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kCallsPerThread);
}

// --- Upstream errors ---

struct ErrorCase {
  int status;
  absl::StatusCode code;
  const char* message_part;
};

TEST_F(OpenAIProviderTest, UpstreamStatusesMapToOurs) {
  const ErrorCase cases[] = {
      {400, absl::StatusCode::kInvalidArgument, "refused the request (HTTP 400): it said no"},
      {413, absl::StatusCode::kInvalidArgument, "refused the request (HTTP 413)"},
      {422, absl::StatusCode::kInvalidArgument, "refused the request (HTTP 422)"},
      {401, absl::StatusCode::kUnavailable, "rejected the gateway's credentials (HTTP 401)"},
      {403, absl::StatusCode::kUnavailable, "rejected the gateway's credentials (HTTP 403)"},
      {404, absl::StatusCode::kUnavailable, "does not serve this model or path (HTTP 404)"},
      {408, absl::StatusCode::kDeadlineExceeded, "timed out (HTTP 408)"},
      {429, absl::StatusCode::kUnavailable, "rate limiting the gateway (HTTP 429"},
      {500, absl::StatusCode::kUnavailable, "failed (HTTP 500): it said no"},
      {502, absl::StatusCode::kUnavailable, "failed (HTTP 502)"},
      {503, absl::StatusCode::kUnavailable, "failed (HTTP 503)"},
      {504, absl::StatusCode::kDeadlineExceeded, "timed out (HTTP 504)"},
      {302, absl::StatusCode::kUnavailable, "failed (HTTP 302)"},
  };
  std::unique_ptr<OpenAIProvider> provider = Make();
  for (const ErrorCase& c : cases) {
    upstream_->Enqueue(FakeUpstream::Json(c.status, R"({"error":{"message":"it said no"}})"));
    EXPECT_THAT(provider->Chat(ChatRequest()),
                StatusIs(c.code, AllOf(HasSubstr("upstream \"up\""), HasSubstr(c.message_part))))
        << c.status;
  }
}

TEST_F(OpenAIProviderTest, ErrorsNeverCarryTheApiKey) {
  // OpenAI's 401 quotes part of the key; some servers echo it whole.
  upstream_->Enqueue(
      FakeUpstream::Json(401, absl::StrCat(R"({"error":{"message":"Incorrect API key provided: )",
                                           kApiKey, R"(. Check it."}})")));
  upstream_->Enqueue(FakeUpstream::Json(
      400, absl::StrCat(R"({"error":{"message":"bad request from key )", kApiKey, R"("}})")));
  std::unique_ptr<OpenAIProvider> provider = Make();

  const absl::Status unauthorized = provider->Chat(ChatRequest()).status();
  const absl::Status bad = provider->Chat(ChatRequest()).status();

  EXPECT_THAT(unauthorized, StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr("sk-"))));
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("<redacted>"), Not(HasSubstr(kApiKey)))));
}

TEST_F(OpenAIProviderTest, RateLimitingUpstreamIsUnavailableWithItsRetryAfter) {
  FakeUpstream::Response r = FakeUpstream::Json(429, R"({"error":{"message":"slow down"}})");
  r.headers.emplace_back("Retry-After", "7");
  upstream_->Enqueue(r);

  EXPECT_THAT(Make()->Chat(ChatRequest()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("retry after 7s"), HasSubstr("slow down"))));
}

TEST_F(OpenAIProviderTest, AMalformedAnswerIsUnavailable) {
  upstream_->Enqueue(FakeUpstream::Json(200, "<html>proxy error</html>"));
  upstream_->Enqueue(FakeUpstream::Json(200, R"({"choices": []})"));
  std::unique_ptr<OpenAIProvider> provider = Make();

  EXPECT_THAT(provider->Chat(ChatRequest()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("malformed")));
  EXPECT_THAT(provider->Chat(ChatRequest()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("malformed")));
}

TEST_F(OpenAIProviderTest, ARefusedConnectionIsUnavailable) {
  // A port that was just free: nothing listens on it.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(fd);
  OpenAIProviderOptions options = Options();
  options.base_url = absl::StrCat("http://127.0.0.1:", ntohs(address.sin_port), "/v1");

  const absl::Time start = absl::Now();
  const absl::Status s = Make(std::move(options))->Chat(ChatRequest()).status();

  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unreachable")));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("127.0.0.1")));
  EXPECT_LT(absl::Now() - start, kSlack);
}

TEST_F(OpenAIProviderTest, ChatTimesOutWithinTheConfiguredTimeout) {
  FakeUpstream::Response hang;
  hang.hang = true;
  upstream_->Enqueue(hang);
  OpenAIProviderOptions options = Options();
  options.timeout = absl::Milliseconds(300);

  const absl::Time start = absl::Now();
  const absl::Status s = Make(std::move(options))->Chat(ChatRequest()).status();
  const absl::Duration took = absl::Now() - start;

  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("300ms")));
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Milliseconds(300) + kSlack);
  // The timed-out exchange's connection is closed, not left hanging at the upstream.
  EXPECT_TRUE(upstream_->WaitForDisconnects(1, kSlack));
}

// --- Streamed chat ---

TEST_F(OpenAIProviderTest, StreamChatEmitsEachChunkAsItArrives) {
  absl::Notification first_seen;
  FakeUpstream::Response r;
  r.headers = {{"Content-Type", "text/event-stream"}};
  r.steps = {
      Data(ChunkJson({{"role", "assistant"}, {"content", ""}})),
      // The rest waits until the provider has handed the first chunk to the client: were it
      // buffering the stream, this would time out (wait_timeouts).
      {.wait_for = &first_seen,
       .data = absl::StrCat("data: ", ChunkJson({{"content", "Pa"}}), "\n\n")},
      Data(ChunkJson({{"content", "ris."}})),
      Data(ChunkJson(Json::object(), "stop")),
      Data(UsageChunkJson()),
      {.data = "data: [DONE]\n\n"},
  };
  upstream_->Enqueue(r);
  std::vector<v1::ChatCompletionChunk> chunks;

  const absl::Status s = Make()->StreamChat(ChatRequest(), [&](const v1::ChatCompletionChunk& c) {
    chunks.push_back(c);
    if (!first_seen.HasBeenNotified()) first_seen.Notify();
    return true;
  });

  ASSERT_OK(s);
  EXPECT_EQ(upstream_->wait_timeouts(), 0);
  ASSERT_EQ(chunks.size(), 4u);
  std::string text;
  for (const v1::ChatCompletionChunk& c : chunks) {
    EXPECT_EQ(c.id(), "chatcmpl-up2");
    EXPECT_EQ(c.object(), "chat.completion.chunk");
    EXPECT_EQ(c.created(), 1699999998);
    EXPECT_EQ(c.model(), "gpt-4o");
    ASSERT_EQ(c.choices_size(), 1);
    text += c.choices(0).delta().content();
  }
  EXPECT_EQ(text, "Paris.");
  EXPECT_EQ(chunks[0].choices(0).delta().role(), "assistant");
  EXPECT_FALSE(chunks[1].choices(0).delta().has_role());
  EXPECT_FALSE(chunks[1].choices(0).has_finish_reason());
  // The usage-only chunk that OpenAI sends last rides on the final chunk.
  EXPECT_EQ(chunks[3].choices(0).finish_reason(), "stop");
  EXPECT_FALSE(chunks[3].choices(0).delta().has_content());
  EXPECT_EQ(chunks[3].usage().total_tokens(), 11);
  EXPECT_FALSE(chunks[2].has_usage());

  const Json body = SentBody();
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["model"], "gpt-4o-2024-08-06");
  EXPECT_EQ(upstream_->requests()[0].Header("accept"), "text/event-stream");
}

TEST_F(OpenAIProviderTest, StreamChatReassemblesEventsCutAnywhere) {
  const std::string stream =
      absl::StrCat("data: ", ChunkJson({{"role", "assistant"}, {"content", "a"}}), "\r\n\r\n",
                   ": keep-alive\n\n", "data: ", ChunkJson({{"content", "b"}}, "stop"), "\r\n\r\n",
                   "data: [DONE]\r\n\r\n");
  FakeUpstream::Response r;
  r.headers = {{"Content-Type", "text/event-stream"}};
  // A pause before each piece, so that they reach the provider as separate reads.
  for (size_t i = 0; i < stream.size(); i += 7) {
    r.steps.push_back({.delay = absl::Milliseconds(1), .data = stream.substr(i, 7)});
  }
  upstream_->Enqueue(r);
  std::string text;
  int count = 0;

  ASSERT_OK(Make()->StreamChat(ChatRequest(), [&](const v1::ChatCompletionChunk& c) {
    text += c.choices(0).delta().content();
    ++count;
    return true;
  }));

  EXPECT_EQ(text, "ab");
  EXPECT_EQ(count, 2);
}

TEST_F(OpenAIProviderTest, StreamChatClosesTheUpstreamAndIsCancelledWhenTheClientGoes) {
  absl::Notification never;
  FakeUpstream::Response r;
  r.headers = {{"Content-Type", "text/event-stream"}};
  r.steps = {Data(ChunkJson({{"role", "assistant"}, {"content", "Hel"}})),
             {.wait_for = &never, .data = "data: " + ChunkJson({{"content", "lo"}}) + "\n\n"}};
  upstream_->Enqueue(r);
  int emitted = 0;

  const absl::Time start = absl::Now();
  const absl::Status s = Make()->StreamChat(ChatRequest(), [&](const v1::ChatCompletionChunk&) {
    ++emitted;
    return false;  // the client went away
  });

  EXPECT_THAT(s, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(emitted, 1);
  EXPECT_TRUE(upstream_->WaitForDisconnects(1, kSlack));
  EXPECT_LT(absl::Now() - start, kSlack);
}

TEST_F(OpenAIProviderTest, StreamChatTimesOutWhenTheUpstreamFallsSilent) {
  FakeUpstream::Response r;
  r.headers = {{"Content-Type", "text/event-stream"}};
  r.steps = {Data(ChunkJson({{"role", "assistant"}, {"content", "Hel"}})),
             {.delay = absl::Milliseconds(200), .data = Data(ChunkJson({{"content", "l"}})).data},
             {.delay = absl::Seconds(30), .data = Data(ChunkJson({{"content", "o"}})).data}};
  upstream_->Enqueue(r);
  OpenAIProviderOptions options = Options();
  options.timeout = absl::Milliseconds(500);  // between two pieces: 200ms is fine
  std::string text;

  const absl::Time start = absl::Now();
  const absl::Status s =
      Make(std::move(options))->StreamChat(ChatRequest(), [&](const v1::ChatCompletionChunk& c) {
        text += c.choices(0).delta().content();
        return true;
      });
  const absl::Duration took = absl::Now() - start;

  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("500ms")));
  EXPECT_EQ(text, "Hell");
  EXPECT_GE(took, absl::Milliseconds(700));
  EXPECT_LT(took, absl::Milliseconds(700) + kSlack);
  EXPECT_TRUE(upstream_->WaitForDisconnects(1, kSlack));
}

TEST_F(OpenAIProviderTest, StreamChatMapsAnUpstreamErrorAndEmitsNothing) {
  upstream_->Enqueue(FakeUpstream::Json(400, R"({"error":{"message":"context too long"}})"));
  int emitted = 0;

  EXPECT_THAT(Make()->StreamChat(ChatRequest(),
                                 [&](const v1::ChatCompletionChunk&) {
                                   ++emitted;
                                   return true;
                                 }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context too long")));
  EXPECT_EQ(emitted, 0);
}

TEST_F(OpenAIProviderTest, StreamChatReportsAnErrorEventAndAStreamCutShort) {
  upstream_->Enqueue(FakeUpstream::Sse({ChunkJson({{"role", "assistant"}, {"content", "a"}}),
                                        R"({"error":{"message":"overloaded"}})"}));
  FakeUpstream::Response cut;
  cut.headers = {{"Content-Type", "text/event-stream"}};
  cut.steps = {Data(ChunkJson({{"role", "assistant"}, {"content", "a"}}))};
  upstream_->Enqueue(cut);
  std::unique_ptr<OpenAIProvider> provider = Make();
  auto ignore = [](const v1::ChatCompletionChunk&) { return true; };

  EXPECT_THAT(provider->StreamChat(ChatRequest(), ignore),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("overloaded")));
  EXPECT_THAT(provider->StreamChat(ChatRequest(), ignore),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("before the answer")));
}

// --- Images ---

TEST_F(OpenAIProviderTest, GenerateImagesForwardsTheRequestAndMapsTheImages) {
  upstream_->Enqueue(FakeUpstream::Json(
      200, R"({"created": 1699990000, "data": [{"b64_json": "aGVsbG8=", "revised_prompt": "x"},
                                              {"url": "https://cdn.example/2.png"}]})"));
  v1::GenerateImagesRequest request;
  request.set_prompt("a red fox");
  request.set_model("dall-e-2");
  request.set_n(2);
  request.set_size("512x512");
  request.set_quality("standard");
  request.set_response_format("b64_json");

  absl::StatusOr<v1::GenerateImagesResponse> response = Make()->GenerateImages(request);

  ASSERT_OK(response);
  EXPECT_EQ(upstream_->requests()[0].target, "/v1/images/generations");
  EXPECT_EQ(SentBody(), Json::parse(R"({"model": "dall-e-2", "prompt": "a red fox", "n": 2,
                                        "size": "512x512", "quality": "standard",
                                        "response_format": "b64_json"})"));
  EXPECT_EQ(response->created(), 1699990000);
  ASSERT_EQ(response->data_size(), 2);
  EXPECT_EQ(response->data(0).b64_json(), "aGVsbG8=");
  EXPECT_EQ(response->data(1).url(), "https://cdn.example/2.png");
}

TEST_F(OpenAIProviderTest, ImagineDecodesAPngOfTheRequestedSize) {
  const std::vector<uint8_t> pixels(64 * 32 * 3, 0x80);
  absl::StatusOr<std::string> png = EncodePng(64, 32, pixels);
  ASSERT_OK(png);
  const std::string answer =
      Json{{"created", 1}, {"data", {{{"b64_json", absl::Base64Escape(*png)}}}}}.dump();
  upstream_->Enqueue(FakeUpstream::Json(200, answer));
  upstream_->Enqueue(FakeUpstream::Json(200, answer));
  v1::ImagineRequest request;
  request.set_prompt("a lighthouse");
  request.set_negative_prompt("fog");
  request.set_width(64);
  request.set_height(32);
  request.set_steps(20);
  request.set_seed(7);
  std::unique_ptr<OpenAIProvider> provider = Make();

  absl::StatusOr<v1::ImagineResponse> image = provider->Imagine(request);

  ASSERT_OK(image);
  EXPECT_EQ(image->content_type(), "image/png");
  EXPECT_EQ(image->image(), *png);
  EXPECT_EQ(SentBody(), Json::parse(R"({"model": "stable-diffusion-xl", "prompt": "a lighthouse",
                                        "negative_prompt": "fog", "n": 1, "size": "64x32",
                                        "response_format": "b64_json"})"));

  request.set_width(128);  // the upstream still draws 64x32
  EXPECT_THAT(provider->Imagine(request),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("64x32 pixels, not the 128x32")));
}

// --- Vision ---

TEST_F(OpenAIProviderTest, DescribeImageAsksAVisionChatWithTheImageUrl) {
  upstream_->Enqueue(FakeUpstream::Json(200, CompletionJson("A cat on a mat.")));
  v1::DescribeImageRequest request;
  request.set_url("https://images.example/cat.png?w=1");
  request.set_model("gpt-4o");

  absl::StatusOr<v1::DescribeImageResponse> response = Make()->DescribeImage(request);

  ASSERT_OK(response);
  EXPECT_EQ(response->description(), "A cat on a mat.");
  EXPECT_EQ(response->model(), "gpt-4o");
  EXPECT_EQ(upstream_->requests()[0].target, "/v1/chat/completions");
  EXPECT_EQ(SentBody(), Json::parse(R"({"model": "gpt-4o-2024-08-06", "messages": [
      {"role": "user", "content": [
          {"type": "text", "text": "Describe this image."},
          {"type": "image_url", "image_url": {"url": "https://images.example/cat.png?w=1"}}]}]})"));
}

TEST_F(OpenAIProviderTest, DescribeImageRefusesPrivateUrlsWithoutAskingTheUpstream) {
  std::unique_ptr<OpenAIProvider> provider = Make();
  for (const char* url :
       {"http://169.254.169.254/latest/meta-data/", "http://127.0.0.1/x.png", "http://[::1]/x.png",
        "http://internal.example/x.png", "http://localhost/x.png"}) {
    v1::DescribeImageRequest request;
    request.set_url(url);
    const absl::Status s = provider->DescribeImage(request).status();
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_)) << url;
    EXPECT_EQ(ErrorField(s), "url") << url;
  }
  EXPECT_TRUE(upstream_->requests().empty());
}

// --- Ask ---

TEST_F(OpenAIProviderTest, AskIsUnimplemented) {
  v1::AskRequest request;
  request.set_prompt("why is the sky blue?");
  EXPECT_THAT(Make()->Ask(request, [](const v1::AskChunk&) { return true; }),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("builtin")));
}

// --- Create ---

TEST(OpenAIProviderCreateTest, RefusesABaseUrlThatIsNotHttp) {
  for (const char* url : {"", "ftp://upstream/v1", "upstream/v1", "http:///v1", "http://a/v1?x"}) {
    OpenAIProviderOptions options;
    options.name = "up";
    options.base_url = url;
    absl::StatusOr<SsrfGuard> guard = SsrfGuard::Create(std::vector<std::string>{});
    ASSERT_OK(guard);
    EXPECT_THAT(OpenAIProvider::Create(options, *guard),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_url")))
        << url;
  }
}

}  // namespace
}  // namespace anyai::server
