#include "server/gateway/catalogue.h"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

// The closed-source models of the seed's /models list, by SPEC §2's rule (gpt-*, claude-*,
// gemini-*, sparkdesk): 20 of the 103.
const std::vector<std::string> kClosedModels = {
    "claude-3-haiku-20240307",
    "claude-3-sonnet-20240229",
    "claude-3-5-sonnet-20240620",
    "claude-3-opus-20240229",
    "gpt-4",
    "gpt-4-0613",
    "gpt-4-turbo",
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-mini",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-1106",
    "gpt-3.5-turbo-16k",
    "gpt-3.5-turbo-0613",
    "gpt-3.5-turbo-16k-0613",
    "gpt-4o",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
    "gemini-1.0-pro",
    "sparkdesk",
};

TEST(DefaultModelsTest, HasTheSeedsHundredAndThreeModels) {
  EXPECT_EQ(DefaultModels().size(), 103u);
}

TEST(DefaultModelsTest, KeepsTheSeedsOrderAndRowsVerbatim) {
  const std::vector<ModelInfo> models = DefaultModels();
  ASSERT_EQ(models.size(), 103u);
  EXPECT_EQ(models[0], (ModelInfo{"claude-3-haiku-20240307", "anthorpic", 1686935002, "closed_llm",
                                  "builtin"}));
  EXPECT_EQ(models[15], (ModelInfo{"gpt-4o", "openai", 1686935002, "closed_llm", "builtin"}));
  EXPECT_EQ(models[16], (ModelInfo{"llama-3-70b-chat", "meta-llama", 0, "llm", "builtin"}));
  EXPECT_EQ(models[81], (ModelInfo{"snowflake-arctic-instruct", "Snoflake", 0, "llm", "builtin"}));
  EXPECT_EQ(models[93], (ModelInfo{"chronos-hermes-13b", "Autism", 0, "llm", "builtin"}));
  EXPECT_EQ(models[94], (ModelInfo{"Llama-Guard-7b", "Meta-Llama", 0, "llm", "builtin"}));
  EXPECT_EQ(models[99], (ModelInfo{"gemini-1.5-pro", "google/getlazy.ai", 1686935002, "closed_llm",
                                   "builtin"}));
  EXPECT_EQ(models[101], (ModelInfo{"command-r+", "cohere", 0, "llm", "builtin"}));
  EXPECT_EQ(models[102], (ModelInfo{"sparkdesk", "iFlytek", 0, "closed_llm", "builtin"}));
}

TEST(DefaultModelsTest, ClassesFollowTheClosedSourceRule) {
  std::vector<std::string> closed;
  int llm = 0;
  for (const ModelInfo& m : DefaultModels()) {
    if (m.feature_class == "closed_llm") {
      closed.push_back(m.id);
    } else {
      EXPECT_EQ(m.feature_class, "llm") << m.id;
      ++llm;
    }
    EXPECT_EQ(m.provider, "builtin") << m.id;
  }
  EXPECT_THAT(closed, UnorderedElementsAreArray(kClosedModels));
  EXPECT_EQ(llm, 83);
}

TEST(DefaultModelsTest, CreatedIsTheSeedsPerOwner) {
  std::set<std::string> dated;
  for (const ModelInfo& m : DefaultModels()) {
    if (m.created != 0) {
      EXPECT_EQ(m.created, 1686935002) << m.id;
      dated.insert(m.owned_by);
    }
  }
  EXPECT_EQ(dated, (std::set<std::string>{"anthorpic", "openai", "google/getlazy.ai"}));
}

TEST(DefaultFeatureClassTest, GemmaIsNotGeminiAndCaseMatters) {
  EXPECT_EQ(DefaultFeatureClass("gemma-7b-it"), "llm");
  EXPECT_EQ(DefaultFeatureClass("gemini-2.0"), "closed_llm");
  EXPECT_EQ(DefaultFeatureClass("GPT-4"), "llm");
  EXPECT_EQ(DefaultFeatureClass("gpt4"), "llm");
  EXPECT_EQ(DefaultFeatureClass("sparkdesk-2"), "llm");
  EXPECT_EQ(DefaultFeatureClass("sparkdesk"), "closed_llm");
  EXPECT_EQ(DefaultFeatureClass("claude-"), "closed_llm");
}

TEST(CatalogueTest, FindsEveryDefaultModelExactly) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create(DefaultModels());
  ASSERT_OK(catalogue);
  ASSERT_EQ(catalogue->size(), 103u);
  for (const ModelInfo& m : DefaultModels()) {
    const ModelInfo* found = catalogue->Find(m.id);
    ASSERT_NE(found, nullptr) << m.id;
    EXPECT_EQ(*found, m);
  }
  EXPECT_EQ(catalogue->Find("GPT-4O"), nullptr);
  EXPECT_EQ(catalogue->Find("gpt-4o "), nullptr);
  EXPECT_EQ(catalogue->Find(""), nullptr);
  EXPECT_EQ(catalogue->Find("dall-e-3"), nullptr);
}

TEST(CatalogueTest, ModelsStayInCatalogueOrder) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create(
      {{"b", "x", 0, "llm", ""}, {"a", "y", 1, "closed_llm", "up"}, {"c", "z", 2, "mine", ""}});
  ASSERT_OK(catalogue);
  std::vector<std::string> ids;
  for (const ModelInfo& m : catalogue->models()) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre("b", "a", "c"));
  ASSERT_NE(catalogue->Find("c"), nullptr);
  EXPECT_EQ(catalogue->Find("c")->feature_class, "mine");
}

TEST(CatalogueTest, SurvivesCopyAndMove) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create(DefaultModels());
  ASSERT_OK(catalogue);
  Catalogue copy = *catalogue;
  Catalogue moved = std::move(*catalogue);
  ASSERT_NE(copy.Find("sparkdesk"), nullptr);
  EXPECT_EQ(copy.Find("sparkdesk")->owned_by, "iFlytek");
  ASSERT_NE(moved.Find("phi-2"), nullptr);
  EXPECT_EQ(moved.Find("phi-2")->owned_by, "microsoft");
}

TEST(CatalogueTest, RefusesDuplicateIds) {
  EXPECT_THAT(Catalogue::Create({{"a", "", 0, "llm", ""}, {"a", "", 0, "llm", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].id")));
}

TEST(CatalogueTest, RefusesEmptyIdAndEmptyClass) {
  EXPECT_THAT(Catalogue::Create({{"", "o", 0, "llm", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[0].id")));
  EXPECT_THAT(Catalogue::Create({{"a", "o", 0, "llm", ""}, {"b", "o", 0, "", ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].feature_class")));
}

TEST(CatalogueTest, AnEmptyCatalogueIsAllowed) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create({});
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->Find("gpt-4"), nullptr);
}

TEST(CatalogueAliasTest, UndatedNamesResolveToTheNewestDatedModelOfTheirFamily) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create(DefaultModels());
  ASSERT_OK(catalogue);
  for (const auto& [alias, model] : std::vector<std::pair<std::string, std::string>>{
           {"claude-3-opus", "claude-3-opus-20240229"},
           {"claude-3-sonnet", "claude-3-sonnet-20240229"},
           {"claude-3-haiku", "claude-3-haiku-20240307"},
           {"claude-3-5-sonnet", "claude-3-5-sonnet-20240620"}}) {
    SCOPED_TRACE(alias);
    EXPECT_EQ(catalogue->Find(alias), nullptr);  // not a model of its own
    ASSERT_NE(catalogue->Resolve(alias), nullptr);
    EXPECT_EQ(catalogue->Resolve(alias)->id, model);
  }
  // Undated names that are models themselves stay themselves.
  EXPECT_EQ(catalogue->Resolve("gpt-4")->id, "gpt-4");
  EXPECT_EQ(catalogue->Resolve("gpt-4o-mini")->id, "gpt-4o-mini");
  EXPECT_EQ(catalogue->Resolve("gpt-3.5-turbo")->id, "gpt-3.5-turbo");
  EXPECT_EQ(catalogue->Resolve("claude-3"), nullptr);
  EXPECT_EQ(catalogue->aliases().size(), 4u) << "derived from the seed's catalogue";
}

TEST(CatalogueAliasTest, TheNewestIsTheOneCreatedLastWhateverTheDateFormat) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create({{"m-0613", "o", 300, "llm", ""},
                                                           {"m-1106", "o", 200, "llm", ""},
                                                           {"n-2024-01-01", "o", 100, "llm", ""},
                                                           {"n-2024-06-01", "o", 100, "llm", ""},
                                                           {"v-1.5", "o", 900, "llm", ""}});
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->Resolve("m")->id, "m-0613");        // created last, though "older" text
  EXPECT_EQ(catalogue->Resolve("n")->id, "n-2024-06-01");  // same time: the greater date
  EXPECT_EQ(catalogue->Resolve("v"), nullptr);             // "1.5" is no date
}

TEST(CatalogueAliasTest, ConfiguredAliasesAddNamesAndOverrideDerivedOnes) {
  absl::StatusOr<Catalogue> catalogue = Catalogue::Create(
      DefaultModels(),
      {{"opus", "claude-3-opus-20240229"}, {"claude-3-5-sonnet", "claude-3-sonnet-20240229"}});
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->Resolve("opus")->id, "claude-3-opus-20240229");
  EXPECT_EQ(catalogue->Resolve("claude-3-5-sonnet")->id, "claude-3-sonnet-20240229");
}

TEST(CatalogueAliasTest, RefusesAliasesThatAreIdsNameNothingOrRepeat) {
  EXPECT_THAT(Catalogue::Create(DefaultModels(), {{"gpt-4", "gpt-4o"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_aliases[0].alias")));
  EXPECT_THAT(Catalogue::Create(DefaultModels(), {{"x", "gpt-17"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_aliases[0].model")));
  EXPECT_THAT(Catalogue::Create(DefaultModels(), {{"x", "gpt-4"}, {"x", "gpt-4o"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_aliases[1].alias")));
  EXPECT_THAT(Catalogue::Create(DefaultModels(), {{"", "gpt-4"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_aliases[0].alias")));
}

TEST(EndpointModelsTest, DefaultsMatchTheConfigSchema) {
  const EndpointModels images = DefaultImageGenerationModels();
  EXPECT_THAT(images.models, ElementsAre("dall-e-3", "dall-e-2"));
  EXPECT_EQ(images.default_model, "dall-e-3");

  const EndpointModels imagine = DefaultImagineModels();
  EXPECT_THAT(imagine.models, ElementsAre("sdxl", "pluto", "dall-e-2", "dall-e-3"));
  EXPECT_EQ(imagine.default_model, "sdxl");

  const EndpointModels vision = DefaultVisionModels();
  EXPECT_THAT(vision.models, ElementsAre("gpt-4o", "gpt-4o-mini", "gemini-pro-vision"));
  EXPECT_EQ(vision.default_model, "gemini-pro-vision");
}

// The named defaults (what the providers fall back to) and the lists' defaults are one value.
TEST(EndpointModelsTest, ListDefaultsAreTheNamedDefaultsAndInTheirLists) {
  EXPECT_EQ(DefaultImageGenerationModels().default_model, kDefaultImageGenerationModel);
  EXPECT_EQ(DefaultImagineModels().default_model, kDefaultImagineModel);
  EXPECT_EQ(DefaultVisionModels().default_model, kDefaultVisionModel);
  EXPECT_TRUE(DefaultImageGenerationModels().Contains(kDefaultImageGenerationModel));
  EXPECT_TRUE(DefaultImagineModels().Contains(kDefaultImagineModel));
  EXPECT_TRUE(DefaultVisionModels().Contains(kDefaultVisionModel));
}

TEST(EndpointModelsTest, ContainsIsExactAndResolveFallsBackToTheDefault) {
  const EndpointModels vision = DefaultVisionModels();
  EXPECT_TRUE(vision.Contains("gpt-4o"));
  EXPECT_FALSE(vision.Contains("GPT-4o"));
  EXPECT_FALSE(vision.Contains(""));
  EXPECT_EQ(vision.Resolve(""), "gemini-pro-vision");
  EXPECT_EQ(vision.Resolve("gpt-4o"), "gpt-4o");
}

// --- Prices ---

ModelInfo Priced(int64_t input, int64_t output) {
  ModelInfo m{"m", "me", 0, "closed_llm", "builtin"};
  m.input_micro_usd_per_million_tokens = input;
  m.output_micro_usd_per_million_tokens = output;
  return m;
}

TEST(PriceMicroUsdTest, IsTheExactCostRoundedUp) {
  // gpt-4o at $2.50 / $10 per million: 1000 prompt and 500 completion tokens cost $0.0075.
  EXPECT_EQ(PriceMicroUsd(Priced(2500000, 10000000), 1000, 500), 7500);
  // One token at $0.15 per million is 0.15 micro-USD: charged 1, never 0.
  EXPECT_EQ(PriceMicroUsd(Priced(150000, 600000), 1, 0), 1);
  EXPECT_EQ(PriceMicroUsd(Priced(150000, 600000), 0, 1), 1);
  // 0.15 + 0.6 = 0.75 micro-USD: rounded up once, over the sum, not per term.
  EXPECT_EQ(PriceMicroUsd(Priced(150000, 600000), 1, 1), 1);
  EXPECT_EQ(PriceMicroUsd(Priced(150000, 600000), 10, 10), 8);              // 7.5
  EXPECT_EQ(PriceMicroUsd(Priced(1000000, 0), 1000000, 1000000), 1000000);  // exact: no + 1
}

TEST(PriceMicroUsdTest, FreeModelsAndNoTokensCostNothing) {
  EXPECT_EQ(PriceMicroUsd(Priced(0, 0), 1000000, 1000000), 0);
  EXPECT_EQ(PriceMicroUsd(Priced(2500000, 10000000), 0, 0), 0);
  EXPECT_EQ(PriceMicroUsd(Priced(2500000, 10000000), -5, -7), 0) << "negative counts as 0";
  EXPECT_EQ(PriceMicroUsd(Priced(2500000, 10000000), -5, 100), 1000);
}

TEST(PriceMicroUsdTest, SaturatesInsteadOfOverflowing) {
  constexpr int64_t kMost = std::numeric_limits<int64_t>::max();
  const ModelInfo dear = Priced(kMaxMicroUsdPerMillionTokens, kMaxMicroUsdPerMillionTokens);
  EXPECT_EQ(PriceMicroUsd(dear, kMost, kMost), kMost);
  // Just below the edge the figure is exact: $1 per token, so micro-USD = 10^6 per token.
  EXPECT_EQ(PriceMicroUsd(dear, 1000000, 0), int64_t{1000000} * 1000000);
}

TEST(CatalogueTest, RefusesAPriceOutsideItsRangeNamingIt) {
  std::vector<ModelInfo> models = {Priced(0, 0)};
  models[0].output_micro_usd_per_million_tokens = -1;
  EXPECT_THAT(Catalogue::Create(models),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[0].output_micro_usd_per_million_tokens: -1")));
  models[0] = Priced(kMaxMicroUsdPerMillionTokens + 1, 0);
  EXPECT_THAT(Catalogue::Create(models),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[0].input_micro_usd_per_million_tokens")));
  models[0] = Priced(kMaxMicroUsdPerMillionTokens, kMaxMicroUsdPerMillionTokens);
  EXPECT_TRUE(Catalogue::Create(models).ok());
}

}  // namespace
}  // namespace anyai::server
