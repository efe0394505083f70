// The model catalogue: which chat models exist (ListModels, `GET /v1/models`), who owns them,
// and which feature class a request for each counts against (SPEC §2). The compiled-in default
// is the seed's `/models` list verbatim (DefaultModels()); a config may replace it.
//
// Also the model lists of the non-chat endpoints (image generation, imagine, vision), whose
// `model` values are not chat models and so are not in the catalogue; their compiled-in
// defaults are those written in proto/anyai/v1/config.proto's ServerConfig comments.
//
//   absl::StatusOr<Catalogue> catalogue = Catalogue::Create(DefaultModels());
//   if (const ModelInfo* m = catalogue->Resolve("claude-3-opus")) { ... m->feature_class ... }
//
// Aliases: an undated name stands for the newest dated model of its family, as providers
// resolve them ("claude-3-opus" -> "claude-3-opus-20240229"): derived from the catalogue, for
// every family whose undated name is not itself an id. A date suffix is "-YYYYMMDD" or
// "-YYYY-MM-DD" (years 2000-2099) or OpenAI's "-MMDD", with a real month and day; the newest
// member has the latest written date (an "-MMDD" has none), then the latest `created`, then the
// greatest id. A config may add aliases or override the derived ones.
//
// Thread safety: a Catalogue and an EndpointModels are immutable once built; any number of
// threads may read them concurrently.
#ifndef ANYAI_SERVER_GATEWAY_CATALOGUE_H_
#define ANYAI_SERVER_GATEWAY_CATALOGUE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace anyai::server {

// The provider of a model or endpoint whose config names none: the offline stand-in (SPEC §5).
inline constexpr char kBuiltinProvider[] = "builtin";

// The most a price may be, in micro-USD per million tokens: $1 per token. Keeps a call's exact
// cost (tokens times price) far inside 128 bits, and catches a price written per token.
inline constexpr int64_t kMaxMicroUsdPerMillionTokens = int64_t{1'000'000'000'000};

// One chat model.
struct ModelInfo {
  std::string id;             // what requests name, e.g. "gpt-4o"; case-sensitive
  std::string owned_by;       // as ListModels shows it, e.g. "openai"
  int64_t created = 0;        // seconds since the Unix epoch; 0 when unknown
  std::string feature_class;  // "llm", "closed_llm", or a class the config defines
  std::string provider;       // the ProviderConfig name that answers it, e.g. "builtin"
  // Prices in micro-USD per million tokens (2500000 is $2.50 per million), for spend windows:
  // 0 to kMaxMicroUsdPerMillionTokens; 0, the default of every seed model, costs nothing.
  int64_t input_micro_usd_per_million_tokens = 0;   // prompt tokens
  int64_t output_micro_usd_per_million_tokens = 0;  // completion tokens

  friend bool operator==(const ModelInfo&, const ModelInfo&) = default;
};

// What `prompt_tokens` and `completion_tokens` of `model` cost, in micro-USD: the exact cost
// rounded up (a call is never charged less than it cost), saturating at INT64_MAX. A negative
// token count counts as 0. Free models (both prices 0) cost 0.
int64_t PriceMicroUsd(const ModelInfo& model, int64_t prompt_tokens, int64_t completion_tokens);

// SPEC §2's default class of a chat model id: "closed_llm" for every id starting with "gpt-",
// "claude-" or "gemini-" and for "sparkdesk" (case-sensitive), "llm" for every other id. The
// same rule fills an empty ModelConfig.feature_class.
std::string DefaultFeatureClass(std::string_view model_id);

// The seed's `/models` list, verbatim and in its order (103 models: ids, owned_by with the
// seed's own spellings such as "anthorpic" and "Snoflake", created), each with its
// DefaultFeatureClass and provider "builtin".
std::vector<ModelInfo> DefaultModels();

// An immutable, indexed list of chat models.
class Catalogue {
 public:
  // An explicit alias: `alias` names the model `model`.
  struct Alias {
    std::string alias;
    std::string model;
  };

  // InvalidArgument, naming the entry ("models[3].id: ...", "model_aliases[0].alias: ..."),
  // when an id is empty or repeated, a feature_class is empty, a price is outside
  // [0, kMaxMicroUsdPerMillionTokens], or an alias is empty, repeated, an id itself, or names
  // no model. The provider may be empty (the config resolves it).
  static absl::StatusOr<Catalogue> Create(std::vector<ModelInfo> models,
                                          std::vector<Alias> aliases = {});

  // The model with exactly this id (case-sensitive), or nullptr. O(1). The pointer is valid as
  // long as the Catalogue is alive and not moved from or assigned to.
  const ModelInfo* Find(std::string_view id) const;
  // The model a request naming `name` gets: the model with that id, else the one the alias
  // `name` stands for, else nullptr. O(1).
  const ModelInfo* Resolve(std::string_view name) const;
  // Every alias (derived and configured) and the id it stands for.
  absl::flat_hash_map<std::string, std::string> aliases() const;

  // Every model, in catalogue order (the order ListModels shows).
  const std::vector<ModelInfo>& models() const { return models_; }
  size_t size() const { return models_.size(); }

 private:
  Catalogue() = default;

  std::vector<ModelInfo> models_;
  absl::flat_hash_map<std::string, size_t> index_;         // id -> position in models_
  absl::flat_hash_map<std::string, std::string> aliases_;  // alias -> id
  absl::flat_hash_map<std::string, size_t> alias_index_;   // alias -> position in models_
};

// The `model` values one non-chat endpoint accepts, and the one used when a request names none.
struct EndpointModels {
  std::vector<std::string> models;
  std::string default_model;  // one of `models`

  // Whether `model` is one of `models` (exact, case-sensitive).
  bool Contains(std::string_view model) const;
  // `requested`, or default_model when `requested` is empty.
  std::string_view Resolve(std::string_view requested) const;
};

// Model names of the non-chat endpoints.
inline constexpr char kDallE2[] = "dall-e-2";
inline constexpr char kDallE3[] = "dall-e-3";
inline constexpr char kSdxl[] = "sdxl";
inline constexpr char kPluto[] = "pluto";  // Imagine: accepts only prompt and negative_prompt
inline constexpr char kGpt4o[] = "gpt-4o";
inline constexpr char kGpt4oMini[] = "gpt-4o-mini";
inline constexpr char kGeminiProVision[] = "gemini-pro-vision";

// The model each non-chat endpoint uses when a request names none and the config sets no
// default_model: the defaults anyai.proto documents for an absent `model`. This header is their
// one owner: the Default*Models() lists below take them, and the providers fall back to them
// for a request that reaches them with no model (the gateway normally fills it first).
inline constexpr std::string_view kDefaultImageGenerationModel = kDallE3;
inline constexpr std::string_view kDefaultImagineModel = kSdxl;
inline constexpr std::string_view kDefaultVisionModel = kGeminiProVision;

// `/v1/images/generations`: {"dall-e-3", "dall-e-2"}, default kDefaultImageGenerationModel.
EndpointModels DefaultImageGenerationModels();
// `/v1/imagine`: {"sdxl", "pluto", "dall-e-2", "dall-e-3"}, default kDefaultImagineModel.
EndpointModels DefaultImagineModels();
// `/v1/images/vision`: {"gpt-4o", "gpt-4o-mini", "gemini-pro-vision"}, default
// kDefaultVisionModel.
EndpointModels DefaultVisionModels();

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_CATALOGUE_H_
