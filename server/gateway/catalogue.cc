#include "server/gateway/catalogue.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "quota/plan.h"

namespace anyai::server {
namespace {

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct SeedRow {
  const char* id;
  const char* owned_by;
  int64_t created;
};

// The seed's `/models` response (../shared/seed/anyai-api.md), row for row and in its order,
// spellings included: it is the public catalogue clients already know.
constexpr SeedRow kSeedModels[] = {
    {"claude-3-haiku-20240307", "anthorpic", 1686935002},
    {"claude-3-sonnet-20240229", "anthorpic", 1686935002},
    {"claude-3-5-sonnet-20240620", "anthorpic", 1686935002},
    {"claude-3-opus-20240229", "anthorpic", 1686935002},
    {"gpt-4", "openai", 1686935002},
    {"gpt-4-0613", "openai", 1686935002},
    {"gpt-4-turbo", "openai", 1686935002},
    {"gpt-4o-mini-2024-07-18", "openai", 1686935002},
    {"gpt-4o-mini", "openai", 1686935002},
    {"gpt-3.5-turbo", "openai", 1686935002},
    {"gpt-3.5-turbo-0125", "openai", 1686935002},
    {"gpt-3.5-turbo-1106", "openai", 1686935002},
    {"gpt-3.5-turbo-16k", "openai", 1686935002},
    {"gpt-3.5-turbo-0613", "openai", 1686935002},
    {"gpt-3.5-turbo-16k-0613", "openai", 1686935002},
    {"gpt-4o", "openai", 1686935002},
    {"llama-3-70b-chat", "meta-llama", 0},
    {"llama-3-70b-chat-turbo", "meta-llama", 0},
    {"llama-3-8b-chat", "meta-llama", 0},
    {"llama-3-8b-chat-turbo", "meta-llama", 0},
    {"llama-3-70b-chat-lite", "meta-llama", 0},
    {"llama-3-8b-chat-lite", "meta-llama", 0},
    {"llama-2-70b-chat", "meta-llama", 0},
    {"llama-2-13b-chat", "meta-llama", 0},
    {"llama-2-7b-chat", "meta-llama", 0},
    {"llama-3.1-405b-turbo", "meta-llama", 0},
    {"llama-3.1-70b-turbo", "meta-llama", 0},
    {"llama-3.1-8b-turbo", "meta-llama", 0},
    {"LlamaGuard-2-8b", "meta-llama", 0},
    {"Yi-34B-Chat", "01-ai", 0},
    {"Yi-34B", "01-ai", 0},
    {"Yi-6B", "01-ai", 0},
    {"Mixtral-8x7B-v0.1", "mistral-ai", 0},
    {"Mixtral-8x22B", "mistral-ai", 0},
    {"Mixtral-8x7B-Instruct-v0.1", "mistral-ai", 0},
    {"Mixtral-8x22B-Instruct-v0.1", "mistral-ai", 0},
    {"Mistral-7B-Instruct-v0.1", "mistral-ai", 0},
    {"Mistral-7B-Instruct-v0.2", "mistral-ai", 0},
    {"Mistral-7B-Instruct-v0.3", "mistral-ai", 0},
    {"openchat-3.5", "openchat", 0},
    {"WizardLM-13B-V1.2", "wizardlm", 0},
    {"WizardCoder-Python-34B-V1.0", "wizardlm", 0},
    {"Qwen1.5-0.5B-Chat", "qwen", 0},
    {"Qwen1.5-1.8B-Chat", "qwen", 0},
    {"Qwen1.5-4B-Chat", "qwen", 0},
    {"Qwen1.5-7B-Chat", "qwen", 0},
    {"Qwen1.5-14B-Chat", "qwen", 0},
    {"Qwen1.5-72B-Chat", "qwen", 0},
    {"Qwen1.5-110B-Chat", "qwen", 0},
    {"Qwen2-72B-Instruct", "qwen", 0},
    {"gemma-2b-it", "google", 0},
    {"gemma-7b-it", "google", 0},
    {"gemma-2b", "google", 0},
    {"gemma-7b", "google", 0},
    {"dbrx-instruct", "databricks", 0},
    {"vicuna-7b-v1.5", "lmsys", 0},
    {"vicuna-13b-v1.5", "lmsys", 0},
    {"dolphin-2.5-mixtral-8x7b", "cognitivecomputations", 0},
    {"deepseek-coder-33b-instruct", "deepseek-ai", 0},
    {"deepseek-coder-67b-instruct", "deepseek-ai", 0},
    {"deepseek-llm-67b-chat", "deepseek-ai", 0},
    {"Nous-Capybara-7B-V1p9", "NousResearch", 0},
    {"Nous-Hermes-2-Mixtral-8x7B-DPO", "NousResearch", 0},
    {"Nous-Hermes-2-Mixtral-8x7B-SFT", "NousResearch", 0},
    {"Nous-Hermes-llama-2-7b", "NousResearch", 0},
    {"Nous-Hermes-Llama2-13b", "NousResearch", 0},
    {"Nous-Hermes-2-Yi-34B", "NousResearch", 0},
    {"Mistral-7B-OpenOrca", "Open-Orca", 0},
    {"alpaca-7b", "togethercomputer", 0},
    {"OpenHermes-2-Mistral-7B", "teknium", 0},
    {"OpenHermes-2.5-Mistral-7B", "teknium", 0},
    {"phi-2", "microsoft", 0},
    {"phi-3", "microsoft", 0},
    {"WizardLM-2-8x22B", "microsoft", 0},
    {"NexusRaven-V2-13B", "Nexusflow", 0},
    {"Phind-CodeLlama-34B-v2", "Phind", 0},
    {"CodeLlama-7b-Python-hf", "codellama", 0},
    {"CodeLlama-7b-Python", "codellama", 0},
    {"CodeLlama-13b-Python-hf", "codellama", 0},
    {"CodeLlama-34b-Python-hf", "codellama", 0},
    {"CodeLlama-70b-Python-hf", "codellama", 0},
    {"snowflake-arctic-instruct", "Snoflake", 0},
    {"SOLAR-10.7B-Instruct-v1.0", "upstage", 0},
    {"StripedHyena-Hessian-7B", "togethercomputer", 0},
    {"StripedHyena-Nous-7B", "togethercomputer", 0},
    {"Llama-2-7B-32K-Instruct", "togethercomputer", 0},
    {"CodeLlama-13b-Instruct", "togethercomputer", 0},
    {"evo-1-131k-base", "togethercomputer", 0},
    {"OLMo-7B-Instruct", "allenai", 0},
    {"Platypus2-70B-instruct", "garage-bAInd", 0},
    {"Snorkel-Mistral-PairRM-DPO", "snorkelai", 0},
    {"ReMM-SLERP-L2-13B", "Undi95", 0},
    {"MythoMax-L2-13b", "Gryphe", 0},
    {"chronos-hermes-13b", "Autism", 0},
    {"Llama-Guard-7b", "Meta-Llama", 0},
    {"gemma-2-9b-it", "google", 0},
    {"gemma-2-27b-it", "google", 0},
    {"Toppy-M-7B", "Undi95", 0},
    {"gemini-1.5-flash", "google/getlazy.ai", 1686935002},
    {"gemini-1.5-pro", "google/getlazy.ai", 1686935002},
    {"gemini-1.0-pro", "google/getlazy.ai", 1686935002},
    {"command-r+", "cohere", 0},
    {"sparkdesk", "iFlytek", 0},
};

// A dated id split: its family ("claude-3-opus" of "claude-3-opus-20240229") and its date as
// YYYYMMDD (0 for OpenAI's "-MMDD", whose year is not written). nullopt when the id ends in no
// date: "-YYYYMMDD" or "-YYYY-MM-DD" with a year 2000-2099, or "-MMDD"; the month must be 01-12
// and the day 01-31, so that a number such as a context length ("llama3-70b-8192") is no date.
struct Dated {
  std::string_view family;
  int date;
};

std::optional<Dated> DateOf(std::string_view id) {
  const auto number = [](std::string_view s) -> std::optional<int> {
    int n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return s.empty() ? std::nullopt : std::optional<int>(n);
  };
  const auto suffix = [&](size_t size) -> std::optional<std::string_view> {
    if (id.size() <= size + 1 || id[id.size() - size - 1] != '-') return std::nullopt;
    return id.substr(id.size() - size);
  };
  const auto valid = [](std::optional<int> year, std::optional<int> month, std::optional<int> day) {
    return year && month && day && *year >= 2000 && *year <= 2099 && *month >= 1 && *month <= 12 &&
           *day >= 1 && *day <= 31;
  };
  if (std::optional<std::string_view> d = suffix(8)) {
    std::optional<int> y = number(d->substr(0, 4)), m = number(d->substr(4, 2)),
                       day = number(d->substr(6, 2));
    if (valid(y, m, day)) return Dated{id.substr(0, id.size() - 9), *y * 10000 + *m * 100 + *day};
  }
  if (std::optional<std::string_view> d = suffix(10); d && (*d)[4] == '-' && (*d)[7] == '-') {
    std::optional<int> y = number(d->substr(0, 4)), m = number(d->substr(5, 2)),
                       day = number(d->substr(8, 2));
    if (valid(y, m, day)) return Dated{id.substr(0, id.size() - 11), *y * 10000 + *m * 100 + *day};
  }
  if (std::optional<std::string_view> d = suffix(4)) {
    if (valid(2000, number(d->substr(0, 2)), number(d->substr(2, 2)))) {
      return Dated{id.substr(0, id.size() - 5), 0};
    }
  }
  return std::nullopt;
}

}  // namespace

std::string DefaultFeatureClass(std::string_view model_id) {
  const absl::string_view id = ToAbsl(model_id);
  if (absl::StartsWith(id, "gpt-") || absl::StartsWith(id, "claude-") ||
      absl::StartsWith(id, "gemini-") || id == "sparkdesk") {
    return quota::kClosedLlm;
  }
  return quota::kLlm;
}

std::vector<ModelInfo> DefaultModels() {
  std::vector<ModelInfo> models;
  models.reserve(std::size(kSeedModels));
  for (const SeedRow& row : kSeedModels) {
    models.push_back(ModelInfo{row.id, row.owned_by, row.created, DefaultFeatureClass(row.id),
                               kBuiltinProvider});
  }
  return models;
}

int64_t PriceMicroUsd(const ModelInfo& model, int64_t prompt_tokens, int64_t completion_tokens) {
  // Exact in 128 bits: each product is below 2^63 * 2^40 (kMaxMicroUsdPerMillionTokens < 2^40),
  // their sum below 2^104. A price outside its range (only a ModelInfo built by hand, as
  // Catalogue::Create refuses it) is clamped into it.
  using u128 = unsigned __int128;
  const auto term = [](int64_t tokens, int64_t price) -> u128 {
    if (tokens <= 0 || price <= 0) return 0;
    return static_cast<u128>(tokens) *
           static_cast<u128>(std::min(price, kMaxMicroUsdPerMillionTokens));
  };
  const u128 per_million = term(prompt_tokens, model.input_micro_usd_per_million_tokens) +
                           term(completion_tokens, model.output_micro_usd_per_million_tokens);
  constexpr u128 kMillion = 1'000'000;
  const u128 cost = (per_million + kMillion - 1) / kMillion;
  constexpr u128 kMost = static_cast<u128>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(cost > kMost ? kMost : cost);
}

absl::StatusOr<Catalogue> Catalogue::Create(std::vector<ModelInfo> models,
                                            std::vector<Alias> aliases) {
  Catalogue catalogue;
  catalogue.index_.reserve(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    const ModelInfo& model = models[i];
    if (model.id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("models[", i, "].id: required"));
    }
    if (model.feature_class.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("models[", i, "].feature_class: required"));
    }
    for (const auto& [field, price] :
         {std::pair<const char*, int64_t>{"input_micro_usd_per_million_tokens",
                                          model.input_micro_usd_per_million_tokens},
          {"output_micro_usd_per_million_tokens", model.output_micro_usd_per_million_tokens}}) {
      if (price < 0 || price > kMaxMicroUsdPerMillionTokens) {
        return absl::InvalidArgumentError(absl::StrCat("models[", i, "].", field, ": ", price,
                                                       " is outside [0, ",
                                                       kMaxMicroUsdPerMillionTokens, "]"));
      }
    }
    auto [it, inserted] = catalogue.index_.try_emplace(model.id, i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("models[", i, "].id: \"", model.id,
                                                     "\" repeats models[", it->second, "].id"));
    }
  }
  // Derived aliases: each family's newest member (the latest written date, then the latest
  // created, then the greatest id), unless the family's name is an id.
  const auto newness = [&](size_t i) {
    return std::make_tuple(DateOf(models[i].id)->date, models[i].created, models[i].id);
  };
  for (size_t i = 0; i < models.size(); ++i) {
    const std::optional<Dated> dated = DateOf(models[i].id);
    if (!dated.has_value()) continue;
    const std::string family(dated->family);
    if (catalogue.index_.contains(family)) continue;
    auto [it, inserted] = catalogue.alias_index_.try_emplace(family, i);
    if (!inserted && newness(i) > newness(it->second)) it->second = i;
  }
  absl::flat_hash_map<std::string, size_t> configured;
  for (size_t i = 0; i < aliases.size(); ++i) {
    const Alias& a = aliases[i];
    const std::string field = absl::StrCat("model_aliases[", i, "]");
    if (a.alias.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".alias: required"));
    if (catalogue.index_.contains(a.alias)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".alias: \"", a.alias, "\" is a model id, not an alias"));
    }
    auto model = catalogue.index_.find(a.model);
    if (model == catalogue.index_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".model: no model \"", a.model, "\" in the catalogue"));
    }
    if (auto [it, inserted] = configured.try_emplace(a.alias, i); !inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".alias: \"", a.alias, "\" repeats model_aliases[", it->second, "].alias"));
    }
    catalogue.alias_index_[a.alias] = model->second;
  }
  catalogue.models_ = std::move(models);
  return catalogue;
}

absl::flat_hash_map<std::string, std::string> Catalogue::aliases() const {
  absl::flat_hash_map<std::string, std::string> out;
  for (const auto& [alias, i] : alias_index_) out[alias] = models_[i].id;
  return out;
}

const ModelInfo* Catalogue::Resolve(std::string_view name) const {
  if (const ModelInfo* exact = Find(name)) return exact;
  auto it = alias_index_.find(ToAbsl(name));
  return it == alias_index_.end() ? nullptr : &models_[it->second];
}

const ModelInfo* Catalogue::Find(std::string_view id) const {
  auto it = index_.find(ToAbsl(id));
  return it == index_.end() ? nullptr : &models_[it->second];
}

bool EndpointModels::Contains(std::string_view model) const {
  for (const std::string& m : models) {
    if (m == model) return true;
  }
  return false;
}

std::string_view EndpointModels::Resolve(std::string_view requested) const {
  return requested.empty() ? std::string_view(default_model) : requested;
}

EndpointModels DefaultImageGenerationModels() {
  return {{kDallE3, kDallE2}, std::string(kDefaultImageGenerationModel)};
}

EndpointModels DefaultImagineModels() {
  return {{kSdxl, kPluto, kDallE2, kDallE3}, std::string(kDefaultImagineModel)};
}

EndpointModels DefaultVisionModels() {
  return {{kGpt4o, kGpt4oMini, kGeminiProVision}, std::string(kDefaultVisionModel)};
}

}  // namespace anyai::server
