// Tests for server/providers/builtin/builtin_provider.cc and server/gateway/token_count.cc: the
// builtin provider is deterministic, honest about its token counts, streams exactly what it answers
// whole, paints PNGs of the requested size and stops when its client goes away.
#include "server/providers/builtin/builtin_provider.h"

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/gateway/token_count.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr int64_t kNow = 1700000000;

absl::Time FixedNow() { return absl::FromUnixSeconds(kNow); }

v1::ChatCompletionRequest ChatRequest() {
  v1::ChatCompletionRequest request;
  request.set_model("llama-3-8b-chat");
  v1::ChatMessage* system = request.add_messages();
  system->set_role("system");
  system->set_content("You are terse.");
  v1::ChatMessage* user = request.add_messages();
  user->set_role("user");
  user->set_content("What is the capital of France, and why is it famous?");
  return request;
}

struct PngSize {
  uint32_t width = 0;
  uint32_t height = 0;
};

uint32_t BigEndian32(absl::string_view s, size_t at) {
  return static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

// The signature, then IHDR as the first chunk: its width and height.
PngSize ParsePngSize(absl::string_view png) {
  static constexpr char kSignature[] = "\x89PNG\r\n\x1a\n";
  EXPECT_GE(png.size(), 33u);
  if (png.size() < 33) return {};
  EXPECT_EQ(png.substr(0, 8), absl::string_view(kSignature, 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  return {BigEndian32(png, 16), BigEndian32(png, 20)};
}

std::vector<v1::ChatCompletionChunk> StreamAll(BuiltinProvider& provider,
                                               const v1::ChatCompletionRequest& request) {
  std::vector<v1::ChatCompletionChunk> chunks;
  EXPECT_OK(provider.StreamChat(request, [&](const v1::ChatCompletionChunk& chunk) {
    chunks.push_back(chunk);
    return true;
  }));
  return chunks;
}

// --- token_count.h ---

TEST(TokenCountTest, CountsWordsAndPunctuationSeparately) {
  EXPECT_EQ(CountTokens("Hello, world!"), 4);
  EXPECT_THAT(SplitTokens("Hello, world!"), ElementsAre("Hello", ",", " world", "!"));
}

TEST(TokenCountTest, SplitsLongWordsEveryEightCharacters) {
  EXPECT_THAT(SplitTokens("internationalization"), ElementsAre("internat", "ionaliza", "tion"));
}

TEST(TokenCountTest, WhitespaceJoinsTheNextTokenOrTheLastOne) {
  EXPECT_THAT(SplitTokens("  a\n\nb  "), ElementsAre("  a", "\n\nb  "));
  EXPECT_EQ(CountTokens(""), 0);
  EXPECT_EQ(CountTokens(" \t\n "), 0);
}

TEST(TokenCountTest, EveryNonAsciiCodePointIsOneToken) {
  EXPECT_THAT(SplitTokens("café 東京"), ElementsAre("caf", "é", " 東", "京"));
  // Invalid UTF-8: one token per byte, never past the end.
  EXPECT_EQ(CountTokens("\xE6\x9D"), 2);
}

TEST(TokenCountTest, TokensConcatenateToTheTextAndPrefixesKeepTheirCount) {
  for (absl::string_view text : {"Hello, world!", "  spaced   out\ttext  ", "a-b_c.d",
                                 "supercalifragilistic is long", "日本語 and English!"}) {
    const std::vector<absl::string_view> tokens = SplitTokens(text);
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      joined.append(tokens[i].data(), tokens[i].size());
      EXPECT_EQ(CountTokens(joined), static_cast<int>(i + 1)) << "prefix \"" << joined << "\"";
    }
    EXPECT_EQ(joined, text);
  }
}

// --- Chat ---

// A completion without its id, which is unique per completion by design.
v1::ChatCompletion WithoutId(v1::ChatCompletion c) {
  c.clear_id();
  return c;
}

TEST(BuiltinChatTest, AnswersDeterministically) {
  BuiltinProvider provider(FixedNow);
  BuiltinProvider other(FixedNow);
  absl::StatusOr<v1::ChatCompletion> a = provider.Chat(ChatRequest());
  absl::StatusOr<v1::ChatCompletion> b = other.Chat(ChatRequest());
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_TRUE(MessageDifferencer::Equals(WithoutId(*a), WithoutId(*b)))
      << a->DebugString() << b->DebugString();
}

TEST(BuiltinChatTest, FillsTheCompletionLikeOpenAi) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> c = provider.Chat(ChatRequest());
  ASSERT_OK(c);
  EXPECT_THAT(c->id(), MatchesRegex("chatcmpl-[0-9a-f]{16}"));
  EXPECT_EQ(c->object(), "chat.completion");
  EXPECT_EQ(c->created(), kNow);
  EXPECT_EQ(c->model(), "llama-3-8b-chat");
  EXPECT_EQ(c->system_fingerprint(), BuiltinProvider::kSystemFingerprint);
  ASSERT_EQ(c->choices_size(), 1);
  EXPECT_EQ(c->choices(0).index(), 0);
  EXPECT_EQ(c->choices(0).message().role(), "assistant");
  EXPECT_EQ(c->choices(0).finish_reason(), "stop");
}

TEST(BuiltinChatTest, SaysWhatItIsAndQuotesTheRequest) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> c = provider.Chat(ChatRequest());
  ASSERT_OK(c);
  const std::string& text = c->choices(0).message().content();
  EXPECT_THAT(text, HasSubstr("stand-in"));
  EXPECT_THAT(text, HasSubstr("not a language model"));
  EXPECT_THAT(text, HasSubstr("\"llama-3-8b-chat\""));
  EXPECT_THAT(text, HasSubstr("What is the capital of France, and why is it famous?"));
  EXPECT_THAT(text, HasSubstr("2 messages"));
}

TEST(BuiltinChatTest, EveryCompletionGetsItsOwnIdAndTheClockGivesCreated) {
  BuiltinProvider provider(FixedNow);
  v1::ChatCompletionRequest changed = ChatRequest();
  changed.mutable_messages(1)->set_content("Something else entirely.");
  absl::StatusOr<v1::ChatCompletion> a = provider.Chat(ChatRequest());
  absl::StatusOr<v1::ChatCompletion> b = provider.Chat(changed);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE(a->id(), b->id());

  BuiltinProvider later([] { return absl::FromUnixSeconds(kNow + 42); });
  absl::StatusOr<v1::ChatCompletion> c = later.Chat(ChatRequest());
  ASSERT_OK(c);
  EXPECT_EQ(c->created(), kNow + 42);
  EXPECT_NE(c->id(), a->id());  // every completion its own id, even of the same request
}

TEST(BuiltinChatTest, LongMessagesAreQuotedShortened) {
  BuiltinProvider provider(FixedNow);
  v1::ChatCompletionRequest request = ChatRequest();
  std::string long_text;
  for (int i = 0; i < 200; ++i) absl::StrAppend(&long_text, "word", i, " ");
  request.mutable_messages(1)->set_content(long_text);
  absl::StatusOr<v1::ChatCompletion> c = provider.Chat(request);
  ASSERT_OK(c);
  const std::string& text = c->choices(0).message().content();
  EXPECT_THAT(text, HasSubstr("word0 word1"));
  EXPECT_THAT(text, HasSubstr("…"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("word199")));
}

TEST(BuiltinChatTest, TokenCountsAddUp) {
  BuiltinProvider provider(FixedNow);
  const v1::ChatCompletionRequest request = ChatRequest();
  absl::StatusOr<v1::ChatCompletion> c = provider.Chat(request);
  ASSERT_OK(c);
  int prompt = 0;
  for (const v1::ChatMessage& m : request.messages()) prompt += CountTokens(m.content());
  EXPECT_EQ(c->usage().prompt_tokens(), prompt);
  EXPECT_EQ(c->usage().completion_tokens(), CountTokens(c->choices(0).message().content()));
  EXPECT_EQ(c->usage().total_tokens(), c->usage().prompt_tokens() + c->usage().completion_tokens());
  EXPECT_GT(c->usage().completion_tokens(), 20);
}

TEST(BuiltinChatTest, MaxTokensCutsTheAnswerWithFinishReasonLength) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> whole = provider.Chat(ChatRequest());
  ASSERT_OK(whole);
  v1::ChatCompletionRequest request = ChatRequest();
  request.set_max_tokens(5);
  absl::StatusOr<v1::ChatCompletion> cut = provider.Chat(request);
  ASSERT_OK(cut);
  const std::string& text = cut->choices(0).message().content();
  EXPECT_EQ(cut->choices(0).finish_reason(), "length");
  EXPECT_EQ(cut->usage().completion_tokens(), 5);
  EXPECT_EQ(CountTokens(text), 5);
  EXPECT_THAT(whole->choices(0).message().content(), StartsWith(text));
  EXPECT_EQ(cut->usage().total_tokens(), cut->usage().prompt_tokens() + 5);
}

TEST(BuiltinChatTest, MaxTokensAboveTheAnswerChangesNothingButTheId) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> whole = provider.Chat(ChatRequest());
  ASSERT_OK(whole);
  v1::ChatCompletionRequest request = ChatRequest();
  request.set_max_tokens(100000);
  absl::StatusOr<v1::ChatCompletion> roomy = provider.Chat(request);
  ASSERT_OK(roomy);
  EXPECT_EQ(roomy->choices(0).finish_reason(), "stop");
  EXPECT_EQ(roomy->choices(0).message().content(), whole->choices(0).message().content());
  EXPECT_EQ(roomy->usage().completion_tokens(), whole->usage().completion_tokens());
}

// --- StreamChat ---

TEST(BuiltinStreamChatTest, DeltasConcatenateToTheWholeAnswer) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> whole = provider.Chat(ChatRequest());
  ASSERT_OK(whole);
  const std::vector<v1::ChatCompletionChunk> chunks = StreamAll(provider, ChatRequest());
  ASSERT_GE(chunks.size(), 5u);

  std::string joined;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const v1::ChatCompletionChunk& chunk = chunks[i];
    EXPECT_EQ(chunk.id(), chunks[0].id());
    EXPECT_EQ(chunk.object(), "chat.completion.chunk");
    EXPECT_EQ(chunk.created(), kNow);
    EXPECT_EQ(chunk.model(), "llama-3-8b-chat");
    EXPECT_EQ(chunk.system_fingerprint(), BuiltinProvider::kSystemFingerprint);
    ASSERT_EQ(chunk.choices_size(), 1);
    const v1::ChatCompletionChunkChoice& choice = chunk.choices(0);
    EXPECT_EQ(choice.delta().has_role(), i == 0) << "chunk " << i;
    EXPECT_EQ(choice.has_finish_reason(), i + 1 == chunks.size()) << "chunk " << i;
    EXPECT_EQ(chunk.has_usage(), i + 1 == chunks.size()) << "chunk " << i;
    joined += choice.delta().content();
  }
  EXPECT_EQ(chunks.front().choices(0).delta().role(), "assistant");
  EXPECT_FALSE(chunks.back().choices(0).delta().has_content());
  EXPECT_EQ(chunks.back().choices(0).finish_reason(), "stop");
  EXPECT_TRUE(MessageDifferencer::Equals(chunks.back().usage(), whole->usage()));
  EXPECT_EQ(joined, whole->choices(0).message().content());
}

TEST(BuiltinStreamChatTest, StreamsTheCutAnswerUnderMaxTokens) {
  BuiltinProvider provider(FixedNow);
  v1::ChatCompletionRequest request = ChatRequest();
  request.set_max_tokens(7);
  absl::StatusOr<v1::ChatCompletion> whole = provider.Chat(request);
  ASSERT_OK(whole);
  const std::vector<v1::ChatCompletionChunk> chunks = StreamAll(provider, request);
  ASSERT_FALSE(chunks.empty());
  std::string joined;
  for (const v1::ChatCompletionChunk& chunk : chunks) joined += chunk.choices(0).delta().content();
  EXPECT_EQ(joined, whole->choices(0).message().content());
  EXPECT_EQ(chunks.back().choices(0).finish_reason(), "length");
  EXPECT_EQ(chunks.back().usage().completion_tokens(), 7);
}

TEST(BuiltinStreamChatTest, StopsWhenTheClientGoesAway) {
  BuiltinProvider provider(FixedNow);
  int calls = 0;
  absl::Status status = provider.StreamChat(ChatRequest(), [&](const v1::ChatCompletionChunk&) {
    ++calls;
    return calls < 2;
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled, HasSubstr("went away")));
  EXPECT_EQ(calls, 2);
}

// --- Imagine ---

TEST(BuiltinImagineTest, RendersAPngOfExactlyTheRequestedSize) {
  BuiltinProvider provider(FixedNow);
  v1::ImagineRequest request;
  request.set_prompt("a quiet lake at night");
  request.set_width(37);
  request.set_height(23);
  request.set_seed(7);
  absl::StatusOr<v1::ImagineResponse> r = provider.Imagine(request);
  ASSERT_OK(r);
  EXPECT_EQ(r->content_type(), "image/png");
  const PngSize size = ParsePngSize(r->image());
  EXPECT_EQ(size.width, 37u);
  EXPECT_EQ(size.height, 23u);
}

TEST(BuiltinImagineTest, DefaultsToTheSeedsSize) {
  BuiltinProvider provider(FixedNow);
  v1::ImagineRequest request;
  request.set_prompt("dawn over the desert");
  absl::StatusOr<v1::ImagineResponse> r = provider.Imagine(request);
  ASSERT_OK(r);
  const PngSize size = ParsePngSize(r->image());
  EXPECT_EQ(size.width, 1024u);
  EXPECT_EQ(size.height, 1024u);
}

TEST(BuiltinImagineTest, IsDeterministicInPromptAndSeed) {
  BuiltinProvider provider(FixedNow);
  v1::ImagineRequest request;
  request.set_prompt("snow on the hills");
  request.set_width(64);
  request.set_height(48);
  request.set_seed(123456);
  absl::StatusOr<v1::ImagineResponse> a = provider.Imagine(request);
  absl::StatusOr<v1::ImagineResponse> b = provider.Imagine(request);
  request.set_seed(123457);
  absl::StatusOr<v1::ImagineResponse> c = provider.Imagine(request);
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(c);
  EXPECT_EQ(a->image(), b->image());
  EXPECT_NE(a->image(), c->image());
}

// --- GenerateImages ---

TEST(BuiltinGenerateImagesTest, ReturnsNBase64PngsOfTheRequestedSize) {
  BuiltinProvider provider(FixedNow);
  v1::GenerateImagesRequest request;
  request.set_prompt("a futuristic cityscape");
  request.set_n(3);
  request.set_size("256x128");
  request.set_response_format("b64_json");
  absl::StatusOr<v1::GenerateImagesResponse> r = provider.GenerateImages(request);
  ASSERT_OK(r);
  EXPECT_EQ(r->created(), kNow);
  ASSERT_EQ(r->data_size(), 3);
  std::vector<std::string> pngs;
  for (const v1::Image& image : r->data()) {
    ASSERT_EQ(image.image_case(), v1::Image::kB64Json);
    std::string png;
    ASSERT_TRUE(absl::Base64Unescape(image.b64_json(), &png));
    const PngSize size = ParsePngSize(png);
    EXPECT_EQ(size.width, 256u);
    EXPECT_EQ(size.height, 128u);
    pngs.push_back(png);
  }
  EXPECT_NE(pngs[0], pngs[1]);
  EXPECT_NE(pngs[1], pngs[2]);
}

TEST(BuiltinGenerateImagesTest, DefaultsToOneDataUrlOf1024Square) {
  BuiltinProvider provider(FixedNow);
  v1::GenerateImagesRequest request;
  request.set_prompt("a futuristic cityscape");
  absl::StatusOr<v1::GenerateImagesResponse> r = provider.GenerateImages(request);
  ASSERT_OK(r);
  ASSERT_EQ(r->data_size(), 1);
  ASSERT_EQ(r->data(0).image_case(), v1::Image::kUrl);
  constexpr absl::string_view kPrefix = "data:image/png;base64,";
  ASSERT_THAT(r->data(0).url(), StartsWith(std::string(kPrefix)));
  std::string png;
  ASSERT_TRUE(absl::Base64Unescape(r->data(0).url().substr(kPrefix.size()), &png));
  const PngSize size = ParsePngSize(png);
  EXPECT_EQ(size.width, 1024u);
  EXPECT_EQ(size.height, 1024u);
}

TEST(BuiltinGenerateImagesTest, ScalesSizesAbove1024Down) {
  BuiltinProvider provider(FixedNow);
  v1::GenerateImagesRequest request;
  request.set_prompt("a wide panorama");
  request.set_size("1792x1024");
  request.set_response_format("b64_json");
  absl::StatusOr<v1::GenerateImagesResponse> r = provider.GenerateImages(request);
  ASSERT_OK(r);
  ASSERT_EQ(r->data_size(), 1);
  std::string png;
  ASSERT_TRUE(absl::Base64Unescape(r->data(0).b64_json(), &png));
  const PngSize size = ParsePngSize(png);
  EXPECT_EQ(size.width, 1024u);
  EXPECT_EQ(size.height, 585u);
}

TEST(BuiltinGenerateImagesTest, RefusesWhatValidationShouldHaveCaught) {
  BuiltinProvider provider(FixedNow);
  v1::GenerateImagesRequest request;
  request.set_prompt("x");
  request.set_size("big");
  EXPECT_THAT(provider.GenerateImages(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size")));
  request.set_size("");
  request.set_n(0);
  EXPECT_THAT(provider.GenerateImages(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("n")));
}

// --- Ask ---

TEST(BuiltinAskTest, EmitsSeveralChunksWithPlaceholderSources) {
  BuiltinProvider provider(FixedNow);
  v1::AskRequest request;
  request.set_prompt("How do sliding window rate limits work?");
  std::vector<v1::AskChunk> chunks;
  ASSERT_OK(provider.Ask(request, [&](const v1::AskChunk& chunk) {
    chunks.push_back(chunk);
    return true;
  }));
  ASSERT_THAT(chunks.size(), Ge(4u));
  EXPECT_THAT(chunks[0].message(), HasSubstr("stand-in"));
  EXPECT_EQ(chunks[0].url(),
            "https://example.com/search?q=How+do+sliding+window+rate+limits+work%3F");
  EXPECT_THAT(chunks[1].message(), HasSubstr("How do sliding window rate limits work?"));
  EXPECT_EQ(chunks[2].url(), "https://example.com/search?q=sliding");

  std::vector<v1::AskChunk> again;
  ASSERT_OK(provider.Ask(request, [&](const v1::AskChunk& chunk) {
    again.push_back(chunk);
    return true;
  }));
  ASSERT_EQ(again.size(), chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(chunks[i], again[i]));
  }
}

TEST(BuiltinAskTest, StopsWhenTheClientGoesAway) {
  BuiltinProvider provider(FixedNow);
  v1::AskRequest request;
  request.set_prompt("Why is the sky blue?");
  int calls = 0;
  EXPECT_THAT(provider.Ask(request,
                           [&](const v1::AskChunk&) {
                             ++calls;
                             return false;
                           }),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("went away")));
  EXPECT_EQ(calls, 1);
}

// --- DescribeImage ---

TEST(BuiltinDescribeImageTest, DescribesTheUrlAndNamesTheDefaultModel) {
  BuiltinProvider provider(FixedNow);
  v1::DescribeImageRequest request;
  request.set_url("https://Example.com:8443/photos/cat.png?size=large#top");
  absl::StatusOr<v1::DescribeImageResponse> r = provider.DescribeImage(request);
  ASSERT_OK(r);
  EXPECT_EQ(r->model(), "gemini-pro-vision");
  EXPECT_THAT(r->description(), HasSubstr("\"gemini-pro-vision\""));
  EXPECT_THAT(r->description(), HasSubstr("example.com"));
  EXPECT_THAT(r->description(), HasSubstr("/photos/cat.png"));
  EXPECT_THAT(r->description(), HasSubstr("PNG"));
  EXPECT_THAT(r->description(), HasSubstr("never downloads"));
  EXPECT_THAT(r->description(), ::testing::Not(HasSubstr("size=large")));
}

TEST(BuiltinDescribeImageTest, AnswersForTheRequestedModelWithoutFetching) {
  BuiltinProvider provider(FixedNow);
  v1::DescribeImageRequest request;
  // A metadata address: the builtin only reads the URL's text, so this is harmless.
  request.set_url("http://169.254.169.254/latest/meta-data");
  request.set_model("gpt-4o");
  absl::StatusOr<v1::DescribeImageResponse> r = provider.DescribeImage(request);
  ASSERT_OK(r);
  EXPECT_EQ(r->model(), "gpt-4o");
  EXPECT_THAT(r->description(), HasSubstr("169.254.169.254"));
}

// --- Concurrency ---

TEST(BuiltinProviderTest, ServesConcurrentCallersAlike) {
  BuiltinProvider provider(FixedNow);
  absl::StatusOr<v1::ChatCompletion> expected = provider.Chat(ChatRequest());
  ASSERT_OK(expected);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<v1::ChatCompletion> c = provider.Chat(ChatRequest());
        if (!c.ok() || !MessageDifferencer::Equals(WithoutId(*c), WithoutId(*expected))) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

}  // namespace
}  // namespace anyai::server
