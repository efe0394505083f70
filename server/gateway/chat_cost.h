// What a chat call costs in the engine's units (quota::Cost: requests, tokens, micro-USD): the
// estimate reserved at admission, and what it used once it ended (SPEC §2, "Tokens, spend,
// concurrency").
//
//   estimate: 1 request; the prompt's tokens by our token counter (token_count.h) plus
//             max_tokens, or the plan's default_token_reserve when the request gives none;
//             their price at the model's prices (PriceMicroUsd).
//   used:     1 request; the provider's usage (prompt_tokens + completion_tokens) and its
//             price. A stream without a usage chunk (cancelled, disconnected, cut by its
//             upstream) used the estimated prompt and the completion tokens it emitted.
//
// Thread safety: pure functions; a StreamUsage is one stream's, used from its thread.
#ifndef ANYAI_SERVER_GATEWAY_CHAT_COST_H_
#define ANYAI_SERVER_GATEWAY_CHAT_COST_H_

#include <cstdint>
#include <optional>

#include "anyai/v1/anyai.pb.h"
#include "quota/engine.h"
#include "server/gateway/catalogue.h"

namespace anyai::server {

// The prompt's tokens by our counter: the sum over its messages' contents.
int64_t PromptTokens(const v1::ChatCompletionRequest& request);

quota::Cost ChatEstimate(const v1::ChatCompletionRequest& request, const ModelInfo& model,
                         int64_t default_token_reserve);

quota::Cost ChatUsed(const ModelInfo& model, int64_t prompt_tokens, int64_t completion_tokens);

// What a stream produced, chunk by chunk, as its client received them.
class StreamUsage {
 public:
  // `prompt_tokens` is the estimate's, used when no chunk carries usage.
  StreamUsage(const ModelInfo& model, int64_t prompt_tokens)
      : model_(model), prompt_tokens_(prompt_tokens) {}

  // A chunk the client received.
  void Delivered(const v1::ChatCompletionChunk& chunk);
  // Whether any output reached the client (a content delta, or the usage).
  bool produced() const { return produced_; }
  // The provider's usage when a chunk carried it, else the prompt and what was emitted.
  quota::Cost Used() const;

 private:
  const ModelInfo& model_;
  const int64_t prompt_tokens_;
  int64_t emitted_tokens_ = 0;
  bool produced_ = false;
  std::optional<v1::CompletionUsage> usage_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_CHAT_COST_H_
