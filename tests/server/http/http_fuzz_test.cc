// Fuzz-style tests of the HTTP front (SPEC §10: "parsers are fuzzed"), deterministic from a
// seed (ANYAI_FUZZ_SEED overrides it; the seed is printed so a failure can be replayed):
//   - random bytes and mutated requests thrown at a real Server's socket: every answer is a
//     well-formed HTTP response, bad input never gets a 5xx, and a good request is still
//     answered afterwards;
//   - mutated JSON bodies and query strings fed straight to the parsers (no sockets) by the
//     thousand: no crash, no exception, and every refusal names a printable field.
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "server/http/http_json.h"
#include "server/http/http_query.h"
#include "tests/server/http/http_test_server.h"

namespace anyai::testing {
namespace {

uint64_t Seed() {
  uint64_t seed = 20261125;
  if (const char* env = std::getenv("ANYAI_FUZZ_SEED")) {
    if (!absl::SimpleAtoi(env, &seed)) ADD_FAILURE() << "ANYAI_FUZZ_SEED: not a number";
  }
  std::cout << "fuzz seed " << seed << " (set ANYAI_FUZZ_SEED to replay)\n";
  return seed;
}

const std::vector<std::string>& JsonBodies() {
  static const auto* bodies = new std::vector<std::string>{
      R"({"model": "phi-2", "messages": [{"role": "user", "content": "hello"}]})",
      R"({"model": "gpt-4o", "messages": [{"role": "system", "content": "be brief"},
          {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 64,
          "temperature": 0.7, "top_p": 0.5, "top_k": 0, "stream": true,
          "stream_options": {"include_usage": true}, "user": "u", "n": 1})",
      R"({"prompt": "A futuristic cityscape", "model": "dall-e-2", "n": 1, "quality": "hd",
          "response_format": "b64_json", "size": "256x256"})",
  };
  return *bodies;
}

const std::vector<std::string>& Queries() {
  static const auto* queries = new std::vector<std::string>{
      "prompt=A+beautiful+landscape&negative_prompt=rain&width=64&height=64&steps=5"
      "&seed=123456&model=sdxl",
      "prompt=what%20is%20AnyAI%3F",
      "url=https%3A%2F%2Fexample.com%2Fimage.png&model=gemini-pro-vision",
  };
  return *queries;
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  size_t Below(size_t n) {
    return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  char Byte() { return static_cast<char>(Below(256)); }

  std::string RandomBytes(size_t max) {
    std::string out(Below(max) + 1, '\0');
    for (char& c : out) c = Byte();
    return out;
  }

  // A few random edits: flips, insertions (random bytes or JSON/HTTP tokens), deletions,
  // duplications, truncation.
  std::string Mutate(std::string s) {
    static const char* const kTokens[] = {"{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"",
                                          ":",
                                          ",",
                                          "null",
                                          "true",
                                          "1e999",
                                          "-0",
                                          "\\u0000",
                                          "\\ud800",
                                          "\xc3\x28",
                                          "\xff",
                                          "\r\n",
                                          "\n",
                                          "\r\n\r\n",
                                          "Content-Length: 99999999\r\n",
                                          "Transfer-Encoding: chunked\r\n",
                                          "%",
                                          "%zz",
                                          "&",
                                          "=",
                                          "+",
                                          "99999999999999999999"};
    const size_t edits = Below(4) + 1;
    for (size_t e = 0; e < edits; ++e) {
      const size_t at = Below(s.size() + 1);
      switch (Below(6)) {
        case 0:
          if (!s.empty()) s[Below(s.size())] = Byte();
          break;
        case 1:
          s.insert(at, kTokens[Below(std::size(kTokens))]);
          break;
        case 2:
          s.insert(at, RandomBytes(8));
          break;
        case 3:
          s.erase(at, Below(16));
          break;
        case 4:
          if (!s.empty()) {
            const size_t from = Below(s.size());
            s.insert(at, s.substr(from, Below(32)));
          }
          break;
        default:
          s.resize(at);
      }
    }
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

TEST(HttpParsersFuzz, MutatedBodiesAndQueriesNeverCrash) {
  Mutator m(Seed());
  for (int i = 0; i < 20000; ++i) {
    const std::string body =
        i % 10 == 0 ? m.RandomBytes(200) : m.Mutate(JsonBodies()[m.Below(JsonBodies().size())]);
    for (const absl::Status& s : {server::ParseChatCompletionBody(body).status(),
                                  server::ParseGenerateImagesBody(body).status()}) {
      if (s.ok()) continue;
      ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      for (char c : server::ErrorField(s)) ASSERT_TRUE(c >= 0x20 && c < 0x7f) << s;
    }
    const std::string query = m.Mutate(Queries()[m.Below(Queries().size())]);
    for (const absl::Status& s : {server::ImagineRequestFromQuery(query).status(),
                                  server::AskRequestFromQuery(query).status(),
                                  server::DescribeImageRequestFromQuery(query).status(),
                                  server::CheckKeyFromQuery(query).status()}) {
      if (!s.ok()) {
        ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      }
    }
  }
}

class HttpFuzzTest : public HttpServerFixture {
 protected:
  void Configure(v1::ServerConfig& config) override {
    config.mutable_http_read_timeout()->set_seconds(2);
    config.mutable_http_idle_timeout()->set_seconds(2);
  }

  std::vector<std::string> Requests() const {
    std::vector<std::string> out;
    for (const std::string& body : JsonBodies()) {
      out.push_back(Request("POST", "/v1/chat/completions", body));
      out.push_back(Request("POST", "/images/generations", body));
    }
    for (const std::string& q : Queries()) {
      for (const char* path : {"/v1/imagine?", "/ask?", "/v1/images/vision?", "/check?"}) {
        out.push_back(Request("GET", path + q));
      }
    }
    out.push_back(Request("GET", "/v1/models", "", {{"Authorization", "Bearer " + key_}}));
    out.push_back(Request("GET", "/healthz"));
    out.push_back(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n");
    return out;
  }

  std::string key_ = "sk-anyai-nothing";
};

TEST_F(HttpFuzzTest, GarbageOnTheSocketNeverBreaksTheServer) {
  Mutator m(Seed());
  const std::vector<std::string> requests = Requests();
  int answered = 0;
  for (int i = 0; i < 300; ++i) {
    Advance(absl::Seconds(61));  // keep the per-minute windows out of the way
    const std::string bytes =
        i % 5 == 0 ? m.RandomBytes(2000) : m.Mutate(requests[m.Below(requests.size())]);
    HttpConnection c(port());
    ASSERT_TRUE(c.ok());
    c.Send(bytes);  // the server may already have refused it and closed
    c.HalfClose();
    // Whatever comes back is well-formed HTTP; a refusal of bad input is never a 5xx.
    while (std::optional<HttpReply> r = c.Read(absl::Seconds(10))) {
      ++answered;
      ASSERT_GE(r->status, 100) << bytes;
      ASSERT_LT(r->status, 500) << r->status << " " << r->body << "\nfor: " << bytes;
      if (r->status >= 400) {
        ASSERT_NE(r->body.find("\"error\""), std::string::npos) << r->body;
      }
    }
    c.Close(i % 2 == 0);
  }
  EXPECT_GT(answered, 50);
  EXPECT_EQ(Get("/healthz").status, 200);
  HttpReply good = Post("/v1/chat/completions", JsonBodies()[0]);
  EXPECT_EQ(good.status, 200) << good.body;
}

}  // namespace
}  // namespace anyai::testing
