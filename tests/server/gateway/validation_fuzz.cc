// A deterministic, randomized (fuzz-style) test of the request validation and UTF-8 counting,
// runnable without libFuzzer: random bytes and random field values go through every validator,
// which must never crash and must be consistent with simple reference implementations and with
// itself. The seed is fixed so that a failure reproduces; set ANYAI_FUZZ_SEED to explore.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "anyai/v1/anyai.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/errors.h"
#include "server/gateway/text.h"
#include "server/gateway/validation.h"
#include "server/net/ip_address.h"
#include "server/net/url.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

uint64_t Seed() {
  const char* env = std::getenv("ANYAI_FUZZ_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 20240601;
}

// The reference: decode each sequence by its lead byte's bit pattern, then refuse overlongs,
// surrogates and values above U+10FFFF by the decoded value (the code under test instead
// narrows the second byte's range, as Unicode's Table 3-7 does).
std::optional<int64_t> ReferenceCount(const std::string& s) {
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  int64_t count = 0;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t length;
    uint32_t cp;
    if (b < 0x80) {
      length = 1;
      cp = b;
    } else if ((b >> 5) == 0x6) {
      length = 2;
      cp = b & 0x1F;
    } else if ((b >> 4) == 0xE) {
      length = 3;
      cp = b & 0x0F;
    } else if ((b >> 3) == 0x1E) {
      length = 4;
      cp = b & 0x07;
    } else {
      return std::nullopt;
    }
    if (i + length > s.size()) return std::nullopt;
    for (size_t k = 1; k < length; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < kMin[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return std::nullopt;
    }
    i += length;
    ++count;
  }
  return count;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed) {}

  uint64_t Next() { return rng_(); }
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Coin(int percent = 50) { return Uniform(0, 99) < percent; }

  uint32_t CodePoint() {
    switch (Uniform(0, 3)) {
      case 0:
        return static_cast<uint32_t>(Uniform(0, 0x7F));
      case 1:
        return static_cast<uint32_t>(Uniform(0x80, 0x7FF));
      case 2: {
        uint32_t cp;
        do cp = static_cast<uint32_t>(Uniform(0x800, 0xFFFF));
        while (cp >= 0xD800 && cp <= 0xDFFF);
        return cp;
      }
      default:
        return static_cast<uint32_t>(Uniform(0x10000, 0x10FFFF));
    }
  }

  // Well-formed UTF-8 of `*count` code points.
  std::string ValidUtf8(int64_t max_code_points, int64_t* count) {
    *count = Uniform(0, max_code_points);
    std::string out;
    for (int64_t i = 0; i < *count; ++i) AppendUtf8(CodePoint(), out);
    return out;
  }

  std::string RandomBytes(int64_t max_len) {
    std::string out(static_cast<size_t>(Uniform(0, max_len)), '\0');
    // Bias towards the interesting bytes: lead bytes, continuations, the edges of the ranges.
    static constexpr unsigned char kInteresting[] = {0x00, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xC2,
                                                     0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5,
                                                     0xFF, 0x9F, 0xA0, 0x8F, 0x90};
    for (char& c : out) {
      c = Coin(40) ? static_cast<char>(kInteresting[Uniform(0, std::size(kInteresting) - 1)])
                   : static_cast<char>(Uniform(0, 255));
    }
    return out;
  }

  // Mostly valid text, sometimes long, sometimes damaged.
  std::string Text() {
    int64_t count = 0;
    switch (Uniform(0, 5)) {
      case 0:
        return "";
      case 1:
        return RandomBytes(16);
      case 2:
        return std::string(static_cast<size_t>(Uniform(990, 1010)), 'a');
      case 3: {
        std::string s;
        const int64_t n = Uniform(995, 1005);
        for (int64_t i = 0; i < n; ++i) s += "\xC3\xA9";
        return s;
      }
      default: {
        std::string s = ValidUtf8(40, &count);
        if (!s.empty() && Coin(20)) {
          s[static_cast<size_t>(Uniform(0, static_cast<int64_t>(s.size()) - 1))] =
              static_cast<char>(Uniform(0x80, 0xFF));
        }
        return s;
      }
    }
  }

  template <typename T>
  T Pick(const std::vector<T>& choices) {
    return choices[static_cast<size_t>(Uniform(0, static_cast<int64_t>(choices.size()) - 1))];
  }

  int32_t Int32() {
    return Pick<int32_t>({0,
                          1,
                          -1,
                          7,
                          8,
                          50,
                          63,
                          64,
                          150,
                          151,
                          1000,
                          1001,
                          1024,
                          2048,
                          2049,
                          32768,
                          32769,
                          std::numeric_limits<int32_t>::max(),
                          std::numeric_limits<int32_t>::min(),
                          static_cast<int32_t>(Uniform(-5000, 5000))});
  }

  double Double() {
    return Pick<double>(
        {0.0, -0.0, 0.5, 1.0, 1.0000001, 2.0, 2.0000001, -1e-9, 1e308,
         std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
         -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::denorm_min(),
         static_cast<double>(Uniform(-300, 300)) / 100.0});
  }

  std::string Url() {
    static const std::vector<std::string> kPieces = {
        "http://", "https://", "HTTPS://", "ftp://",  "//",         ":",   "@",   "[",
        "]",       "::1",      "/",        "?",       "#",          "%",   "%20", ".",
        "..",      "-",        "_",        "example", "com",        "127", "0",   "1",
        "255",     "256",      "0x7f",     "65535",   "65536",      "a",   " ",   "\\",
        "\t",      "\xC3\xA9", "\xFF",     "fe80::1", "2001:db8::1"};
    std::string out;
    if (Coin(70)) out += Pick<std::string>({"http://", "https://"});
    const int64_t n = Uniform(0, 12);
    for (int64_t i = 0; i < n; ++i) out += Pick(kPieces);
    return out;
  }

 private:
  std::mt19937_64 rng_;
};

// What every error of validation must look like: INVALID_ARGUMENT with a non-empty BadRequest
// whose first violation is the message, or NOT_FOUND naming the model; a message that is valid
// UTF-8 (it goes into JSON); and a lossless trip through google.rpc.Status.
void ExpectWellFormedError(const absl::Status& status) {
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(IsValidUtf8(std::string(status.message()))) << absl::CHexEscape(status.message());
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    std::optional<google::rpc::BadRequest> bad = GetBadRequest(status);
    ASSERT_TRUE(bad.has_value());
    ASSERT_GT(bad->field_violations_size(), 0);
    EXPECT_LE(static_cast<size_t>(bad->field_violations_size()), kMaxViolations);
    EXPECT_EQ(status.message(), absl::StrCat(bad->field_violations(0).field(), ": ",
                                             bad->field_violations(0).description()));
    for (const auto& v : bad->field_violations()) {
      EXPECT_FALSE(v.field().empty());
      EXPECT_TRUE(IsValidUtf8(v.description()));
    }
  } else {
    ASSERT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    ASSERT_TRUE(GetErrorInfo(status).has_value());
    EXPECT_EQ(GetErrorInfo(status)->reason(), kModelNotFoundReason);
    EXPECT_EQ(ErrorField(status), "model");
  }
  EXPECT_EQ(FromRpcStatus(ToRpcStatus(status)), status);
}

TEST(Utf8FuzzTest, GeneratedValidTextAlwaysCountsItsCodePoints) {
  Fuzzer fuzz(Seed());
  for (int i = 0; i < 20000; ++i) {
    int64_t expected = 0;
    const std::string text = fuzz.ValidUtf8(64, &expected);
    absl::StatusOr<int64_t> count = CountCodePoints(text);
    ASSERT_OK(count) << absl::CHexEscape(text);
    ASSERT_EQ(*count, expected) << absl::CHexEscape(text);
    ASSERT_TRUE(IsValidUtf8(text));
  }
}

TEST(Utf8FuzzTest, RandomBytesAgreeWithTheReference) {
  Fuzzer fuzz(Seed() + 1);
  int valid = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::string bytes = fuzz.RandomBytes(i % 3 == 0 ? 40 : 6);
    const std::optional<int64_t> expected = ReferenceCount(bytes);
    const absl::StatusOr<int64_t> count = CountCodePoints(bytes);
    ASSERT_EQ(count.ok(), expected.has_value()) << absl::CHexEscape(bytes) << " " << count.status();
    ASSERT_EQ(IsValidUtf8(bytes), expected.has_value());
    if (expected.has_value()) {
      ASSERT_EQ(*count, *expected) << absl::CHexEscape(bytes);
      ++valid;
    }
  }
  EXPECT_GT(valid, 1000);  // the generator does reach valid text
}

TEST(Utf8FuzzTest, DamagedValidTextAgreesWithTheReference) {
  Fuzzer fuzz(Seed() + 2);
  for (int i = 0; i < 50000; ++i) {
    int64_t n = 0;
    std::string text = fuzz.ValidUtf8(20, &n);
    if (text.empty()) continue;
    const int damage = static_cast<int>(fuzz.Uniform(1, 3));
    for (int d = 0; d < damage; ++d) {
      const size_t at = static_cast<size_t>(fuzz.Uniform(0, static_cast<int64_t>(text.size()) - 1));
      switch (fuzz.Uniform(0, 2)) {
        case 0:
          text[at] = static_cast<char>(fuzz.Uniform(0, 255));
          break;
        case 1:
          text.erase(at, 1);
          break;
        default:
          text.insert(at, 1, static_cast<char>(fuzz.Uniform(0x80, 0xFF)));
      }
      if (text.empty()) break;
    }
    const std::optional<int64_t> expected = ReferenceCount(text);
    const absl::StatusOr<int64_t> count = CountCodePoints(text);
    ASSERT_EQ(count.ok(), expected.has_value()) << absl::CHexEscape(text);
    if (expected.has_value()) {
      ASSERT_EQ(*count, *expected);
    }
  }
}

TEST(ValidationFuzzTest, RandomChatRequestsNeverCrashAndAreConsistent) {
  Fuzzer fuzz(Seed() + 3);
  const Catalogue catalogue = *Catalogue::Create(DefaultModels());
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    anyai::v1::ChatCompletionRequest r;
    r.set_model(fuzz.Pick<std::string>({"", "gpt-4o", "llama-3-8b-chat", "GPT-4o", "nope",
                                        std::string("\xFF\x00", 2), "sparkdesk"}));
    const int64_t messages = fuzz.Coin(95) ? fuzz.Uniform(0, 6) : fuzz.Uniform(250, 260);
    for (int64_t m = 0; m < messages; ++m) {
      anyai::v1::ChatMessage* message = r.add_messages();
      message->set_role(fuzz.Coin(85) ? fuzz.Pick<std::string>({"user", "assistant", "system"})
                                      : fuzz.Pick<std::string>({"", "tool", "User", "\xC3"}));
      message->set_content(fuzz.Coin(80) ? "hello" : fuzz.Text());
    }
    if (fuzz.Coin()) r.set_max_tokens(fuzz.Int32());
    if (fuzz.Coin()) r.set_temperature(fuzz.Double());
    if (fuzz.Coin()) r.set_top_p(fuzz.Double());
    if (fuzz.Coin()) r.set_top_k(fuzz.Int32());
    if (fuzz.Coin()) r.set_stream(fuzz.Coin());
    const int64_t max_chars = fuzz.Pick<int64_t>({0, 1000, 5000});

    absl::StatusOr<const ModelInfo*> result = ValidateChatCompletion(r, catalogue, max_chars);
    if (!result.ok()) {
      ExpectWellFormedError(result.status());
      continue;
    }
    ++ok;
    // An accepted request obeys every rule, checked here the plain way.
    ASSERT_NE(*result, nullptr);
    EXPECT_EQ((*result)->id, r.model());
    ASSERT_GE(r.messages_size(), 1);
    ASSERT_LE(r.messages_size(), kDefaultMaxMessages);
    for (int m = 0; m < r.messages_size(); ++m) {
      const auto& message = r.messages(m);
      EXPECT_TRUE(message.role() == "user" || message.role() == "assistant" ||
                  (message.role() == "system" && m == 0));
      const std::optional<int64_t> chars = ReferenceCount(message.content());
      ASSERT_TRUE(chars.has_value());
      EXPECT_LE(*chars, max_chars);
      if (message.role() != "assistant") {
        EXPECT_FALSE(message.content().empty());
      }
    }
    if (r.has_max_tokens()) {
      EXPECT_TRUE(r.max_tokens() >= 1 && r.max_tokens() <= 32768);
    }
    if (r.has_temperature()) {
      EXPECT_TRUE(r.temperature() >= 0 && r.temperature() <= 2);
    }
    if (r.has_top_p()) {
      EXPECT_TRUE(r.top_p() >= 0 && r.top_p() <= 1);
    }
    if (r.has_top_k()) {
      EXPECT_TRUE(r.top_k() >= 0 && r.top_k() <= 1000);
    }
  }
  EXPECT_GT(ok, 100);
}

TEST(ValidationFuzzTest, RandomImageRequestsNeverCrashAndDefaultsStayValid) {
  Fuzzer fuzz(Seed() + 4);
  const EndpointModels models = DefaultImageGenerationModels();
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    anyai::v1::GenerateImagesRequest r;
    r.set_prompt(fuzz.Coin(70) ? "a cat" : fuzz.Text());
    r.set_model(fuzz.Pick<std::string>({"", "", "dall-e-2", "dall-e-3", "sdxl", "\xFF"}));
    if (fuzz.Coin())
      r.set_n(fuzz.Coin() ? static_cast<int32_t>(fuzz.Uniform(-1, 12)) : fuzz.Int32());
    r.set_quality(fuzz.Pick<std::string>({"", "standard", "hd", "HD", "ultra"}));
    r.set_response_format(fuzz.Pick<std::string>({"", "url", "b64_json", "png"}));
    r.set_size(fuzz.Pick<std::string>(
        {"", "256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1x1", "1024X1024"}));
    const absl::Status status = ValidateGenerateImages(r, models, 1000);
    if (!status.ok()) {
      ExpectWellFormedError(status);
      continue;
    }
    ++ok;
    ApplyGenerateImagesDefaults(&r, models);
    EXPECT_OK(ValidateGenerateImages(r, models, 1000)) << r.ShortDebugString();
    EXPECT_TRUE(models.Contains(r.model()));
    EXPECT_GE(r.n(), 1);
    EXPECT_LE(r.n(), kMaxImagesPerRequest);
  }
  EXPECT_GT(ok, 100);
}

TEST(ValidationFuzzTest, RandomImagineRequestsNeverCrashAndDefaultsStayValid) {
  Fuzzer fuzz(Seed() + 5);
  const EndpointModels models = DefaultImagineModels();
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    anyai::v1::ImagineRequest r;
    r.set_prompt(fuzz.Coin(70) ? "a fox" : fuzz.Text());
    if (fuzz.Coin()) r.set_negative_prompt(fuzz.Text());
    r.set_model(
        fuzz.Pick<std::string>({"", "sdxl", "pluto", "pluto", "dall-e-2", "dall-e-3", "x"}));
    if (fuzz.Coin(30))
      r.set_width(fuzz.Coin() ? 8 * static_cast<int32_t>(fuzz.Uniform(0, 300)) : fuzz.Int32());
    if (fuzz.Coin(30)) r.set_height(fuzz.Int32());
    if (fuzz.Coin(30)) r.set_steps(fuzz.Int32());
    if (fuzz.Coin(30)) {
      r.set_seed(fuzz.Pick<int64_t>({0, -1, 123456, std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max()}));
    }
    const absl::Status status = ValidateImagine(r, models, 1000);
    if (!status.ok()) {
      ExpectWellFormedError(status);
      continue;
    }
    ++ok;
    const bool pluto = models.Resolve(r.model()) == kPluto;
    if (pluto) {
      EXPECT_FALSE(r.has_width() || r.has_height() || r.has_steps() || r.has_seed());
    }
    ApplyImagineDefaults(&r, models);
    EXPECT_TRUE(models.Contains(r.model()));
    EXPECT_TRUE(r.width() >= 64 && r.width() <= 2048 && r.width() % 8 == 0);
    EXPECT_TRUE(r.height() >= 64 && r.height() <= 2048 && r.height() % 8 == 0);
    EXPECT_TRUE(r.steps() >= 1 && r.steps() <= 150);
    if (!pluto) {
      EXPECT_OK(ValidateImagine(r, models, 1000)) << r.ShortDebugString();
    }
  }
  EXPECT_GT(ok, 100);
}

TEST(ValidationFuzzTest, RandomUrlsNeverCrashAndAcceptedOnesReparse) {
  Fuzzer fuzz(Seed() + 6);
  const EndpointModels models = DefaultVisionModels();
  int ok = 0;
  for (int i = 0; i < 50000; ++i) {
    const std::string url = fuzz.Coin(90) ? fuzz.Url() : fuzz.RandomBytes(30);
    anyai::v1::DescribeImageRequest r;
    r.set_url(url);
    const absl::Status status = ValidateDescribeImage(r, models);
    absl::StatusOr<net::Url> parsed = ParseHttpUrl(url);
    if (!status.ok()) {
      ExpectWellFormedError(status);
      EXPECT_FALSE(parsed.ok()) << url;
      continue;
    }
    ++ok;
    ASSERT_OK(parsed) << url;
    EXPECT_TRUE(parsed->scheme == "http" || parsed->scheme == "https");
    EXPECT_FALSE(parsed->host.name.empty());
    EXPECT_TRUE(parsed->port >= 1 && parsed->port <= 65535);
    EXPECT_EQ(parsed->PathAndQuery().front(), '/');
    // What the fetcher would rebuild parses to the same thing.
    const std::string rebuilt = absl::StrCat(parsed->scheme, "://", parsed->host.ToString(), ":",
                                             parsed->port, parsed->PathAndQuery());
    absl::StatusOr<net::Url> again = ParseHttpUrl(rebuilt);
    ASSERT_OK(again) << url << " -> " << rebuilt;
    EXPECT_EQ(again->host, parsed->host);
    EXPECT_EQ(again->port, parsed->port);
    EXPECT_EQ(again->PathAndQuery(), parsed->PathAndQuery());
    if (parsed->host.address.has_value()) (void)parsed->host.address->IsPublic();
  }
  EXPECT_GT(ok, 100);
}

// The address parser of server/net/, which the SSRF guard applies to every resolved address.
TEST(ValidationFuzzTest, AddressParsingNeverCrashesOnRandomText) {
  Fuzzer fuzz(Seed() + 7);
  for (int i = 0; i < 50000; ++i) {
    std::string text = fuzz.Coin() ? fuzz.RandomBytes(50) : fuzz.Url();
    absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(text);
    if (ip.ok()) {
      (void)ip->IsPublic();
      ASSERT_EQ(*net::IpAddress::Parse(ip->ToString()), *ip) << text;
    }
  }
  // An IPv4 address is judged the same bare and IPv4-mapped.
  for (int i = 0; i < 20000; ++i) {
    const std::string v4 = absl::StrCat(fuzz.Uniform(0, 255), ".", fuzz.Uniform(0, 255), ".",
                                        fuzz.Uniform(0, 255), ".", fuzz.Uniform(0, 255));
    ASSERT_EQ(net::IpAddress::Parse(v4)->IsPublic(),
              net::IpAddress::Parse("::ffff:" + v4)->IsPublic())
        << v4;
  }
}

TEST(ValidationFuzzTest, RandomAskPromptsAgreeWithTheReference) {
  Fuzzer fuzz(Seed() + 8);
  for (int i = 0; i < 20000; ++i) {
    anyai::v1::AskRequest r;
    r.set_prompt(fuzz.Text());
    const absl::Status status = ValidateAsk(r, 1000);
    const std::optional<int64_t> chars = ReferenceCount(r.prompt());
    const bool expected_ok = chars.has_value() && *chars >= 1 && *chars <= 1000;
    ASSERT_EQ(status.ok(), expected_ok) << absl::CHexEscape(r.prompt()) << " " << status;
    if (!status.ok()) ExpectWellFormedError(status);
  }
}

}  // namespace
}  // namespace anyai::server
