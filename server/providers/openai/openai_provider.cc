#include "server/providers/openai/openai_provider.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/errors.h"
#include "server/gateway/validation.h"
#include "server/net/url.h"
#include "server/providers/openai/sse_parser.h"
#include "server/providers/openai/upstream_http.h"

namespace anyai::server {
namespace {

using Json = nlohmann::json;

// Absent optional fields take the defaults the Gateway fills in (validation.h's constants, the
// default models of catalogue.h), so that the provider answers the same when called directly.
constexpr char kChatPath[] = "/chat/completions";
constexpr char kImagesPath[] = "/images/generations";
constexpr char kDone[] = "[DONE]";
// The most of the upstream's own error text quoted in ours.
constexpr size_t kMaxQuotedErrorBytes = 300;

std::string Dump(const Json& j) {
  // Our text is validated UTF-8; `replace` only guards against a bug turning into a throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The JSON object at `text`, or nullopt when it is not one.
std::optional<Json> ParseObject(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// Accessors that never throw: a missing key, a null and a value of another type are all
// "absent".
const Json* Member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> StringMember(const Json& object, const char* key) {
  const Json* j = Member(object, key);
  if (j == nullptr || !j->is_string()) return std::nullopt;
  return j->get<std::string>();
}

std::optional<int64_t> IntMember(const Json& object, const char* key) {
  const Json* j = Member(object, key);
  if (j == nullptr) return std::nullopt;
  if (j->is_number_integer()) return j->get<int64_t>();
  if (j->is_number_unsigned()) return static_cast<int64_t>(j->get<uint64_t>());
  if (j->is_number_float()) return static_cast<int64_t>(j->get<double>());
  return std::nullopt;
}

int32_t Int32Member(const Json& object, const char* key) {
  const int64_t v = IntMember(object, key).value_or(0);
  return static_cast<int32_t>(std::clamp<int64_t>(v, 0, INT32_MAX));
}

// A message's content: a string, or (as some servers send it) an array of {type: "text",
// text} parts.
std::optional<std::string> ContentOf(const Json& message) {
  const Json* content = Member(message, "content");
  if (content == nullptr) return std::nullopt;
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) return std::nullopt;
  std::string text;
  for (const Json& part : *content) {
    if (std::optional<std::string> t = StringMember(part, "text")) text += *t;
  }
  return text;
}

void ReadUsage(const Json& j, v1::CompletionUsage* usage) {
  usage->set_prompt_tokens(Int32Member(j, "prompt_tokens"));
  usage->set_completion_tokens(Int32Member(j, "completion_tokens"));
  const int32_t total = Int32Member(j, "total_tokens");
  usage->set_total_tokens(total != 0 ? total : usage->prompt_tokens() + usage->completion_tokens());
}

std::string RandomCompletionId() {
  absl::BitGen gen;
  return absl::StrCat("chatcmpl-", absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

// What every chunk and completion of one answer shares when the upstream leaves it out.
struct Fallback {
  std::string id;
  int64_t created;
};

template <typename Message>
void ReadHeader(const Json& j, const std::string& model, const Fallback& fallback, Message* out) {
  out->set_id(StringMember(j, "id").value_or(fallback.id));
  out->set_created(IntMember(j, "created").value_or(fallback.created));
  out->set_model(model);
  out->set_system_fingerprint(StringMember(j, "system_fingerprint").value_or(""));
}

std::optional<v1::ChatCompletion> ToCompletion(const Json& j, const std::string& model,
                                               const Fallback& fallback) {
  const Json* choices = Member(j, "choices");
  if (choices == nullptr || !choices->is_array() || choices->empty()) return std::nullopt;
  v1::ChatCompletion out;
  ReadHeader(j, model, fallback, &out);
  out.set_object("chat.completion");
  int index = 0;
  for (const Json& c : *choices) {
    const Json* message = Member(c, "message");
    if (message == nullptr || !message->is_object()) return std::nullopt;
    v1::ChatCompletionChoice* choice = out.add_choices();
    choice->set_index(static_cast<int32_t>(IntMember(c, "index").value_or(index++)));
    choice->mutable_message()->set_role(StringMember(*message, "role").value_or("assistant"));
    choice->mutable_message()->set_content(ContentOf(*message).value_or(""));
    choice->set_finish_reason(StringMember(c, "finish_reason").value_or("stop"));
  }
  if (const Json* usage = Member(j, "usage"); usage != nullptr && usage->is_object()) {
    ReadUsage(*usage, out.mutable_usage());
  }
  return out;
}

std::optional<v1::ChatCompletionChunk> ToChunk(const Json& j, const std::string& model,
                                               const Fallback& fallback) {
  const Json* choices = Member(j, "choices");
  if (choices != nullptr && !choices->is_array()) return std::nullopt;
  v1::ChatCompletionChunk out;
  ReadHeader(j, model, fallback, &out);
  out.set_object("chat.completion.chunk");
  if (choices != nullptr) {
    int index = 0;
    for (const Json& c : *choices) {
      if (!c.is_object()) return std::nullopt;
      v1::ChatCompletionChunkChoice* choice = out.add_choices();
      choice->set_index(static_cast<int32_t>(IntMember(c, "index").value_or(index++)));
      v1::ChatCompletionDelta* delta = choice->mutable_delta();
      if (const Json* d = Member(c, "delta"); d != nullptr && d->is_object()) {
        if (std::optional<std::string> role = StringMember(*d, "role")) delta->set_role(*role);
        if (std::optional<std::string> content = ContentOf(*d)) delta->set_content(*content);
      }
      if (std::optional<std::string> finish = StringMember(c, "finish_reason")) {
        choice->set_finish_reason(*finish);
      }
    }
  }
  if (const Json* usage = Member(j, "usage"); usage != nullptr && usage->is_object()) {
    ReadUsage(*usage, out.mutable_usage());
  }
  return out;
}

bool Finishes(const v1::ChatCompletionChunk& chunk) {
  for (const v1::ChatCompletionChunkChoice& c : chunk.choices()) {
    if (c.has_finish_reason()) return true;
  }
  return false;
}

// The upstream's own description of an error: OpenAI's {"error": {"message"}}, or the
// {"error": "..."}, {"message"} and {"detail"} of other servers, or the start of a text body.
std::string UpstreamErrorText(const std::string& body) {
  if (std::optional<Json> j = ParseObject(body)) {
    if (const Json* error = Member(*j, "error")) {
      if (error->is_string()) return error->get<std::string>();
      if (std::optional<std::string> m = StringMember(*error, "message")) return *m;
    }
    if (std::optional<std::string> m = StringMember(*j, "message")) return *m;
    if (std::optional<std::string> m = StringMember(*j, "detail")) return *m;
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(body));
}

bool IsPng(absl::string_view bytes, int64_t* width, int64_t* height) {
  static constexpr char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 24 || bytes.substr(0, 8) != absl::string_view(kSignature, 8) ||
      bytes.substr(12, 4) != "IHDR") {
    return false;
  }
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(bytes[at + i]);
    return static_cast<int64_t>(v);
  };
  *width = be32(16);
  *height = be32(20);
  return true;
}

// An /images/generations answer: the object, when its "data" is a non-empty list.
std::optional<Json> ImagesAnswer(const std::string& text) {
  std::optional<Json> j = ParseObject(text);
  const Json* data = j ? Member(*j, "data") : nullptr;
  if (data == nullptr || !data->is_array() || data->empty()) return std::nullopt;
  return j;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAIProvider>> OpenAIProvider::Create(
    OpenAIProviderOptions options, SsrfGuard ssrf, std::function<absl::Time()> clock) {
  std::string& base = options.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  absl::StatusOr<net::Url> url = net::Url::Parse(base);
  if (!url.ok() || (url->scheme != "http" && url->scheme != "https") || url->query.has_value() ||
      url->fragment.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("base_url: \"", QuoteForMessage(base),
                     "\" is not an http(s) base URL such as \"https://upstream.example/v1\""));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout: must be positive, got ", absl::FormatDuration(options.timeout)));
  }
  options.connect_timeout = std::min(options.connect_timeout, options.timeout);
  absl::StatusOr<std::unique_ptr<UpstreamHttp>> http = UpstreamHttp::Create();
  if (!http.ok()) return http.status();
  return std::unique_ptr<OpenAIProvider>(
      new OpenAIProvider(std::move(options), std::move(ssrf), std::move(clock), *std::move(http)));
}

OpenAIProvider::OpenAIProvider(OpenAIProviderOptions options, SsrfGuard ssrf,
                               std::function<absl::Time()> clock,
                               std::unique_ptr<UpstreamHttp> http)
    : options_(std::move(options)),
      ssrf_(std::move(ssrf)),
      clock_(std::move(clock)),
      http_(std::move(http)) {}

const std::string& OpenAIProvider::UpstreamModel(const std::string& model) const {
  auto it = options_.model_map.find(model);
  return it == options_.model_map.end() ? model : it->second;
}

UpstreamRequest OpenAIProvider::MakeRequest(const char* path, std::string body) const {
  return UpstreamRequest{.url = absl::StrCat(options_.base_url, path),
                         .body = std::move(body),
                         .bearer_token = options_.api_key,
                         .timeout = options_.timeout,
                         .connect_timeout = options_.connect_timeout};
}

std::string OpenAIProvider::Sanitize(absl::string_view text) const {
  std::string clean(text);
  if (!options_.api_key.empty()) {
    absl::StrReplaceAll({{options_.api_key, "<redacted>"}}, &clean);
  }
  return QuoteForMessage(clean, kMaxQuotedErrorBytes);
}

absl::Status OpenAIProvider::HttpError(const UpstreamResponse& response) const {
  const int status = response.status;
  const std::string who = absl::StrCat("upstream \"", options_.name, "\"");
  const std::string said = Sanitize(UpstreamErrorText(response.body));
  const std::string detail = said.empty() ? "" : absl::StrCat(": ", said);
  switch (status) {
    case 400:
    case 413:
    case 422:
      return absl::InvalidArgumentError(
          absl::StrCat(who, " refused the request (HTTP ", status, ")", detail));
    case 401:
    case 403:
      // The upstream's text is dropped: OpenAI's quotes part of the key it was given.
      return absl::UnavailableError(
          absl::StrCat(who, " rejected the gateway's credentials (HTTP ", status,
                       "); the operator must fix the provider's api key"));
    case 404:
      return absl::UnavailableError(
          absl::StrCat(who, " does not serve this model or path (HTTP 404)", detail));
    case 408:
    case 504:
      return absl::DeadlineExceededError(
          absl::StrCat(who, " timed out (HTTP ", status, ")", detail));
    case 429: {
      std::string retry;
      if (int seconds = 0; absl::SimpleAtoi(response.retry_after, &seconds) && seconds >= 0) {
        retry = absl::StrCat("; it asks to retry after ", seconds, "s");
      }
      return absl::UnavailableError(
          absl::StrCat(who, " is rate limiting the gateway (HTTP 429", retry, ")", detail));
    }
    default:
      return absl::UnavailableError(absl::StrCat(who, " failed (HTTP ", status, ")", detail));
  }
}

absl::Status OpenAIProvider::TransportError(const absl::Status& status) const {
  const std::string who = absl::StrCat("upstream \"", options_.name, "\"");
  if (absl::IsDeadlineExceeded(status)) {
    return absl::DeadlineExceededError(absl::StrCat(who, " timed out: ", status.message()));
  }
  if (absl::IsCancelled(status)) return status;
  return absl::UnavailableError(absl::StrCat(who, " is unreachable: ", status.message()));
}

absl::Status OpenAIProvider::Malformed(absl::string_view what) const {
  return absl::UnavailableError(
      absl::StrCat("upstream \"", options_.name, "\" sent a malformed answer: ", what));
}

absl::StatusOr<std::string> OpenAIProvider::PostJson(const char* path, std::string body) {
  absl::StatusOr<UpstreamResponse> response = http_->Post(MakeRequest(path, std::move(body)));
  if (!response.ok()) return TransportError(response.status());
  if (response->status < 200 || response->status >= 300) return HttpError(*response);
  return std::move(response->body);
}

namespace {

Json ChatBody(const v1::ChatCompletionRequest& request, const std::string& upstream_model,
              bool stream) {
  Json body = {{"model", upstream_model}, {"messages", Json::array()}};
  for (const v1::ChatMessage& m : request.messages()) {
    body["messages"].push_back({{"role", m.role()}, {"content", m.content()}});
  }
  if (request.has_max_tokens()) body["max_tokens"] = request.max_tokens();
  if (request.has_temperature()) body["temperature"] = request.temperature();
  if (request.has_top_p()) body["top_p"] = request.top_p();
  if (request.has_top_k() && request.top_k() > 0) body["top_k"] = request.top_k();
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  }
  return body;
}

}  // namespace

absl::StatusOr<v1::ChatCompletion> OpenAIProvider::Chat(const v1::ChatCompletionRequest& request) {
  absl::StatusOr<std::string> body =
      PostJson(kChatPath, Dump(ChatBody(request, UpstreamModel(request.model()), false)));
  if (!body.ok()) return body.status();
  std::optional<Json> j = ParseObject(*body);
  if (!j) return Malformed("not a JSON object");
  const Fallback fallback{RandomCompletionId(), absl::ToUnixSeconds(clock_())};
  std::optional<v1::ChatCompletion> completion = ToCompletion(*j, request.model(), fallback);
  if (!completion) return Malformed("no choices with a message");
  return *std::move(completion);
}

absl::Status OpenAIProvider::StreamChat(
    const v1::ChatCompletionRequest& request,
    absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) {
  const Fallback fallback{RandomCompletionId(), absl::ToUnixSeconds(clock_())};
  SseParser parser;
  // The chunk with finish_reason, held until the next event can add usage to it.
  std::optional<v1::ChatCompletionChunk> held;
  bool done = false;
  bool client_gone = false;
  absl::Status stream_error;

  auto send = [&](const v1::ChatCompletionChunk& chunk) {
    if (!emit(chunk)) client_gone = true;
    return !client_gone;
  };
  auto on_event = [&](absl::string_view data) -> bool {
    if (absl::StripAsciiWhitespace(data) == kDone) {
      done = true;
      return false;
    }
    std::optional<Json> j = ParseObject(data);
    if (!j) {
      stream_error = Malformed("a stream event that is not a JSON object");
      return false;
    }
    if (Member(*j, "error") != nullptr) {
      stream_error = absl::UnavailableError(absl::StrCat(
          "upstream \"", options_.name,
          "\" failed during the stream: ", Sanitize(UpstreamErrorText(std::string(data)))));
      return false;
    }
    std::optional<v1::ChatCompletionChunk> chunk = ToChunk(*j, request.model(), fallback);
    if (!chunk) {
      stream_error = Malformed("a chunk whose choices are not a list");
      return false;
    }
    if (chunk->choices_size() == 0) {
      // OpenAI's usage-only last chunk (stream_options.include_usage).
      if (held && chunk->has_usage()) *held->mutable_usage() = chunk->usage();
      return true;
    }
    if (held) {
      if (!send(*held)) return false;
      held.reset();
    }
    if (Finishes(*chunk)) {
      held = *std::move(chunk);
      return true;
    }
    return send(*chunk);
  };

  absl::StatusOr<UpstreamResponse> response = http_->PostStream(
      MakeRequest(kChatPath, Dump(ChatBody(request, UpstreamModel(request.model()), true))),
      [&](absl::string_view bytes) { return parser.Feed(bytes, on_event); });

  if (client_gone) return absl::CancelledError("the client went away");
  if (!stream_error.ok()) return stream_error;
  if (parser.too_long()) return Malformed("a stream line longer than 4 MiB");
  if (done) {
    if (held && !send(*held)) return absl::CancelledError("the client went away");
    return absl::OkStatus();
  }
  if (!response.ok()) return TransportError(response.status());
  if (response->status < 200 || response->status >= 300) return HttpError(*response);
  // The body ended without `data: [DONE]`. A finished answer is still whole.
  if (held) {
    if (!send(*held)) return absl::CancelledError("the client went away");
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("upstream \"", options_.name,
                                             "\" ended the stream before the answer was finished"));
}

absl::StatusOr<v1::GenerateImagesResponse> OpenAIProvider::GenerateImages(
    const v1::GenerateImagesRequest& request) {
  const std::string model(request.model().empty() ? kDefaultImageGenerationModel : request.model());
  const std::string format =
      request.response_format().empty() ? kDefaultImageResponseFormat : request.response_format();
  Json body = {{"model", UpstreamModel(model)},
               {"prompt", request.prompt()},
               {"n", request.has_n() ? request.n() : kDefaultImagesPerRequest},
               {"size", request.size().empty() ? kDefaultImageSize : request.size()},
               {"response_format", format}};
  if (!request.quality().empty()) body["quality"] = request.quality();
  absl::StatusOr<std::string> text = PostJson(kImagesPath, Dump(body));
  if (!text.ok()) return text.status();
  std::optional<Json> j = ImagesAnswer(*text);
  if (!j) return Malformed("no \"data\" list of images");
  const Json* data = Member(*j, "data");
  v1::GenerateImagesResponse out;
  out.set_created(IntMember(*j, "created").value_or(absl::ToUnixSeconds(clock_())));
  for (const Json& item : *data) {
    v1::Image* image = out.add_data();
    if (std::optional<std::string> b64 = StringMember(item, "b64_json")) {
      image->set_b64_json(*std::move(b64));
    } else if (std::optional<std::string> url = StringMember(item, "url")) {
      image->set_url(*std::move(url));
    } else {
      return Malformed("an image with neither \"url\" nor \"b64_json\"");
    }
  }
  return out;
}

absl::StatusOr<v1::ImagineResponse> OpenAIProvider::Imagine(const v1::ImagineRequest& request) {
  const std::string model(request.model().empty() ? kDefaultImagineModel : request.model());
  const int64_t width = request.has_width() ? request.width() : kDefaultImagineSide;
  const int64_t height = request.has_height() ? request.height() : kDefaultImagineSide;
  Json body = {{"model", UpstreamModel(model)},
               {"prompt", request.prompt()},
               {"n", 1},
               {"size", absl::StrCat(width, "x", height)},
               {"response_format", "b64_json"}};
  if (!request.negative_prompt().empty()) body["negative_prompt"] = request.negative_prompt();
  absl::StatusOr<std::string> text = PostJson(kImagesPath, Dump(body));
  if (!text.ok()) return text.status();
  std::optional<Json> j = ImagesAnswer(*text);
  if (!j) return Malformed("no \"data\" list of images");
  const Json* data = Member(*j, "data");
  std::optional<std::string> b64 = StringMember((*data)[0], "b64_json");
  if (!b64) return Malformed("no \"b64_json\" image (the gateway does not fetch image URLs)");
  v1::ImagineResponse out;
  if (!absl::Base64Unescape(*b64, out.mutable_image())) return Malformed("invalid base64");
  int64_t got_width = 0;
  int64_t got_height = 0;
  if (!IsPng(out.image(), &got_width, &got_height)) return Malformed("the image is not a PNG");
  if (got_width != width || got_height != height) {
    return absl::UnavailableError(absl::StrCat("upstream \"", options_.name, "\" drew ", got_width,
                                               "x", got_height, " pixels, not the ", width, "x",
                                               height, " asked for"));
  }
  out.set_content_type("image/png");
  return out;
}

absl::Status OpenAIProvider::Ask(const v1::AskRequest&,
                                 absl::FunctionRef<bool(const v1::AskChunk&)>) {
  return absl::UnimplementedError(absl::StrCat(
      "provider \"", options_.name,
      "\" (an OpenAI-compatible upstream) cannot answer /v1/ask: the OpenAI API has no "
      "GlobalAsk; route `ask` to the builtin provider"));
}

absl::StatusOr<v1::DescribeImageResponse> OpenAIProvider::DescribeImage(
    const v1::DescribeImageRequest& request) {
  if (absl::Status s = ssrf_.CheckUrl(request.url()); !s.ok()) return s;
  const std::string model(request.model().empty() ? kDefaultVisionModel : request.model());
  Json content = Json::array();
  content.push_back({{"type", "text"}, {"text", kDescribePrompt}});
  content.push_back({{"type", "image_url"}, {"image_url", {{"url", request.url()}}}});
  Json body = {{"model", UpstreamModel(model)},
               {"messages", Json::array({{{"role", "user"}, {"content", content}}})}};
  absl::StatusOr<std::string> text = PostJson(kChatPath, Dump(body));
  if (!text.ok()) return text.status();
  std::optional<Json> j = ParseObject(*text);
  if (!j) return Malformed("not a JSON object");
  std::optional<v1::ChatCompletion> completion =
      ToCompletion(*j, model, Fallback{"", absl::ToUnixSeconds(clock_())});
  if (!completion) return Malformed("no choices with a message");
  const std::string& description = completion->choices(0).message().content();
  if (description.empty()) return Malformed("an empty description");
  v1::DescribeImageResponse out;
  out.set_description(description);
  out.set_model(model);
  return out;
}

}  // namespace anyai::server
