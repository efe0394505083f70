#include "server/gateway/validation.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/errors.h"
#include "server/gateway/text.h"
#include "server/net/url.h"

namespace anyai::server {
namespace {

constexpr char kSystemRole[] = "system";
constexpr char kUserRole[] = "user";
constexpr char kAssistantRole[] = "assistant";
constexpr char kPlutoOnly[] = "pluto accepts only prompt and negative_prompt";

// The sizes OpenAI's image models take; see the header for which model takes which.
constexpr std::string_view kDallE2Sizes[] = {"256x256", "512x512", "1024x1024"};
constexpr std::string_view kDallE3Sizes[] = {"1024x1024", "1792x1024", "1024x1792"};
constexpr std::string_view kAllImageSizes[] = {"256x256", "512x512", "1024x1024", "1792x1024",
                                               "1024x1792"};

template <size_t N>
bool OneOf(std::string_view value, const std::string_view (&choices)[N]) {
  for (std::string_view c : choices) {
    if (value == c) return true;
  }
  return false;
}

template <size_t N>
std::string ListOf(const std::string_view (&choices)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) out += (i + 1 == N) ? " or " : ", ";
    absl::StrAppend(&out, "\"", std::string(choices[i]), "\"");
  }
  return out;
}

// Collects the violations of one request, in field order, up to kMaxViolations.
class Violations {
 public:
  void Add(std::string field, std::string description) {
    if (list_.size() < kMaxViolations) list_.push_back({std::move(field), std::move(description)});
  }
  bool empty() const { return list_.empty(); }
  absl::Status ToStatus() && { return InvalidRequest(std::move(list_)); }

 private:
  std::vector<FieldViolation> list_;
};

// The check of every user-supplied text (SPEC §2): well-formed UTF-8 and at most
// `max_chars` code points; non-empty when `required`. `field` is built only on failure.
template <typename FieldName>
void CheckText(const FieldName& field, std::string_view text, int64_t max_chars, bool required,
               Violations& violations) {
  if (text.empty()) {
    if (required) violations.Add(field(), "required");
    return;
  }
  absl::StatusOr<int64_t> chars = CountCodePoints(text);
  if (!chars.ok()) {
    violations.Add(field(), std::string(chars.status().message()));
    return;
  }
  if (*chars > max_chars) {
    violations.Add(field(), absl::StrCat(*chars, " characters (Unicode code points), more than ",
                                         "the plan's limit of ", max_chars));
  }
}

std::string Named(const char* name) { return name; }

void CheckIntRange(const char* field, int64_t value, int64_t lo, int64_t hi,
                   Violations& violations) {
  if (value < lo || value > hi) {
    violations.Add(field, absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
  }
}

void CheckDoubleRange(const char* field, double value, double lo, double hi,
                      Violations& violations) {
  if (!std::isfinite(value)) {
    violations.Add(field, "must be a finite number");
  } else if (value < lo || value > hi) {
    violations.Add(field, absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
  }
}

// Checks `model` against an endpoint's list. Returns the error to report when nothing else is
// wrong (UnknownModel), or OK.
absl::Status CheckEndpointModel(std::string_view model, const EndpointModels& models) {
  if (model.empty() || models.Contains(model)) return absl::OkStatus();
  return UnknownModel("model", std::string(model));
}

absl::Status Finish(Violations violations, absl::Status model_status) {
  if (!violations.empty()) return std::move(violations).ToStatus();
  return model_status;
}

}  // namespace

absl::StatusOr<const ModelInfo*> ValidateChatCompletion(
    const anyai::v1::ChatCompletionRequest& request, const Catalogue& catalogue,
    int64_t max_message_chars, int max_messages) {
  Violations violations;
  const ModelInfo* model = nullptr;
  if (request.model().empty()) {
    violations.Add("model", "required");
  } else {
    model = catalogue.Resolve(request.model());
  }

  const int count = request.messages_size();
  if (count == 0) {
    violations.Add("messages", "at least one message is required");
  } else if (count > max_messages) {
    // The messages themselves are not looked at: the request is refused anyway, cheaply.
    violations.Add("messages",
                   absl::StrCat(count, " messages, more than the ", max_messages, " allowed"));
  } else {
    for (int i = 0; i < count; ++i) {
      const anyai::v1::ChatMessage& message = request.messages(i);
      const std::string& role = message.role();
      auto field = [i](const char* name) { return absl::StrCat("messages[", i, "].", name); };
      bool content_required = true;
      if (role == kSystemRole) {
        if (i != 0) {
          violations.Add(field("role"), "a system message is allowed only as the first message");
        }
      } else if (role == kAssistantRole) {
        content_required = false;  // OpenAI allows an empty assistant turn
      } else if (role != kUserRole) {
        violations.Add(field("role"),
                       role.empty() ? std::string(R"(required: "system", "user" or "assistant")")
                                    : absl::StrCat(R"(must be "system", "user" or "assistant", )",
                                                   "got \"", QuoteForMessage(role), "\""));
      }
      CheckText([&] { return field("content"); }, message.content(), max_message_chars,
                content_required, violations);
    }
  }

  if (request.has_max_tokens()) {
    CheckIntRange("max_tokens", request.max_tokens(), kMinMaxTokens, kMaxMaxTokens, violations);
  }
  if (request.has_temperature()) {
    CheckDoubleRange("temperature", request.temperature(), 0.0, kMaxTemperature, violations);
  }
  if (request.has_top_p()) {
    CheckDoubleRange("top_p", request.top_p(), 0.0, kMaxTopP, violations);
  }
  if (request.has_top_k()) {
    CheckIntRange("top_k", request.top_k(), 0, kMaxTopK, violations);
  }

  if (!violations.empty()) return std::move(violations).ToStatus();
  if (model == nullptr) return UnknownModel("model", request.model());
  return model;
}

absl::Status ValidateGenerateImages(const anyai::v1::GenerateImagesRequest& request,
                                    const EndpointModels& models, int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  const std::string_view model = models.Resolve(request.model());

  if (request.has_n()) {
    if (request.n() < 1 || request.n() > kMaxImagesPerRequest) {
      CheckIntRange("n", request.n(), 1, kMaxImagesPerRequest, violations);
    } else if (model == kDallE3 && request.n() != 1) {
      violations.Add("n", absl::StrCat("dall-e-3 makes 1 image per request, got ", request.n()));
    }
  }
  const std::string& quality = request.quality();
  if (!quality.empty() && quality != "standard" && quality != "hd") {
    violations.Add("quality", absl::StrCat(R"(must be "standard" or "hd", got ")",
                                           QuoteForMessage(quality), "\""));
  }
  const std::string& format = request.response_format();
  if (!format.empty() && format != kUrlResponseFormat && format != kB64JsonResponseFormat) {
    violations.Add("response_format", absl::StrCat(R"(must be "url" or "b64_json", got ")",
                                                   QuoteForMessage(format), "\""));
  }
  const std::string& size = request.size();
  if (!size.empty()) {
    if (model == kDallE2 && !OneOf(size, kDallE2Sizes)) {
      violations.Add("size", absl::StrCat("dall-e-2 makes ", ListOf(kDallE2Sizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    } else if (model == kDallE3 && !OneOf(size, kDallE3Sizes)) {
      violations.Add("size", absl::StrCat("dall-e-3 makes ", ListOf(kDallE3Sizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    } else if (!OneOf(size, kAllImageSizes)) {
      violations.Add("size", absl::StrCat("must be ", ListOf(kAllImageSizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    }
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

absl::Status ValidateImagine(const anyai::v1::ImagineRequest& request, const EndpointModels& models,
                             int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  CheckText([] { return Named("negative_prompt"); }, request.negative_prompt(), max_message_chars,
            /*required=*/false, violations);

  if (models.Resolve(request.model()) == kPluto) {
    if (request.has_width()) violations.Add("width", kPlutoOnly);
    if (request.has_height()) violations.Add("height", kPlutoOnly);
    if (request.has_steps()) violations.Add("steps", kPlutoOnly);
    if (request.has_seed()) violations.Add("seed", kPlutoOnly);
  } else {
    auto check_side = [&violations](const char* field, int32_t value) {
      if (value < kMinImagineSide || value > kMaxImagineSide || value % kImagineSideMultiple != 0) {
        violations.Add(field,
                       absl::StrCat("must be a multiple of ", kImagineSideMultiple, " between ",
                                    kMinImagineSide, " and ", kMaxImagineSide, ", got ", value));
      }
    };
    if (request.has_width()) check_side("width", request.width());
    if (request.has_height()) check_side("height", request.height());
    if (request.has_steps()) {
      CheckIntRange("steps", request.steps(), kMinImagineSteps, kMaxImagineSteps, violations);
    }
    if (request.has_seed() && request.seed() < 0) {
      violations.Add("seed", absl::StrCat("must be at least 0, got ", request.seed()));
    }
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

absl::Status ValidateAsk(const anyai::v1::AskRequest& request, int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  return Finish(std::move(violations), absl::OkStatus());
}

absl::Status ValidateDescribeImage(const anyai::v1::DescribeImageRequest& request,
                                   const EndpointModels& models) {
  Violations violations;
  if (request.url().empty()) {
    violations.Add("url", "required");
  } else if (absl::StatusOr<net::Url> url = ParseHttpUrl(request.url()); !url.ok()) {
    violations.Add("url", std::string(url.status().message()));
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

void ApplyGenerateImagesDefaults(anyai::v1::GenerateImagesRequest* request,
                                 const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
  if (!request->has_n()) request->set_n(kDefaultImagesPerRequest);
  if (request->quality().empty()) request->set_quality(kDefaultImageQuality);
  if (request->response_format().empty()) {
    request->set_response_format(kDefaultImageResponseFormat);
  }
  if (request->size().empty()) request->set_size(kDefaultImageSize);
}

void ApplyImagineDefaults(anyai::v1::ImagineRequest* request, const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
  if (!request->has_width()) request->set_width(kDefaultImagineSide);
  if (!request->has_height()) request->set_height(kDefaultImagineSide);
  if (!request->has_steps()) request->set_steps(kDefaultImagineSteps);
}

void ApplyDescribeImageDefaults(anyai::v1::DescribeImageRequest* request,
                                const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
}

absl::StatusOr<net::Url> ParseHttpUrl(std::string_view url) {
  if (url.empty()) return absl::InvalidArgumentError("required");
  if (url.size() > kMaxUrlBytes) {
    return absl::InvalidArgumentError(absl::StrCat("longer than ", kMaxUrlBytes, " bytes"));
  }
  absl::StatusOr<net::Url> parsed = net::Url::Parse(url);
  if (!parsed.ok()) return parsed.status();
  if (parsed->scheme != "http" && parsed->scheme != "https") {
    return absl::InvalidArgumentError("must be an absolute http or https URL");
  }
  return parsed;
}

}  // namespace anyai::server
