#include "server/gateway/validation.h"

#include <cmath>
#include <limits>
#include <optional>
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
#include "server/net/url.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Eq;
using ::testing::HasSubstr;

constexpr int64_t kFree = 1000;     // free plan's max_message_chars
constexpr int64_t kPremium = 5000;  // premium plan's

std::string Repeat(const std::string& unit, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += unit;
  return out;
}

// The fields the BadRequest of `status` names, in order (empty when it has none).
std::vector<std::string> BadFields(const absl::Status& status) {
  std::vector<std::string> fields;
  if (std::optional<google::rpc::BadRequest> bad = GetBadRequest(status)) {
    for (const auto& v : bad->field_violations()) fields.push_back(v.field());
  }
  return fields;
}

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}
absl::Status StatusOf(const absl::Status& s) { return s; }

// Expects INVALID_ARGUMENT whose BadRequest names exactly `fields`.
#define EXPECT_INVALID(expr, ...)                                                            \
  do {                                                                                       \
    const absl::Status status_ = StatusOf(expr);                                             \
    EXPECT_THAT(status_, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));        \
    EXPECT_THAT(BadFields(status_), ElementsAreArray(std::vector<std::string>{__VA_ARGS__})) \
        << status_;                                                                          \
  } while (0)

class ChatValidationTest : public ::testing::Test {
 protected:
  ChatValidationTest() : catalogue_(*Catalogue::Create(DefaultModels())) {}

  static anyai::v1::ChatCompletionRequest Good() {
    anyai::v1::ChatCompletionRequest r;
    r.set_model("claude-3-opus-20240229");
    AddMessage(r, "system", "Be brief.");
    AddMessage(r, "user", "Hello");
    AddMessage(r, "assistant", "Hi!");
    AddMessage(r, "user", "How are you?");
    r.set_max_tokens(2048);
    r.set_stream(false);
    r.set_temperature(0.7);
    r.set_top_p(0.5);
    r.set_top_k(0);
    return r;
  }

  static void AddMessage(anyai::v1::ChatCompletionRequest& r, const std::string& role,
                         const std::string& content) {
    anyai::v1::ChatMessage* m = r.add_messages();
    m->set_role(role);
    m->set_content(content);
  }

  absl::StatusOr<const ModelInfo*> Validate(const anyai::v1::ChatCompletionRequest& r,
                                            int64_t max_chars = kFree,
                                            int max_messages = kDefaultMaxMessages) {
    return ValidateChatCompletion(r, catalogue_, max_chars, max_messages);
  }

  Catalogue catalogue_;
};

TEST_F(ChatValidationTest, AcceptsTheSeedsExampleAndReturnsTheModel) {
  absl::StatusOr<const ModelInfo*> model = Validate(Good());
  ASSERT_OK(model);
  EXPECT_EQ((*model)->id, "claude-3-opus-20240229");
  EXPECT_EQ((*model)->feature_class, "closed_llm");
}

TEST_F(ChatValidationTest, AcceptsAMinimalRequest) {
  anyai::v1::ChatCompletionRequest r;
  r.set_model("llama-3-8b-chat");
  AddMessage(r, "user", "hi");
  absl::StatusOr<const ModelInfo*> model = Validate(r);
  ASSERT_OK(model);
  EXPECT_EQ((*model)->feature_class, "llm");
}

TEST_F(ChatValidationTest, AcceptsTheBoundaries) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.set_max_tokens(1);
  r.set_temperature(0);
  r.set_top_p(0);
  r.set_top_k(0);
  EXPECT_OK(Validate(r));
  r.set_max_tokens(32768);
  r.set_temperature(2);
  r.set_top_p(1);
  r.set_top_k(1000);
  EXPECT_OK(Validate(r));
}

TEST_F(ChatValidationTest, RequiresAModel) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.clear_model();
  EXPECT_INVALID(Validate(r), "model");
}

TEST_F(ChatValidationTest, UnknownModelIsNotFound) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.set_model("gpt-5");
  EXPECT_THAT(Validate(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gpt-5")));
  r.set_model("GPT-4o");
  EXPECT_THAT(Validate(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("GPT-4o")));
  r.set_model("dall-e-3");  // an image model is not a chat model
  EXPECT_THAT(Validate(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("dall-e-3")));
}

TEST_F(ChatValidationTest, BadFieldsWinOverAnUnknownModel) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.set_model("gpt-5");
  r.set_max_tokens(0);
  EXPECT_INVALID(Validate(r), "max_tokens");
}

TEST_F(ChatValidationTest, RefusesNoMessages) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.clear_messages();
  EXPECT_INVALID(Validate(r), "messages");
}

TEST_F(ChatValidationTest, RefusesTooManyMessages) {
  anyai::v1::ChatCompletionRequest r;
  r.set_model("gpt-4o");
  for (int i = 0; i < 256; ++i) AddMessage(r, "user", "x");
  EXPECT_OK(Validate(r));
  AddMessage(r, "user", "x");
  EXPECT_INVALID(Validate(r), "messages");
  EXPECT_THAT(Validate(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("257 messages, more than the 256 allowed")));
  EXPECT_OK(Validate(r, kFree, /*max_messages=*/300));
  EXPECT_INVALID(Validate(Good(), kFree, /*max_messages=*/3), "messages");
}

TEST_F(ChatValidationTest, RefusesUnknownRoles) {
  for (const char* role : {"tool", "function", "User", "SYSTEM", "developer", " user"}) {
    anyai::v1::ChatCompletionRequest r = Good();
    r.mutable_messages(1)->set_role(role);
    EXPECT_INVALID(Validate(r), "messages[1].role");
  }
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(2)->clear_role();
  EXPECT_INVALID(Validate(r), "messages[2].role");
}

TEST_F(ChatValidationTest, RefusesASystemMessageAnywhereButFirst) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(3)->set_role("system");
  EXPECT_INVALID(Validate(r), "messages[3].role");
  EXPECT_THAT(Validate(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only as the first message")));

  anyai::v1::ChatCompletionRequest twice = Good();
  twice.mutable_messages(1)->set_role("system");
  EXPECT_INVALID(Validate(twice), "messages[1].role");

  anyai::v1::ChatCompletionRequest only_system;
  only_system.set_model("gpt-4o");
  AddMessage(only_system, "system", "You are terse.");
  EXPECT_OK(Validate(only_system));
}

TEST_F(ChatValidationTest, RequiresUserAndSystemContentButNotAssistant) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(0)->clear_content();
  r.mutable_messages(1)->clear_content();
  r.mutable_messages(2)->clear_content();  // assistant: allowed
  EXPECT_INVALID(Validate(r), "messages[0].content", "messages[1].content");
}

TEST_F(ChatValidationTest, CountsCodePointsNotBytes) {
  anyai::v1::ChatCompletionRequest r;
  r.set_model("llama-3-8b-chat");
  AddMessage(r, "user", Repeat("é", 1000));  // 2000 bytes
  EXPECT_OK(Validate(r, kFree));
  r.mutable_messages(0)->set_content(Repeat("é", 1001));
  EXPECT_INVALID(Validate(r, kFree), "messages[0].content");
  EXPECT_THAT(Validate(r, kFree),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("messages[0].content: 1001 characters (Unicode code points), more "
                          "than the plan's limit of 1000")));
  EXPECT_OK(Validate(r, kPremium));

  r.mutable_messages(0)->set_content(Repeat("\xF0\x9F\x98\x80", 1000));  // 😀, 4000 bytes
  EXPECT_OK(Validate(r, kFree));
  r.mutable_messages(0)->set_content(Repeat("\xF0\x9F\x98\x80", 1001));
  EXPECT_INVALID(Validate(r, kFree), "messages[0].content");

  r.mutable_messages(0)->set_content(Repeat("a", 5000));
  EXPECT_OK(Validate(r, kPremium));
  r.mutable_messages(0)->set_content(Repeat("a", 5001));
  EXPECT_INVALID(Validate(r, kPremium), "messages[0].content");
}

TEST_F(ChatValidationTest, TheLimitAppliesToEveryMessageIncludingAssistant) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(0)->set_content(Repeat("x", 1001));
  r.mutable_messages(2)->set_content(Repeat("x", 1001));
  EXPECT_INVALID(Validate(r), "messages[0].content", "messages[2].content");
}

TEST_F(ChatValidationTest, RefusesInvalidUtf8AsItsOwnError) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(1)->set_content(std::string("ok \xC0\xAF", 5));
  EXPECT_INVALID(Validate(r), "messages[1].content");
  EXPECT_THAT(Validate(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid UTF-8")));
  r.mutable_messages(1)->set_content("\xED\xA0\x80");  // a surrogate
  EXPECT_INVALID(Validate(r), "messages[1].content");
  r.mutable_messages(2)->set_content("\xE2\x82");  // truncated, assistant
  EXPECT_INVALID(Validate(r), "messages[1].content", "messages[2].content");
}

TEST_F(ChatValidationTest, RefusesOutOfRangeMaxTokens) {
  for (int32_t v :
       {0, -1, 32769, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()}) {
    anyai::v1::ChatCompletionRequest r = Good();
    r.set_max_tokens(v);
    EXPECT_INVALID(Validate(r), "max_tokens");
  }
}

TEST_F(ChatValidationTest, RefusesOutOfRangeOrNonFiniteSampling) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double v : {-0.01, 2.01, nan, inf, -inf}) {
    anyai::v1::ChatCompletionRequest r = Good();
    r.set_temperature(v);
    EXPECT_INVALID(Validate(r), "temperature");
  }
  for (double v : {-0.01, 1.01, nan, inf}) {
    anyai::v1::ChatCompletionRequest r = Good();
    r.set_top_p(v);
    EXPECT_INVALID(Validate(r), "top_p");
  }
  for (int32_t v : {-1, 1001}) {
    anyai::v1::ChatCompletionRequest r = Good();
    r.set_top_k(v);
    EXPECT_INVALID(Validate(r), "top_k");
  }
}

TEST_F(ChatValidationTest, ReportsEveryBadFieldInFieldOrder) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.clear_model();
  r.mutable_messages(1)->set_role("tool");
  r.mutable_messages(3)->set_content("");
  r.set_max_tokens(0);
  r.set_temperature(9);
  r.set_top_p(-1);
  r.set_top_k(-1);
  EXPECT_INVALID(Validate(r), "model", "messages[1].role", "messages[3].content", "max_tokens",
                 "temperature", "top_p", "top_k");
  EXPECT_THAT(Validate(r), StatusIs(absl::StatusCode::kInvalidArgument, Eq("model: required")));
}

TEST_F(ChatValidationTest, CapsTheNumberOfViolations) {
  anyai::v1::ChatCompletionRequest r;
  r.set_model("gpt-4o");
  for (int i = 0; i < 200; ++i) AddMessage(r, "bogus", "");
  const absl::Status status = Validate(r).status();
  EXPECT_EQ(BadFields(status).size(), kMaxViolations);
}

TEST_F(ChatValidationTest, ARefusedRoleIsEchoedSafely) {
  anyai::v1::ChatCompletionRequest r = Good();
  r.mutable_messages(1)->set_role("\xff\"x");
  const absl::Status status = Validate(r).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\\xff")));
  EXPECT_TRUE(IsValidUtf8(std::string(status.message())));
}

// ---- GenerateImages ----

anyai::v1::GenerateImagesRequest GoodImages() {
  anyai::v1::GenerateImagesRequest r;
  r.set_prompt("A futuristic cityscape");
  r.set_model("dall-e-3");
  r.set_n(1);
  r.set_quality("hd");
  r.set_response_format("url");
  r.set_size("1024x1024");
  return r;
}

absl::Status ValidateImages(const anyai::v1::GenerateImagesRequest& r, int64_t max_chars = kFree) {
  return ValidateGenerateImages(r, DefaultImageGenerationModels(), max_chars);
}

TEST(GenerateImagesValidationTest, AcceptsTheSeedsExampleAndAPromptAlone) {
  EXPECT_OK(ValidateImages(GoodImages()));
  anyai::v1::GenerateImagesRequest r;
  r.set_prompt("a cat");
  EXPECT_OK(ValidateImages(r));
}

TEST(GenerateImagesValidationTest, RequiresAPromptWithinThePlansLimit) {
  anyai::v1::GenerateImagesRequest r = GoodImages();
  r.clear_prompt();
  EXPECT_INVALID(ValidateImages(r), "prompt");
  r.set_prompt(Repeat("ü", 1000));
  EXPECT_OK(ValidateImages(r));
  r.set_prompt(Repeat("ü", 1001));
  EXPECT_INVALID(ValidateImages(r), "prompt");
  EXPECT_OK(ValidateImages(r, kPremium));
  r.set_prompt("\xff");
  EXPECT_INVALID(ValidateImages(r), "prompt");
}

TEST(GenerateImagesValidationTest, ModelMustBeAnImageModel) {
  anyai::v1::GenerateImagesRequest r = GoodImages();
  r.set_model("dall-e-2");
  EXPECT_OK(ValidateImages(r));
  r.set_model("sdxl");
  EXPECT_THAT(ValidateImages(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("sdxl")));
  r.set_model("gpt-4o");
  EXPECT_THAT(ValidateImages(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gpt-4o")));
}

TEST(GenerateImagesValidationTest, NIsOneToTenAndOneForDallE3) {
  anyai::v1::GenerateImagesRequest r = GoodImages();
  r.set_model("dall-e-2");
  r.set_n(10);
  r.set_size("512x512");
  EXPECT_OK(ValidateImages(r));
  for (int32_t n : {0, -1, 11}) {
    r.set_n(n);
    EXPECT_INVALID(ValidateImages(r), "n");
  }
  r = GoodImages();
  r.set_n(2);
  EXPECT_INVALID(ValidateImages(r), "n");
  r.clear_model();  // dall-e-3 by default
  EXPECT_INVALID(ValidateImages(r), "n");
}

TEST(GenerateImagesValidationTest, RefusesUnknownQualityFormatAndSize) {
  anyai::v1::GenerateImagesRequest r = GoodImages();
  r.set_quality("HD");
  r.set_response_format("png");
  r.set_size("1000x1000");
  EXPECT_INVALID(ValidateImages(r), "quality", "response_format", "size");
  r = GoodImages();
  r.set_quality("standard");
  r.set_response_format("b64_json");
  EXPECT_OK(ValidateImages(r));
}

TEST(GenerateImagesValidationTest, SizesFollowTheModel) {
  anyai::v1::GenerateImagesRequest r = GoodImages();
  for (const char* size : {"1024x1024", "1792x1024", "1024x1792"}) {
    r.set_size(size);
    EXPECT_OK(ValidateImages(r)) << size;
  }
  for (const char* size : {"256x256", "512x512"}) {
    r.set_size(size);
    EXPECT_INVALID(ValidateImages(r), "size");
  }
  r.set_model("dall-e-2");
  for (const char* size : {"256x256", "512x512", "1024x1024"}) {
    r.set_size(size);
    EXPECT_OK(ValidateImages(r)) << size;
  }
  r.set_size("1792x1024");
  EXPECT_INVALID(ValidateImages(r), "size");

  // A configured model of another name takes any of the five sizes.
  EndpointModels custom{{"my-model"}, "my-model"};
  r.set_model("my-model");
  r.set_n(4);
  for (const char* size : {"256x256", "1792x1024"}) {
    r.set_size(size);
    EXPECT_OK(ValidateGenerateImages(r, custom, kFree)) << size;
  }
}

TEST(GenerateImagesValidationTest, DefaultsFillWhatWasLeftOut) {
  anyai::v1::GenerateImagesRequest r;
  r.set_prompt("x");
  ApplyGenerateImagesDefaults(&r, DefaultImageGenerationModels());
  EXPECT_EQ(r.model(), "dall-e-3");
  EXPECT_EQ(r.n(), 1);
  EXPECT_EQ(r.quality(), "standard");
  EXPECT_EQ(r.response_format(), "url");
  EXPECT_EQ(r.size(), "1024x1024");
  EXPECT_OK(ValidateImages(r));

  anyai::v1::GenerateImagesRequest kept = GoodImages();
  ApplyGenerateImagesDefaults(&kept, DefaultImageGenerationModels());
  EXPECT_EQ(kept.quality(), "hd");
}

// ---- Imagine ----

absl::Status ValidateImagineFree(const anyai::v1::ImagineRequest& r) {
  return ValidateImagine(r, DefaultImagineModels(), kFree);
}

anyai::v1::ImagineRequest GoodImagine() {
  anyai::v1::ImagineRequest r;
  r.set_prompt("A beautiful landscape");
  r.set_negative_prompt("rain");
  r.set_width(1024);
  r.set_height(1024);
  r.set_steps(50);
  r.set_seed(123456);
  r.set_model("sdxl");
  return r;
}

TEST(ImagineValidationTest, AcceptsTheSeedsExample) {
  EXPECT_OK(ValidateImagineFree(GoodImagine()));
}

TEST(ImagineValidationTest, AcceptsEveryListedModelAndTheBoundaries) {
  for (const char* model : {"", "sdxl", "dall-e-2", "dall-e-3"}) {
    anyai::v1::ImagineRequest r = GoodImagine();
    r.set_model(model);
    r.set_width(64);
    r.set_height(2048);
    r.set_steps(1);
    r.set_seed(0);
    EXPECT_OK(ValidateImagineFree(r)) << model;
    r.set_steps(150);
    r.set_seed(std::numeric_limits<int64_t>::max());
    EXPECT_OK(ValidateImagineFree(r)) << model;
  }
}

TEST(ImagineValidationTest, RequiresAPromptAndLimitsBothTexts) {
  anyai::v1::ImagineRequest r = GoodImagine();
  r.clear_prompt();
  EXPECT_INVALID(ValidateImagineFree(r), "prompt");
  r = GoodImagine();
  r.set_negative_prompt(Repeat("日", 1001));
  EXPECT_INVALID(ValidateImagineFree(r), "negative_prompt");
  r.set_negative_prompt(Repeat("日", 1000));
  r.set_prompt(Repeat("日", 1000));
  EXPECT_OK(ValidateImagineFree(r));
  r.set_negative_prompt("\xC3");
  EXPECT_INVALID(ValidateImagineFree(r), "negative_prompt");
}

TEST(ImagineValidationTest, RefusesOutOfRangeSizesStepsAndSeed) {
  struct Case {
    const char* field;
    void (*apply)(anyai::v1::ImagineRequest&);
  };
  const Case cases[] = {
      {"width", [](anyai::v1::ImagineRequest& r) { r.set_width(56); }},
      {"width", [](anyai::v1::ImagineRequest& r) { r.set_width(2056); }},
      {"width", [](anyai::v1::ImagineRequest& r) { r.set_width(1001); }},
      {"width", [](anyai::v1::ImagineRequest& r) { r.set_width(0); }},
      {"width", [](anyai::v1::ImagineRequest& r) { r.set_width(-1024); }},
      {"height", [](anyai::v1::ImagineRequest& r) { r.set_height(63); }},
      {"height", [](anyai::v1::ImagineRequest& r) { r.set_height(4096); }},
      {"height", [](anyai::v1::ImagineRequest& r) { r.set_height(1020); }},
      {"steps", [](anyai::v1::ImagineRequest& r) { r.set_steps(0); }},
      {"steps", [](anyai::v1::ImagineRequest& r) { r.set_steps(151); }},
      {"seed", [](anyai::v1::ImagineRequest& r) { r.set_seed(-1); }},
  };
  for (const Case& c : cases) {
    anyai::v1::ImagineRequest r = GoodImagine();
    c.apply(r);
    EXPECT_INVALID(ValidateImagineFree(r), c.field);
  }
}

TEST(ImagineValidationTest, UnknownModelIsNotFound) {
  anyai::v1::ImagineRequest r = GoodImagine();
  r.set_model("midjourney");
  EXPECT_THAT(ValidateImagineFree(r),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("midjourney")));
  r.set_model("Pluto");
  EXPECT_THAT(ValidateImagineFree(r), StatusIs(absl::StatusCode::kNotFound, HasSubstr("Pluto")));
}

TEST(ImagineValidationTest, PlutoAcceptsOnlyPromptAndNegativePrompt) {
  anyai::v1::ImagineRequest r;
  r.set_model("pluto");
  r.set_prompt("a fox");
  r.set_negative_prompt("snow");
  EXPECT_OK(ValidateImagineFree(r));

  r.set_width(1024);  // even the default value is refused: pluto takes no size at all
  EXPECT_INVALID(ValidateImagineFree(r), "width");
  EXPECT_THAT(ValidateImagineFree(r),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("width: pluto accepts only prompt and negative_prompt")));
  r.set_height(512);
  r.set_steps(50);
  r.set_seed(1);
  EXPECT_INVALID(ValidateImagineFree(r), "width", "height", "steps", "seed");
}

TEST(ImagineValidationTest, PlutoCanBeTheConfiguredDefault) {
  EndpointModels pluto_first{{"pluto", "sdxl"}, "pluto"};
  anyai::v1::ImagineRequest r;
  r.set_prompt("a fox");
  r.set_seed(7);
  EXPECT_INVALID(ValidateImagine(r, pluto_first, kFree), "seed");
}

TEST(ImagineValidationTest, DefaultsFillSizeStepsAndModel) {
  anyai::v1::ImagineRequest r;
  r.set_prompt("x");
  ASSERT_OK(ValidateImagineFree(r));
  ApplyImagineDefaults(&r, DefaultImagineModels());
  EXPECT_EQ(r.model(), "sdxl");
  EXPECT_EQ(r.width(), 1024);
  EXPECT_EQ(r.height(), 1024);
  EXPECT_EQ(r.steps(), 50);
  EXPECT_FALSE(r.has_seed());

  anyai::v1::ImagineRequest pluto;
  pluto.set_prompt("x");
  pluto.set_model("pluto");
  ASSERT_OK(ValidateImagineFree(pluto));
  ApplyImagineDefaults(&pluto, DefaultImagineModels());
  EXPECT_EQ(pluto.width(), 1024);
  EXPECT_EQ(pluto.height(), 1024);

  anyai::v1::ImagineRequest kept = GoodImagine();
  kept.set_width(512);
  ApplyImagineDefaults(&kept, DefaultImagineModels());
  EXPECT_EQ(kept.width(), 512);
  EXPECT_EQ(kept.seed(), 123456);
}

// ---- Ask ----

TEST(AskValidationTest, RequiresAPromptWithinThePlansLimit) {
  anyai::v1::AskRequest r;
  EXPECT_INVALID(ValidateAsk(r, kFree), "prompt");
  r.set_prompt("What is the tallest mountain?");
  EXPECT_OK(ValidateAsk(r, kFree));
  r.set_prompt(Repeat("\xF0\x9F\x8C\x8D", 1000));  // 🌍
  EXPECT_OK(ValidateAsk(r, kFree));
  r.set_prompt(Repeat("\xF0\x9F\x8C\x8D", 1001));
  EXPECT_INVALID(ValidateAsk(r, kFree), "prompt");
  r.set_prompt("\xF4\x90\x80\x80");  // above U+10FFFF
  EXPECT_INVALID(ValidateAsk(r, kFree), "prompt");
}

TEST(AskValidationTest, ZeroMaxCharsAcceptsNoText) {
  anyai::v1::AskRequest r;
  r.set_prompt("a");
  EXPECT_INVALID(ValidateAsk(r, 0), "prompt");
}

// ---- DescribeImage ----

absl::Status ValidateVision(const std::string& url, const std::string& model = "") {
  anyai::v1::DescribeImageRequest r;
  r.set_url(url);
  r.set_model(model);
  return ValidateDescribeImage(r, DefaultVisionModels());
}

TEST(DescribeImageValidationTest, AcceptsTheSeedsExampleAndEveryVisionModel) {
  EXPECT_OK(ValidateVision("https://example.com/image.png", "gemini-pro-vision"));
  EXPECT_OK(ValidateVision("https://example.com/image.png"));
  EXPECT_OK(ValidateVision("http://example.com/image.png", "gpt-4o"));
  EXPECT_OK(ValidateVision("HTTPS://Example.COM:8443/a/b.png?x=1&y=%20#frag", "gpt-4o-mini"));
  EXPECT_OK(ValidateVision("https://93.184.216.34/x.png"));
  EXPECT_OK(ValidateVision("https://[2606:2800:220:1::]/x.png"));
  EXPECT_OK(ValidateVision("https://cdn_1.example.com./x"));
}

TEST(DescribeImageValidationTest, RefusesBadUrls) {
  const std::vector<std::string> urls = {
      "",
      "example.com/image.png",
      "ftp://example.com/x.png",
      "file:///etc/passwd",
      "javascript:alert(1)",
      "https:/example.com/x",
      "https://",
      "https:///path",
      "https://user:pass@example.com/x.png",
      "https://user@example.com/x.png",
      "https://exa mple.com/x.png",
      "https://example.com/a b.png",
      " https://example.com/x.png",
      "https://example.com/x.png\n",
      "https://example.com\\@evil.com/",
      "https://exämple.com/x.png",
      "https://example.com:0/",
      "https://example.com:65536/",
      "https://example.com:/",
      "https://example.com:80:80/",
      "https://example..com/",
      "https://-/",
      "https://%65xample.com/",
      "https://2130706433/",
      "https://0x7f.0.0.1/",
      "https://127.1/",
      "https://127.000.0.1/",
      "https://256.1.1.1/",
      "https://[::1/",
      "https://[zz::1]/",
      "https://[fe80::1%25eth0]/",
      "https://[::1]x/",
      std::string("https://example.com/\0", 21),
  };
  for (const std::string& url : urls) {
    SCOPED_TRACE(absl::StrCat("url: ", absl::CHexEscape(url)));
    EXPECT_INVALID(ValidateVision(url), "url");
  }
}

TEST(DescribeImageValidationTest, LimitsTheUrlTo2048Bytes) {
  const std::string prefix = "https://example.com/";
  EXPECT_OK(ValidateVision(prefix + std::string(2048 - prefix.size(), 'a')));
  EXPECT_INVALID(ValidateVision(prefix + std::string(2049 - prefix.size(), 'a')), "url");
}

TEST(DescribeImageValidationTest, UnknownVisionModelIsNotFound) {
  EXPECT_THAT(ValidateVision("https://example.com/x.png", "gpt-4"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gpt-4")));
  EXPECT_INVALID(ValidateVision("not a url", "gpt-4"), "url");
}

TEST(DescribeImageValidationTest, DefaultsFillTheModel) {
  anyai::v1::DescribeImageRequest r;
  r.set_url("https://example.com/x.png");
  ApplyDescribeImageDefaults(&r, DefaultVisionModels());
  EXPECT_EQ(r.model(), "gemini-pro-vision");
}

// Private and loopback hosts are the fetcher's business (SPEC §5 allow-list), not validation's.
TEST(DescribeImageValidationTest, LeavesAddressPolicyToTheFetcher) {
  EXPECT_OK(ValidateVision("http://127.0.0.1/x.png"));
  EXPECT_OK(ValidateVision("http://[::1]:8080/x.png"));
  EXPECT_OK(ValidateVision("http://localhost/x.png"));
}

// The pieces themselves are net::Url's (tests/server/net/url_test.cc); this is the vision
// endpoint's policy on top.
TEST(ParseHttpUrlTest, SplitsForTheFetcher) {
  absl::StatusOr<net::Url> url = ParseHttpUrl("HTTPS://Example.COM:8443/a/b.png?x=1#frag");
  ASSERT_OK(url);
  EXPECT_EQ(url->scheme, "https");
  EXPECT_EQ(url->host.name, "example.com");
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->PathAndQuery(), "/a/b.png?x=1");
  EXPECT_FALSE(url->host.address.has_value());

  url = ParseHttpUrl("http://[2001:DB8::1]:81/p");
  ASSERT_OK(url);
  EXPECT_EQ(url->host.name, "2001:db8::1");
  EXPECT_TRUE(url->host.address.has_value());
  EXPECT_EQ(url->port, 81);
}

TEST(ParseHttpUrlTest, TakesOnlyHttpAndHttps) {
  EXPECT_OK(ParseHttpUrl("http://example.com/"));
  EXPECT_OK(ParseHttpUrl("HTTPS://example.com/"));
  for (const char* url : {"ftp://example.com/", "gopher://example.com:70/", "ws://example.com/"}) {
    EXPECT_THAT(ParseHttpUrl(url), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("absolute http or https URL")))
        << url;
  }
}

// ---- CountCodePoints ----

TEST(CountCodePointsTest, CountsCodePointsNotBytes) {
  EXPECT_EQ(*CountCodePoints(""), 0);
  EXPECT_EQ(*CountCodePoints("hello"), 5);
  EXPECT_EQ(*CountCodePoints("é"), 1);
  EXPECT_EQ(*CountCodePoints("日本語"), 3);
  EXPECT_EQ(*CountCodePoints("\xF0\x9F\x98\x80"), 1);
  EXPECT_EQ(*CountCodePoints(std::string("a\0b", 3)), 3);
  EXPECT_EQ(*CountCodePoints("\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80"
                             "\xF4\x8F\xBF\xBF"),
            6);  // the lowest and highest of every length
  EXPECT_EQ(*CountCodePoints(Repeat("abcdefgh", 100) + "é" + Repeat("x", 7)), 808);
}

TEST(CountCodePointsTest, RefusesIllFormedUtf8) {
  for (const std::string& bad : {
           std::string("\x80"),                  // stray continuation
           std::string("\xBF"),                  // stray continuation
           std::string("\xC0\x80"),              // overlong NUL
           std::string("\xC1\xBF"),              // overlong
           std::string("\xE0\x80\x80"),          // overlong 3-byte
           std::string("\xE0\x9F\xBF"),          // overlong 3-byte
           std::string("\xF0\x80\x80\x80"),      // overlong 4-byte
           std::string("\xF0\x8F\xBF\xBF"),      // overlong 4-byte
           std::string("\xED\xA0\x80"),          // U+D800
           std::string("\xED\xBF\xBF"),          // U+DFFF
           std::string("\xF4\x90\x80\x80"),      // U+110000
           std::string("\xF5\x80\x80\x80"),      // lead byte F5
           std::string("\xFF"),                  // never in UTF-8
           std::string("\xFE"),                  // never in UTF-8
           std::string("\xC3"),                  // truncated at end
           std::string("\xE2\x82"),              // truncated at end
           std::string("\xF0\x9F\x98"),          // truncated at end
           std::string("\xC3x"),                 // continuation missing
           std::string("\xE2\x82x"),             // continuation missing
           std::string("\xF0\x9F\x98\xC3\xA9"),  // interrupted by a new lead byte
           std::string("abcdefgh\x80"),          // after the ASCII fast path
       }) {
    EXPECT_THAT(CountCodePoints(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid UTF-8")))
        << absl::CHexEscape(bad);
    EXPECT_FALSE(IsValidUtf8(bad));
  }
}

TEST(CountCodePointsTest, NamesTheOffsetOfTheBadByte) {
  EXPECT_THAT(CountCodePoints("héllo\xC0"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("not valid UTF-8 (bad byte 0xc0 at offset 6)")));
}

}  // namespace
}  // namespace anyai::server
