// Fuzzes the request bodies of both fronts and the validation every request then goes through
// (server/gateway/validation.h), as the Gateway applies it with the default config:
//   HTTP   each JSON body parser of http_json.h (chat completions, image generation) on the
//          input as a body;
//   gRPC   the input as the protobuf wire bytes of every request message of the AnyAI service
//          (and of the Admin service, which is parsed the same way before its handlers run).
// What parses is validated, and what validates gets its defaults applied, as Gateway does.
// Crashes, sanitizer reports and a validated chat request without a model entry abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string_view>

#include "absl/status/statusor.h"
#include "anyai/v1/admin.pb.h"
#include "anyai/v1/anyai.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "quota/plan.h"
#include "server/config/config.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/validation.h"
#include "server/http/http_json.h"

namespace {

namespace server = anyai::server;
namespace v1 = anyai::v1;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::cerr << "json_body_fuzzer: " << what << "\n";
  std::abort();
}

// What the Gateway validates against: the default config's catalogue and endpoint lists, the
// free plan's text limit (the smallest; every plan's limit is as good for finding bugs).
struct Rules {
  server::Catalogue catalogue;
  server::EndpointModels image_models;
  server::EndpointModels imagine_models;
  server::EndpointModels vision_models;
  int64_t max_message_chars = 0;
  int max_messages = 0;
};

const Rules& TheRules() {
  static const Rules* const rules = [] {
    const v1::ServerConfig config = server::DefaultConfig();
    absl::StatusOr<server::Catalogue> catalogue = server::CatalogueFromConfig(config);
    absl::StatusOr<anyai::quota::PlanTable> plans = server::PlanTableFromConfig(config);
    Require(catalogue.ok() && plans.ok(), "the default config does not build");
    const anyai::quota::Plan* free = plans->Find(server::AnonymousPlan(config));
    Require(free != nullptr, "the default config has no anonymous plan");
    return new Rules{
        .catalogue = *std::move(catalogue),
        .image_models = server::EndpointModelsFromConfig(config.image_generation(),
                                                         server::DefaultImageGenerationModels()),
        .imagine_models =
            server::EndpointModelsFromConfig(config.imagine(), server::DefaultImagineModels()),
        .vision_models =
            server::EndpointModelsFromConfig(config.vision(), server::DefaultVisionModels()),
        .max_message_chars = free->max_message_chars,
        .max_messages = config.max_messages(),
    };
  }();
  return *rules;
}

void Validate(const v1::ChatCompletionRequest& request) {
  const Rules& rules = TheRules();
  absl::StatusOr<const server::ModelInfo*> model = server::ValidateChatCompletion(
      request, rules.catalogue, rules.max_message_chars, rules.max_messages);
  if (model.ok()) Require(*model != nullptr, "a valid chat request has no model entry");
}

void Validate(v1::GenerateImagesRequest request) {
  const Rules& rules = TheRules();
  if (server::ValidateGenerateImages(request, rules.image_models, rules.max_message_chars).ok()) {
    server::ApplyGenerateImagesDefaults(&request, rules.image_models);
  }
}

void Validate(v1::ImagineRequest request) {
  const Rules& rules = TheRules();
  if (server::ValidateImagine(request, rules.imagine_models, rules.max_message_chars).ok()) {
    server::ApplyImagineDefaults(&request, rules.imagine_models);
  }
}

void Validate(const v1::AskRequest& request) {
  (void)server::ValidateAsk(request, TheRules().max_message_chars);
}

void Validate(v1::DescribeImageRequest request) {
  const Rules& rules = TheRules();
  if (server::ValidateDescribeImage(request, rules.vision_models).ok()) {
    server::ApplyDescribeImageDefaults(&request, rules.vision_models);
  }
}

template <typename Request>
void FromWire(std::string_view bytes) {
  Request request;
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
  if constexpr (requires { Validate(request); }) Validate(request);
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it refuses; the fuzzer makes millions.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  if (absl::StatusOr<server::ChatCompletionBody> chat = server::ParseChatCompletionBody(input);
      chat.ok()) {
    Validate(chat->request);
  }
  if (absl::StatusOr<v1::GenerateImagesRequest> images = server::ParseGenerateImagesBody(input);
      images.ok()) {
    Validate(*images);
  }

  FromWire<v1::ChatCompletionRequest>(input);
  FromWire<v1::ListModelsRequest>(input);
  FromWire<v1::GenerateImagesRequest>(input);
  FromWire<v1::ImagineRequest>(input);
  FromWire<v1::AskRequest>(input);
  FromWire<v1::DescribeImageRequest>(input);
  FromWire<v1::CheckKeyRequest>(input);
  FromWire<v1::CreateKeyRequest>(input);
  FromWire<v1::GetKeyRequest>(input);
  FromWire<v1::ListKeysRequest>(input);
  FromWire<v1::UpdateKeyRequest>(input);
  FromWire<v1::RevokeKeyRequest>(input);
  FromWire<v1::GetUsageRequest>(input);
  return 0;
}
