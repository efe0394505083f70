// The JSON of the OpenAI-compatible HTTP API (SPEC §4) <-> the proto messages that the gRPC
// front uses too, so that both call the Gateway with the same requests. Requests are parsed
// with nlohmann::json and mapped field by field; responses are written by hand in the seed's
// exact shape and key order (protobuf's JSON printer would print int64 as strings and omit
// `"logprobs": null`).
//
// What a request body may contain:
//   chat    model, messages, max_tokens, stream, temperature, top_p, top_k: mapped.
//           max_completion_tokens: mapped to max_tokens when max_tokens is absent.
//           n: accepted when 1 (one choice is all the gateway answers); other values are 400.
//           stream_options {include_usage}: honoured when streaming (a last chunk with
//           `"choices": []` and the usage, and `"usage": null` in the others, as OpenAI).
//           Accepted and ignored (what OpenAI SDKs may send that has no effect here): user,
//           frequency_penalty, presence_penalty, logit_bias, logprobs, top_logprobs, seed,
//           stop, response_format, tools, tool_choice, functions, function_call,
//           parallel_tool_calls, service_tier, store, metadata, modalities, audio, prediction,
//           reasoning_effort, web_search_options, prompt_cache_key, safety_identifier,
//           verbosity. Any other top-level field is 400 ("unrecognized request argument").
//   message role, content; ignored: name, refusal, tool_calls, tool_call_id, function_call,
//           audio, annotations; anything else is 400. content is a string, null (empty), or
//           an array of parts: {"type": "text", "text": ...} parts are joined with "\n";
//           any other part type (image_url, input_audio, file) is 400.
//   images  prompt, model, n, quality, response_format, size: mapped; user, style: ignored;
//           anything else is 400.
// JSON null means "absent" for every field. Integer fields take JSON integers (or numbers
// with no fractional part, such as 5.0) in the proto type's range; fractional values,
// strings, booleans are 400 naming the field. Malformed JSON, invalid UTF-8 in strings (and
// unpaired \u surrogates), a body that is not an object, and nesting deeper than
// kMaxJsonDepth are 400 too. Ranges and the rules of SPEC §10 are validation.h's, not here.
//
// Errors are INVALID_ARGUMENT from errors.h (InvalidField: `param` names the field, e.g.
// "messages[1].content"), or a plain INVALID_ARGUMENT for a body that does not parse.
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_HTTP_HTTP_JSON_H_
#define ANYAI_SERVER_HTTP_HTTP_JSON_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "anyai/v1/anyai.pb.h"

namespace anyai::server {

// Deeper bodies are refused before they are parsed.
inline constexpr int kMaxJsonDepth = 64;

// POST /v1/chat/completions.
struct ChatCompletionBody {
  v1::ChatCompletionRequest request;
  bool stream = false;         // request.stream(), defaulted
  bool include_usage = false;  // stream_options.include_usage
};
absl::StatusOr<ChatCompletionBody> ParseChatCompletionBody(std::string_view body);

// POST /v1/images/generations.
absl::StatusOr<v1::GenerateImagesRequest> ParseGenerateImagesBody(std::string_view body);

// Appends `s` to `out` as a JSON string, the bytes nlohmann's dump() (error_handler replace)
// writes for it: for the bodies answered on every call, without building a JSON tree.
void AppendJsonString(std::string* out, std::string_view s);

// {"id", "object", "created", "model", "system_fingerprint", "choices": [{"index", "message":
// {"role", "content"}, "logprobs": null, "finish_reason"}], "usage": {"prompt_tokens",
// "completion_tokens", "total_tokens"}}
std::string ChatCompletionJson(const v1::ChatCompletion& completion);

// {"id", "object", "created", "model", "system_fingerprint", "choices": [{"index", "delta":
// {"role"?, "content"?}, "logprobs": null, "finish_reason": null | "stop" | "length"}]},
// plus `"usage": null` when `usage_field` (stream_options.include_usage).
std::string ChatCompletionChunkJson(const v1::ChatCompletionChunk& chunk, bool usage_field);

// The extra last chunk of stream_options.include_usage: `chunk`'s id, created, model and
// fingerprint, `"choices": []` and its usage.
std::string ChatUsageChunkJson(const v1::ChatCompletionChunk& chunk);

// {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}, ...]}
std::string ModelListJson(const v1::ListModelsResponse& models);
// {"id", "object": "model", "created", "owned_by"}
std::string ModelJson(const v1::Model& model);

// {"created", "data": [{"url"} | {"b64_json"}, ...]}
std::string GenerateImagesJson(const v1::GenerateImagesResponse& response);

// {"message", "url"}: one `data:` event of /v1/ask.
std::string AskChunkJson(const v1::AskChunk& chunk);

// {"description", "model"}: /v1/images/vision for clients that Accept application/json.
std::string DescribeImageJson(const v1::DescribeImageResponse& response);

// /check: {"plan", "masked_key", "created", "classes": [{"feature_class", "windows": [W],
// "token_windows": [W], "spend_windows": [W], "in_flight", "max_concurrent"}]} with each W
// {"window_seconds", "used", "reserved", "limit", "remaining", "reset_seconds"}: the names of
// CheckKeyResponse's fields (anyai.proto), in their units: requests, tokens, and for spend
// micro-USD (integers, exact; 1000000 is $1). Token and spend windows are empty and in_flight
// and max_concurrent 0 when the plan has no such limits. Durations are JSON numbers of seconds
// (integers when whole, else to the millisecond).
std::string CheckKeyJson(const v1::CheckKeyResponse& response);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_JSON_H_
