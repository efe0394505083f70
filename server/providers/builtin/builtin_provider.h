// The builtin provider (SPEC §5): the default upstream, so that one command runs the whole
// gateway offline. It is a stand-in for models, not a model, and says so in what it returns:
//   - Chat answers with a short reply built from the request (it quotes the last user
//     message and names the model); it understands nothing. Token counts are honest for that
//     reply under token_count.h's approximation: prompt_tokens counts every message's content,
//     completion_tokens the reply, and max_tokens cuts the reply (finish_reason "length").
//     temperature, top_p and top_k are accepted and have no effect. The id is
//     "chatcmpl-<16 hex digits>", a stable hash of the request, so identical requests get
//     identical ids; `created` comes from the injected clock.
//   - StreamChat sends the same reply in chunks of kTokensPerChunk tokens.
//   - GenerateImages and Imagine paint pictures with RenderPng (image_renderer.h), which
//     depend only on the request. GenerateImages renders at most kMaxGeneratedImageSide pixels
//     per side: a larger `size` (e.g. "1792x1024") is scaled down, keeping its aspect ratio,
//     to bound the cost of n images. Its "url" format is a self-contained
//     `data:image/png;base64,…` URL, since the builtin hosts no files. Imagine renders exactly
//     the requested size.
//   - Ask emits a few {message, url} chunks built from the question; the urls are placeholders
//     under https://example.com/search, not sources.
//   - DescribeImage describes only the URL (host, path, file name). It NEVER fetches the URL,
//     so it cannot be used to reach internal addresses (no SSRF risk).
// Deterministic (given the clock) and fast: chat in microseconds; a 1024x1024 picture in
// about 30 ms on one core.
//
// Thread-safe: no mutable state. The injected clock is called concurrently and must be
// thread-safe itself.
#ifndef ANYAI_SERVER_PROVIDERS_BUILTIN_BUILTIN_PROVIDER_H_
#define ANYAI_SERVER_PROVIDERS_BUILTIN_BUILTIN_PROVIDER_H_

#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/provider.h"

namespace anyai::server {

class BuiltinProvider final : public Provider {
 public:
  // The system_fingerprint of every chat completion and chunk.
  static constexpr char kSystemFingerprint[] = "fp_anyai_builtin";
  // Tokens of reply text per streamed content chunk.
  static constexpr int kTokensPerChunk = 4;
  // GenerateImages' largest rendered side, in pixels.
  static constexpr int kMaxGeneratedImageSide = 1024;

  // `clock` gives `created` of chat completions and images.
  explicit BuiltinProvider(std::function<absl::Time()> clock = &absl::Now);

  BuiltinProvider(const BuiltinProvider&) = delete;
  BuiltinProvider& operator=(const BuiltinProvider&) = delete;

  // Chat composes its reply from the request's own words: no I/O.
  bool ChatsWithoutBlocking() const override { return true; }
  absl::StatusOr<v1::ChatCompletion> Chat(const v1::ChatCompletionRequest& request) override;
  absl::Status StreamChat(const v1::ChatCompletionRequest& request,
                          absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) override;
  absl::StatusOr<v1::GenerateImagesResponse> GenerateImages(
      const v1::GenerateImagesRequest& request) override;
  absl::StatusOr<v1::ImagineResponse> Imagine(const v1::ImagineRequest& request) override;
  absl::Status Ask(const v1::AskRequest& request,
                   absl::FunctionRef<bool(const v1::AskChunk&)> emit) override;
  absl::StatusOr<v1::DescribeImageResponse> DescribeImage(
      const v1::DescribeImageRequest& request) override;

 private:
  const std::function<absl::Time()> clock_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_BUILTIN_BUILTIN_PROVIDER_H_
