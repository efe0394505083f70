// The openai provider (SPEC §5): answers admitted requests by forwarding them to any
// OpenAI-compatible HTTP API (OpenAI itself, vLLM, Ollama, LiteLLM, ...) at a configured
// base URL, and maps the answers and the failures back into ours.
//
//   Chat            POST {base_url}/chat/completions; the JSON answer becomes a ChatCompletion
//                   whose `model` is the id the client asked for (the upstream's own id, after
//                   model_map, stays invisible).
//   StreamChat      the same with "stream": true (and stream_options.include_usage, so the
//                   last chunk carries usage when the upstream reports it). The SSE stream is
//                   parsed as the bytes arrive and each chat.completion.chunk is emitted as
//                   soon as it is complete, so the client sees the upstream's pace. The one
//                   exception: the chunk with finish_reason waits for the upstream's next
//                   event, which with include_usage is the usage-only chunk that OpenAI sends
//                   last, so that usage rides on the final chunk as provider.h promises.
//                   `data: [DONE]` ends it. When `emit` returns false (the client went away)
//                   the upstream connection is closed at once and the result is CANCELLED.
//   GenerateImages  POST {base_url}/images/generations with model, prompt, n, size, quality
//                   and response_format; the images come back as the upstream sent them (a URL
//                   of the upstream's, or base64 PNG).
//   Imagine         POST {base_url}/images/generations with n 1, size "WxH" and
//                   response_format "b64_json"; the decoded image must be a PNG of exactly the
//                   requested size, or the call fails (UNAVAILABLE) rather than break the
//                   contract. negative_prompt is sent as "negative_prompt" when not empty (an
//                   extension that Stable Diffusion servers take and OpenAI refuses with 400);
//                   steps and seed have no OpenAI counterpart and are not sent.
//   DescribeImage   vision as chat: POST {base_url}/chat/completions with one user message
//                   whose content is [{"type":"text","text":"Describe this image."},
//                   {"type":"image_url","image_url":{"url":<url>}}]; the answer's text is the
//                   description. The URL is checked by the SsrfGuard first (ssrf_guard.h):
//                   the upstream will fetch it, and it must not be pointed at addresses the
//                   operator keeps private.
//   Ask             UNIMPLEMENTED: an OpenAI-compatible API has no GlobalAsk with sources.
//                   MakeProviders refuses a config that routes /v1/ask here.
//
// Request fields: model (mapped), messages, max_tokens, temperature, top_p are sent when set;
// top_k (not an OpenAI parameter, but vLLM, Ollama and most open-model servers take it) only
// when set and non-zero.
//
// Errors (what the upstream said is quoted, escaped and truncated; the api key never appears):
//   upstream HTTP 400, 413, 422   INVALID_ARGUMENT   the upstream refused the request itself
//                                                    (content policy, context length, ...)
//   upstream HTTP 401, 403        UNAVAILABLE        it rejected OUR credentials: the caller
//                                                    did nothing wrong (its text is dropped:
//                                                    it may quote part of the key)
//   upstream HTTP 404             UNAVAILABLE        a model or path the upstream lacks: our
//                                                    catalogue listed the model, so it is a
//                                                    configuration fault, not the caller's
//                                                    unknown model (which is our NOT_FOUND)
//   upstream HTTP 429             UNAVAILABLE        the upstream limits the gateway as a
//                                                    whole; RESOURCE_EXHAUSTED is kept for our
//                                                    own per-tenant limits, whose 429 carries
//                                                    x-ratelimit-* and Retry-After of the
//                                                    caller's plan
//   upstream HTTP 408, 504        DEADLINE_EXCEEDED
//   other upstream statuses       UNAVAILABLE        (5xx; redirects, which are not followed)
//   no answer within `timeout`    DEADLINE_EXCEEDED  (streams: no byte for `timeout`)
//   refused, unreachable, reset   UNAVAILABLE
//   malformed answer              UNAVAILABLE
//   client went away (stream)     CANCELLED
//   vision URL refused            INVALID_ARGUMENT   field "url" (SsrfGuard)
// Nothing is logged.
//
// Thread-safe: immutable after Create, apart from UpstreamHttp's handle pool (thread-safe);
// one instance serves every concurrent call, each on a libcurl handle of its own.
#ifndef ANYAI_SERVER_PROVIDERS_OPENAI_OPENAI_PROVIDER_H_
#define ANYAI_SERVER_PROVIDERS_OPENAI_OPENAI_PROVIDER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/provider.h"
#include "server/providers/openai/ssrf_guard.h"
#include "server/providers/openai/upstream_http.h"

namespace anyai::server {

struct OpenAIProviderOptions {
  // ProviderConfig.name, which error messages name.
  std::string name;
  // Up to and including the version, e.g. "https://api.openai.com/v1"; trailing "/" ignored.
  // Operator-supplied and trusted: loopback and private addresses are fine here.
  std::string base_url;
  // Sent as `Authorization: Bearer`; empty: no Authorization header.
  std::string api_key;
  // Chat and images: the whole exchange. Streams: the longest silence between two pieces.
  absl::Duration timeout = absl::Seconds(60);
  // Establishing the TCP (and TLS) connection; at most `timeout`.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Our model id -> the upstream's; ids not in it are sent unchanged.
  absl::flat_hash_map<std::string, std::string> model_map;
};

class OpenAIProvider final : public Provider {
 public:
  // The text part of a vision request.
  static constexpr char kDescribePrompt[] = "Describe this image.";

  // INVALID_ARGUMENT "base_url: ..." when the base URL is not http(s)://host[...];
  // INTERNAL when libcurl cannot start. `clock` gives `created` when the upstream omits it.
  static absl::StatusOr<std::unique_ptr<OpenAIProvider>> Create(
      OpenAIProviderOptions options, SsrfGuard ssrf,
      std::function<absl::Time()> clock = &absl::Now);

  OpenAIProvider(const OpenAIProvider&) = delete;
  OpenAIProvider& operator=(const OpenAIProvider&) = delete;

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
  OpenAIProvider(OpenAIProviderOptions options, SsrfGuard ssrf, std::function<absl::Time()> clock,
                 std::unique_ptr<UpstreamHttp> http);

  // The upstream's id for our model id.
  const std::string& UpstreamModel(const std::string& model) const;
  UpstreamRequest MakeRequest(const char* path, std::string body) const;
  // POSTs and returns the parsed JSON body of a 2xx answer (as text, parsed by the caller), or
  // the mapped error.
  absl::StatusOr<std::string> PostJson(const char* path, std::string body);
  // The error for a non-2xx answer, and for a transport failure.
  absl::Status HttpError(const UpstreamResponse& response) const;
  absl::Status TransportError(const absl::Status& status) const;
  absl::Status Malformed(absl::string_view what) const;
  // `text` with the api key blanked out, quoted for a message.
  std::string Sanitize(absl::string_view text) const;

  const OpenAIProviderOptions options_;
  const SsrfGuard ssrf_;
  const std::function<absl::Time()> clock_;
  const std::unique_ptr<UpstreamHttp> http_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_OPENAI_OPENAI_PROVIDER_H_
