// The endpoints of SPEC §4, as one vocabulary for both fronts: each front says which endpoint a
// call is (gRPC by method, HTTP by route) and the request metrics label it by EndpointName().
//
// Thread safety: constants and a pure function.
#ifndef ANYAI_SERVER_GATEWAY_ENDPOINT_H_
#define ANYAI_SERVER_GATEWAY_ENDPOINT_H_

namespace anyai::server {

enum class Endpoint {
  kChatCompletions,
  kModels,
  kImagesGenerations,
  kImageFiles,
  kImagine,
  kAsk,
  kVision,
  kCheck,
  kAdmin,
  kHealth,
  kMetrics,
  kOther,
};
inline constexpr int kEndpointCount = static_cast<int>(Endpoint::kOther) + 1;

// The `endpoint` label value: "chat_completions", "models", ..., "other".
const char* EndpointName(Endpoint endpoint);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_ENDPOINT_H_
