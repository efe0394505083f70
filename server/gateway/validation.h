// Request validation shared by every front (SPEC §10): the gRPC services and the HTTP front
// call these same functions on the same proto messages, before anything is counted. A request
// that passes is well-formed for every provider; one that fails gets an error of errors.h:
//
//   INVALID_ARGUMENT (InvalidRequest)  every bad field, each named by its JSON-style path
//                                      ("messages[2].content", "max_tokens"), in field order;
//                                      the status message is the first of them. At most
//                                      kMaxViolations are reported.
//   NOT_FOUND (UnknownModel)           the model is not in the catalogue / the endpoint's list;
//                                      reported only when no field is invalid.
//
// Validation is complete (nothing later refuses a request for its shape) and cheap: one pass
// over each text to check its UTF-8 and count its code points, and no allocation unless a
// field is bad. What the fronts check before building the message (malformed JSON,
// wrong types, body and header sizes) is theirs; what needs the network (the SSRF check of a
// vision URL's resolved address) happens at fetch time in the provider, which may use
// ParseHttpUrl below and net::IpAddress::IsPublic.
//
// The rules and ranges (kept in the constants below):
//   chat        model required, in the catalogue. messages: 1..max_messages (default 256).
//               role: "system", "user" or "assistant" exactly (no "tool", no other case);
//               "system" only as messages[0] (hence at most once). content: well-formed
//               UTF-8, at most max_message_chars code points; required (non-empty) for system
//               and user, may be empty for assistant (OpenAI allows it). max_tokens 1..32768;
//               temperature 0..2; top_p 0..1; top_k 0..1000 (0 disables it); NaN and
//               infinities refused. `stream` is free.
//   images      prompt required, UTF-8, <= max_message_chars. model empty (dall-e-3) or in
//               the endpoint list. n 1..10, and exactly 1 for dall-e-3 (as OpenAI). quality
//               "", "standard" or "hd". response_format "", "url" or "b64_json". size "" or
//               one of 256x256, 512x512, 1024x1024, 1792x1024, 1024x1792; dall-e-2 takes
//               only the three squares, dall-e-3 only 1024x1024, 1792x1024 and 1024x1792 (as
//               OpenAI); any other configured model takes all five.
//   imagine     prompt required, negative_prompt optional, both UTF-8, <= max_message_chars.
//               model empty (sdxl) or in the endpoint list. For "pluto" none of width,
//               height, steps, seed may be present (each one present is a violation: "pluto
//               accepts only prompt and negative_prompt"). Otherwise width and height
//               64..2048 and multiples of 8; steps 1..150; seed >= 0.
//   ask         prompt required, UTF-8, <= max_message_chars.
//   vision      url required: see ParseHttpUrl. model empty (gemini-pro-vision) or in the
//               endpoint list.
// Text limits count Unicode code points (SPEC §2); invalid UTF-8 is its own error. Enumerated
// strings (role, quality, response_format, size, model) are case-sensitive.
//
// Defaults (model, n, quality, ..., width, height, steps) are filled by the Apply*Defaults
// normalisers, to be called after validation succeeds and before the provider sees the
// request; providers may rely on them having run.
//
// Thread-safe: pure functions; the Catalogue and EndpointModels they read are immutable.
#ifndef ANYAI_SERVER_GATEWAY_VALIDATION_H_
#define ANYAI_SERVER_GATEWAY_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/errors.h"
#include "server/gateway/text.h"
#include "server/net/url.h"

namespace anyai::server {

// Chat.
inline constexpr int kDefaultMaxMessages = 256;  // ServerConfig.max_messages' default
inline constexpr int32_t kMinMaxTokens = 1;
inline constexpr int32_t kMaxMaxTokens = 32768;
inline constexpr double kMaxTemperature = 2.0;
inline constexpr double kMaxTopP = 1.0;
inline constexpr int32_t kMaxTopK = 1000;

// Image generation.
inline constexpr int32_t kMaxImagesPerRequest = 10;
inline constexpr int32_t kDefaultImagesPerRequest = 1;
inline constexpr char kDefaultImageQuality[] = "standard";
inline constexpr char kUrlResponseFormat[] = "url";
inline constexpr char kB64JsonResponseFormat[] = "b64_json";
inline constexpr const char* kDefaultImageResponseFormat = kUrlResponseFormat;
inline constexpr char kDefaultImageSize[] = "1024x1024";

// Imagine.
inline constexpr int32_t kMinImagineSide = 64;
inline constexpr int32_t kMaxImagineSide = 2048;
inline constexpr int32_t kImagineSideMultiple = 8;
inline constexpr int32_t kDefaultImagineSide = 1024;
inline constexpr int32_t kMinImagineSteps = 1;
inline constexpr int32_t kMaxImagineSteps = 150;
inline constexpr int32_t kDefaultImagineSteps = 50;

// Vision.
inline constexpr size_t kMaxUrlBytes = 2048;

// The most field violations one error reports; the rest are dropped (the request is refused
// either way).
inline constexpr size_t kMaxViolations = 64;

// A chat completion request (CreateChatCompletion, StreamChatCompletion, POST
// /v1/chat/completions). On success, the requested model's catalogue entry (never null; valid
// as long as `catalogue`), whose feature_class the request counts against.
absl::StatusOr<const ModelInfo*> ValidateChatCompletion(
    const anyai::v1::ChatCompletionRequest& request, const Catalogue& catalogue,
    int64_t max_message_chars, int max_messages = kDefaultMaxMessages);

// An image generation request (GenerateImages, POST /v1/images/generations).
absl::Status ValidateGenerateImages(const anyai::v1::GenerateImagesRequest& request,
                                    const EndpointModels& models, int64_t max_message_chars);

// An Imagine request (Imagine, GET /v1/imagine).
absl::Status ValidateImagine(const anyai::v1::ImagineRequest& request, const EndpointModels& models,
                             int64_t max_message_chars);

// A GlobalAsk request (Ask, GET /v1/ask).
absl::Status ValidateAsk(const anyai::v1::AskRequest& request, int64_t max_message_chars);

// A vision request (DescribeImage, GET /v1/images/vision).
absl::Status ValidateDescribeImage(const anyai::v1::DescribeImageRequest& request,
                                   const EndpointModels& models);

// Fill what a valid request left to its default. Call only after validation succeeded (a
// normalised pluto request has width/height/steps set, so it would not validate again).
//   GenerateImages: model (the endpoint default), n 1, quality "standard", response_format
//                   "url", size "1024x1024".
//   Imagine:        model (the endpoint default), width and height 1024, steps 50 (for every
//                   model, pluto included: it is the size pluto renders); seed stays unset
//                   (the provider picks one).
//   DescribeImage:  model (the endpoint default).
void ApplyGenerateImagesDefaults(anyai::v1::GenerateImagesRequest* request,
                                 const EndpointModels& models);
void ApplyImagineDefaults(anyai::v1::ImagineRequest* request, const EndpointModels& models);
void ApplyDescribeImageDefaults(anyai::v1::DescribeImageRequest* request,
                                const EndpointModels& models);

// Parses an absolute http(s) URL as the vision endpoint accepts it: what net::Url::Parse accepts
// (server/net/url.h: printable ASCII, no backslash, no user information, a host that is a DNS
// name, a dotted-quad IPv4 address or a bracketed IPv6 address without a zone, a port 1..65535),
// with the scheme http or https (any case) and at most kMaxUrlBytes bytes. InvalidArgument with
// a description that names no field otherwise. Which addresses the host may resolve to is not
// checked here (net::IpAddress::IsPublic, the SSRF guard).
absl::StatusOr<net::Url> ParseHttpUrl(std::string_view url);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_VALIDATION_H_
