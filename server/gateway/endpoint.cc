#include "server/gateway/endpoint.h"

namespace anyai::server {

const char* EndpointName(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kChatCompletions:
      return "chat_completions";
    case Endpoint::kModels:
      return "models";
    case Endpoint::kImagesGenerations:
      return "images_generations";
    case Endpoint::kImageFiles:
      return "image_files";
    case Endpoint::kImagine:
      return "imagine";
    case Endpoint::kAsk:
      return "ask";
    case Endpoint::kVision:
      return "vision";
    case Endpoint::kCheck:
      return "check";
    case Endpoint::kAdmin:
      return "admin";
    case Endpoint::kHealth:
      return "health";
    case Endpoint::kMetrics:
      return "metrics";
    case Endpoint::kOther:
      return "other";
  }
  return "other";
}

}  // namespace anyai::server
