#include "server/gateway/chat_cost.h"

#include <algorithm>

#include "server/gateway/token_count.h"

namespace anyai::server {

int64_t PromptTokens(const v1::ChatCompletionRequest& request) {
  int64_t tokens = 0;
  for (const v1::ChatMessage& m : request.messages()) tokens += CountTokens(m.content());
  return tokens;
}

quota::Cost ChatEstimate(const v1::ChatCompletionRequest& request, const ModelInfo& model,
                         int64_t default_token_reserve) {
  const int64_t prompt = PromptTokens(request);
  const int64_t completion =
      request.has_max_tokens() ? std::max(0, request.max_tokens()) : default_token_reserve;
  return ChatUsed(model, prompt, completion);
}

quota::Cost ChatUsed(const ModelInfo& model, int64_t prompt_tokens, int64_t completion_tokens) {
  prompt_tokens = std::max<int64_t>(0, prompt_tokens);
  completion_tokens = std::max<int64_t>(0, completion_tokens);
  return quota::Cost{.requests = 1,
                     .tokens = prompt_tokens + completion_tokens,
                     .micro_usd = PriceMicroUsd(model, prompt_tokens, completion_tokens)};
}

void StreamUsage::Delivered(const v1::ChatCompletionChunk& chunk) {
  for (const v1::ChatCompletionChunkChoice& choice : chunk.choices()) {
    const int64_t n = CountTokens(choice.delta().content());
    if (n > 0) produced_ = true;
    emitted_tokens_ += n;
  }
  if (chunk.has_usage()) {
    usage_ = chunk.usage();
    produced_ = true;
  }
}

quota::Cost StreamUsage::Used() const {
  if (usage_.has_value()) {
    return ChatUsed(model_, usage_->prompt_tokens(), usage_->completion_tokens());
  }
  return ChatUsed(model_, prompt_tokens_, emitted_tokens_);
}

}  // namespace anyai::server
