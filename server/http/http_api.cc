#include "server/http/http_api.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/gateway/errors.h"
#include "server/http/http_json.h"
#include "server/http/http_query.h"
#include "server/http/http_status.h"

namespace anyai::server {
namespace {

// What a present but blank Authorization header becomes: not "Bearer <key>", so the Gateway
// refuses it (401) instead of treating the caller as anonymous.
constexpr std::string_view kBlankAuthorization = " ";

HttpResponse JsonResponse(std::string body) {
  HttpResponse r;
  r.headers.emplace_back("content-type", "application/json");
  r.body = std::move(body);
  return r;
}

// Sends `response` with the x-ratelimit-* of `decision`, when the request was admitted.
void Send(HttpExchange& exchange, HttpResponse response, const quota::Decision* decision) {
  if (decision != nullptr) AddRateLimitHeaders(*decision, &response.headers);
  exchange.Respond(std::move(response));
}

template <typename T>
void SendResult(HttpExchange& exchange, const absl::StatusOr<T>& result,
                const quota::Decision& decision, std::string (*to_json)(const T&)) {
  Send(exchange,
       result.ok() ? JsonResponse(to_json(*result))
                   : ErrorResponse(result.status(), ErrorSource::kProvider),
       &decision);
}

HttpResponse EventStreamHead(const quota::Decision& decision) {
  HttpResponse head;
  head.headers.emplace_back("content-type", "text/event-stream");
  head.headers.emplace_back("cache-control", "no-cache");
  head.headers.emplace_back("x-accel-buffering", "no");  // nginx in front: do not buffer
  AddRateLimitHeaders(decision, &head.headers);
  return head;
}

std::string Event(std::string_view data) {
  std::string event = "data: ";
  event.append(data);
  event.append("\n\n");
  return event;
}

// A stream's end: [DONE] (when `done` is set) after success, an error event after a failure,
// nothing when the client went away.
void EndEvents(HttpExchange& exchange, const absl::Status& status, std::string_view done) {
  if (status.ok()) {
    if (!done.empty()) exchange.WriteChunk(Event(done));
  } else if (status.code() != absl::StatusCode::kCancelled) {
    exchange.WriteChunk(Event(ErrorResponse(status, ErrorSource::kProvider).body));
  }
  exchange.EndStream();
}

// "%xx" escapes of a path segment decoded; nullopt when malformed.
std::optional<std::string> DecodePathSegment(std::string_view segment) {
  std::string out;
  for (size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '%') {
      out.push_back(segment[i]);
      continue;
    }
    if (i + 2 >= segment.size() || !absl::ascii_isxdigit(segment[i + 1]) ||
        !absl::ascii_isxdigit(segment[i + 2])) {
      return std::nullopt;
    }
    const auto hex = [](char c) {
      return absl::ascii_isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
    };
    const int value = hex(segment[i + 1]) * 16 + hex(segment[i + 2]);
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

}  // namespace

Caller CallerOf(const HttpRequest& request) {
  Caller caller;
  if (std::optional<std::string_view> a = request.Header("authorization")) {
    caller.authorization = a->empty() ? kBlankAuthorization : *a;
  }
  caller.peer = request.peer;
  if (std::optional<std::string_view> f = request.Header("x-forwarded-for")) {
    caller.forwarded_for = *f;
  }
  return caller;
}

HttpApi::HttpApi(Gateway& gateway, std::function<bool()> ready)
    : gateway_(gateway),
      ready_(std::move(ready)),
      models_json_(ModelListJson(gateway.ListModels())) {}

absl::Status HttpApi::AddRoutes(HttpRouter& router) {
  using Handler = void (HttpApi::*)(HttpExchange&);
  struct Entry {
    const char* method;
    const char* path;
    Handler handler;
    HttpRouter::Dispatch dispatch;
  };
  constexpr auto kWorker = HttpRouter::Dispatch::kWorker;
  constexpr auto kInline = HttpRouter::Dispatch::kInline;
  const Entry entries[] = {
      {"POST", "/chat/completions", &HttpApi::ChatCompletions, kWorker},
      {"GET", "/models", &HttpApi::Models, kWorker},
      {"GET", "/models/*", &HttpApi::Model, kWorker},
      {"POST", "/images/generations", &HttpApi::GenerateImages, kWorker},
      {"GET", "/imagine", &HttpApi::Imagine, kWorker},
      {"GET", "/ask", &HttpApi::Ask, kWorker},
      {"GET", "/images/vision", &HttpApi::Vision, kWorker},
      {"GET", "/check", &HttpApi::Check, kWorker},
      {"GET", "/healthz", &HttpApi::Healthz, kInline},
      {"GET", "/readyz", &HttpApi::Readyz, kInline},
  };
  for (const Entry& e : entries) {
    absl::Status s = router.Add(
        e.method, e.path, [this, h = e.handler](HttpExchange& x) { (this->*h)(x); }, e.dispatch);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void HttpApi::ChatCompletions(HttpExchange& exchange) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(exchange.request().body);
  if (!body.ok()) return exchange.Respond(ErrorResponse(body.status()));
  absl::StatusOr<Admitted> admitted =
      gateway_.AdmitChat(CallerOf(exchange.request()), body->request);
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  if (!body->stream) {
    SendResult(exchange, admitted->provider->Chat(body->request), admitted->decision,
               &ChatCompletionJson);
    return;
  }
  if (!exchange.StartStream(EventStreamHead(admitted->decision))) return;
  std::optional<v1::ChatCompletionChunk> usage_chunk;
  const bool include_usage = body->include_usage;
  absl::Status status =
      admitted->provider->StreamChat(body->request, [&](const v1::ChatCompletionChunk& chunk) {
        if (include_usage && chunk.has_usage()) usage_chunk = chunk;
        return exchange.WriteChunk(Event(ChatCompletionChunkJson(chunk, include_usage)));
      });
  if (status.ok() && usage_chunk.has_value()) {
    exchange.WriteChunk(Event(ChatUsageChunkJson(*usage_chunk)));
  }
  EndEvents(exchange, status, "[DONE]");
}

void HttpApi::Models(HttpExchange& exchange) {
  absl::StatusOr<Admitted> admitted = gateway_.AdmitMeta(CallerOf(exchange.request()));
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  Send(exchange, JsonResponse(models_json_), &admitted->decision);
}

void HttpApi::Model(HttpExchange& exchange) {
  const std::string& path = exchange.request().path;
  std::optional<std::string> id = DecodePathSegment(path.substr(path.rfind('/') + 1));
  if (!id.has_value()) {
    return exchange.Respond(ErrorResponse(InvalidField("model", "malformed %-escape")));
  }
  absl::StatusOr<Admitted> admitted = gateway_.AdmitMeta(CallerOf(exchange.request()));
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  for (const v1::Model& m : gateway_.ListModels().data()) {
    if (m.id() == *id) return Send(exchange, JsonResponse(ModelJson(m)), &admitted->decision);
  }
  Send(exchange, ErrorResponse(UnknownModel("model", *id)), &admitted->decision);
}

void HttpApi::GenerateImages(HttpExchange& exchange) {
  absl::StatusOr<v1::GenerateImagesRequest> request =
      ParseGenerateImagesBody(exchange.request().body);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  absl::StatusOr<Admitted> admitted = gateway_.AdmitImages(CallerOf(exchange.request()), *request);
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  SendResult(exchange, admitted->provider->GenerateImages(*request), admitted->decision,
             &GenerateImagesJson);
}

void HttpApi::Imagine(HttpExchange& exchange) {
  absl::StatusOr<v1::ImagineRequest> request = ImagineRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  absl::StatusOr<Admitted> admitted = gateway_.AdmitImagine(CallerOf(exchange.request()), *request);
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  absl::StatusOr<v1::ImagineResponse> image = admitted->provider->Imagine(*request);
  if (!image.ok()) {
    return Send(exchange, ErrorResponse(image.status(), ErrorSource::kProvider),
                &admitted->decision);
  }
  HttpResponse response;
  response.headers.emplace_back(
      "content-type", image->content_type().empty() ? "image/png" : image->content_type());
  response.body = std::move(*image->mutable_image());
  Send(exchange, std::move(response), &admitted->decision);
}

void HttpApi::Ask(HttpExchange& exchange) {
  absl::StatusOr<v1::AskRequest> request = AskRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  absl::StatusOr<Admitted> admitted = gateway_.AdmitAsk(CallerOf(exchange.request()), *request);
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  if (!exchange.StartStream(EventStreamHead(admitted->decision))) return;
  absl::Status status = admitted->provider->Ask(*request, [&](const v1::AskChunk& chunk) {
    return exchange.WriteChunk(Event(AskChunkJson(chunk)));
  });
  // The seed's stream is JSON chunks only: no [DONE] marker, the stream just ends.
  EndEvents(exchange, status, "");
}

void HttpApi::Vision(HttpExchange& exchange) {
  absl::StatusOr<v1::DescribeImageRequest> request =
      DescribeImageRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  absl::StatusOr<Admitted> admitted = gateway_.AdmitVision(CallerOf(exchange.request()), *request);
  if (!admitted.ok()) return exchange.Respond(ErrorResponse(admitted.status()));
  absl::StatusOr<v1::DescribeImageResponse> described = admitted->provider->DescribeImage(*request);
  if (!described.ok()) {
    return Send(exchange, ErrorResponse(described.status(), ErrorSource::kProvider),
                &admitted->decision);
  }
  if (described->model().empty()) described->set_model(request->model());
  const std::optional<std::string_view> accept = exchange.request().Header("accept");
  if (accept.has_value() && accept->find("application/json") != std::string_view::npos) {
    return Send(exchange, JsonResponse(DescribeImageJson(*described)), &admitted->decision);
  }
  HttpResponse response;
  response.headers.emplace_back("content-type", "text/plain; charset=utf-8");
  response.body = std::move(*described->mutable_description());
  Send(exchange, std::move(response), &admitted->decision);
}

void HttpApi::Check(HttpExchange& exchange) {
  const HttpRequest& r = exchange.request();
  absl::StatusOr<std::string> key = CheckKeyFromQuery(r.query);
  if (!key.ok()) return exchange.Respond(ErrorResponse(key.status()));
  const Caller caller = CallerOf(r);
  if (key->empty() && caller.authorization.empty()) {
    return exchange.Respond(ErrorResponse(Unauthenticated(
        "/check needs an API key: ?key=<API key> or Authorization: Bearer <API key>")));
  }
  quota::Decision decision;  // limit 0 (no headers) unless the meta class admitted the call
  absl::StatusOr<v1::CheckKeyResponse> usage = gateway_.CheckKey(caller, *key, &decision);
  Send(exchange, usage.ok() ? JsonResponse(CheckKeyJson(*usage)) : ErrorResponse(usage.status()),
       &decision);
}

void HttpApi::Healthz(HttpExchange& exchange) {
  exchange.Respond(
      HttpResponse{.status = 200, .headers = {{"content-type", "text/plain"}}, .body = "ok\n"});
}

void HttpApi::Readyz(HttpExchange& exchange) {
  const bool ready = ready_();
  exchange.Respond(HttpResponse{.status = ready ? 200 : 503,
                                .headers = {{"content-type", "text/plain"}},
                                .body = ready ? "ready\n" : "not ready\n"});
}

}  // namespace anyai::server
