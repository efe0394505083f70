// The interface of an upstream backend: whoever answers a request once the gateway has
// validated and admitted it (SPEC §5). Implementations: BuiltinProvider (builtin_provider.h),
// the offline stand-in, and an OpenAI-compatible HTTP upstream. The gateway routes each model
// or endpoint to one Provider by config (ServerConfig.models[].provider and the endpoints'
// `provider`).
//
// Contract shared by every implementation:
//   - Requests are already validated (field ranges, message sizes, model known and routed
//     here), and the Gateway has filled in the defaults of absent optional fields
//     (validation.h's Apply*Defaults). Called directly, a provider takes the same defaults from
//     the same owners: validation.h's constants and catalogue.h's default models.
//   - Errors are absl::Status: UNAVAILABLE or DEADLINE_EXCEEDED for upstream trouble,
//     INVALID_ARGUMENT only for a request the upstream refuses, CANCELLED when a stream's
//     client went away. The fronts map them to gRPC and HTTP in one place each.
//   - Streaming methods call `emit` on the calling thread, once per chunk, in order. `emit`
//     returns false when the client has gone away; the provider then stops producing (no
//     further calls to `emit`) and returns CANCELLED.
//
// Thread safety: implementations are thread-safe; one instance serves every request
// concurrently.
#ifndef ANYAI_SERVER_GATEWAY_PROVIDER_H_
#define ANYAI_SERVER_GATEWAY_PROVIDER_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "anyai/v1/anyai.pb.h"

namespace anyai::server {

class Provider {
 public:
  virtual ~Provider() = default;

  // Whether Chat answers from memory: no I/O, no waiting, work bounded by the request's size.
  // A front may then run the call on the thread that read it (Gateway::AnswersWithoutBlocking)
  // instead of handing it to a worker. Default false: an upstream waits on the network.
  virtual bool ChatsWithoutBlocking() const { return false; }

  // A whole chat completion: one choice, object "chat.completion", with usage.
  virtual absl::StatusOr<v1::ChatCompletion> Chat(const v1::ChatCompletionRequest& request) = 0;

  // The same completion as chunks (object "chat.completion.chunk"), all with one id, created
  // and model. The first chunk carries delta.role = "assistant"; the content deltas, joined,
  // are the message content; the last chunk has finish_reason ("stop" or "length") and usage.
  virtual absl::Status StreamChat(const v1::ChatCompletionRequest& request,
                                  absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) = 0;

  // `n` images, each as a URL or as base64 PNG, as `response_format` asks.
  virtual absl::StatusOr<v1::GenerateImagesResponse> GenerateImages(
      const v1::GenerateImagesRequest& request) = 0;

  // One encoded image of exactly width x height pixels, with its media type.
  virtual absl::StatusOr<v1::ImagineResponse> Imagine(const v1::ImagineRequest& request) = 0;

  // A GlobalAsk answer as {message, url} chunks, emitted one by one.
  virtual absl::Status Ask(const v1::AskRequest& request,
                           absl::FunctionRef<bool(const v1::AskChunk&)> emit) = 0;

  // A text description of the image at request.url.
  virtual absl::StatusOr<v1::DescribeImageResponse> DescribeImage(
      const v1::DescribeImageRequest& request) = 0;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_PROVIDER_H_
