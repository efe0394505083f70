#include "server/http/http_api.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/gateway/client_presence.h"
#include "server/gateway/errors.h"
#include "server/http/http_json.h"
#include "server/http/http_query.h"
#include "server/http/http_status.h"
#include "server/http/usage_page.h"
#include "server/net/percent_decoding.h"

namespace anyai::server {
namespace {

HttpResponse JsonResponse(std::string body) {
  HttpResponse r;
  r.headers.emplace_back("content-type", "application/json");
  r.body = std::move(body);
  return r;
}

// Sends `response` with the call's x-ratelimit-* headers.
void Send(HttpExchange& exchange, HttpResponse response,
          const std::optional<RateLimitState>& rate_limit) {
  AddRateLimitHeaders(rate_limit, &response.headers);
  exchange.Respond(std::move(response));
}

// Sends an Outcome: its answer as JSON by `to_json`, or its error.
template <typename T>
void SendJson(HttpExchange& exchange, const Outcome<T>& outcome, std::string (*to_json)(const T&)) {
  Send(exchange,
       outcome.result.ok() ? JsonResponse(to_json(*outcome.result))
                           : ErrorResponse(outcome.result.status()),
       outcome.rate_limit);
}

HttpResponse EventStreamHead(const std::optional<RateLimitState>& rate_limit) {
  HttpResponse head;
  head.headers.emplace_back("content-type", "text/event-stream");
  head.headers.emplace_back("cache-control", "no-cache");
  head.headers.emplace_back("x-accel-buffering", "no");  // nginx in front: do not buffer
  AddRateLimitHeaders(rate_limit, &head.headers);
  // What the transport sends if it must cut the stream (shutdown's grace deadline): an error
  // event, so the client knows the answer is incomplete.
  head.stream_cut_tail = absl::StrCat(
      "data: ",
      ErrorResponse(absl::UnavailableError("the server is shutting down; this stream was cut"))
          .body,
      "\n\n");
  return head;
}

std::string Event(std::string_view data) {
  std::string event = "data: ";
  event.append(data);
  event.append("\n\n");
  return event;
}

// An event stream through the Gateway: the head once the call is admitted, then the events.
// A call refused before its head gets an ordinary error response; one that fails after it ends
// with an error event instead of `done` ([DONE], or nothing for streams without a marker); a
// client that went away gets nothing more.
class EventStream {
 public:
  explicit EventStream(HttpExchange& exchange) : exchange_(exchange) {}

  bool Start(const std::optional<RateLimitState>& rate_limit) {
    return started_ = exchange_.StartStream(EventStreamHead(rate_limit));
  }
  bool Write(std::string_view data) { return exchange_.WriteChunk(Event(data)); }

  void End(const StreamOutcome& outcome, std::string_view done) {
    if (!started_) {
      if (outcome.status.code() == absl::StatusCode::kCancelled) return;
      return Send(exchange_, ErrorResponse(outcome.status), outcome.rate_limit);
    }
    if (outcome.status.ok()) {
      if (!done.empty()) Write(done);
    } else if (outcome.status.code() != absl::StatusCode::kCancelled) {
      Write(ErrorResponse(outcome.status).body);
    }
    exchange_.EndStream();
  }

 private:
  HttpExchange& exchange_;
  bool started_ = false;
};

// Where the client reaches this front: `configured` (ServerConfig.public_base_url) when set,
// else from the request's Host.
std::string BaseUrlOf(const HttpRequest& request, std::string_view configured) {
  if (!configured.empty()) return std::string(configured);
  return ImageBaseUrl(request.Header("host").value_or(""));
}

// While the handler runs, a provider blocked on its upstream can tell that the client left
// (client_presence.h).
class ExchangeProbe {
 public:
  explicit ExchangeProbe(const HttpExchange& exchange)
      : probe_([](const void* e) { return static_cast<const HttpExchange*>(e)->ClientGone(); },
               &exchange) {}

 private:
  ScopedClientProbe probe_;
};

// The Gateway's Caller of an HTTP request; its views point into `request`.
Caller CallerOf(const HttpRequest& request) {
  return Caller{.authorization = request.Header("authorization"),
                .peer = request.peer,
                .forwarded_for = request.Header("x-forwarded-for").value_or(""),
                .public_base_url = {}};
}

}  // namespace

const HttpApi::Route HttpApi::kRoutes[11] = {
    // Starts on the I/O thread; hands itself to a worker when its body asks for a call that
    // blocks (ChatCompletions).
    {"POST", "/chat/completions", Endpoint::kChatCompletions, &HttpApi::ChatCompletions,
     Thread::kIoThreadPerRequest},
    {"GET", "/models", Endpoint::kModels, &HttpApi::Models, Thread::kIoThreadIfNonBlocking},
    {"GET", "/models/*", Endpoint::kModels, &HttpApi::Model, Thread::kIoThreadIfNonBlocking},
    {"POST", "/images/generations", Endpoint::kImagesGenerations, &HttpApi::GenerateImages,
     Thread::kIoThreadIfNonBlocking},
    {"GET", "/imagine", Endpoint::kImagine, &HttpApi::Imagine, Thread::kIoThreadIfNonBlocking},
    {"GET", "/ask", Endpoint::kAsk, &HttpApi::Ask, Thread::kIoThreadIfNonBlocking},
    {"GET", "/images/vision", Endpoint::kVision, &HttpApi::Vision, Thread::kIoThreadIfNonBlocking},
    {"GET", "/check", Endpoint::kCheck, &HttpApi::Check, Thread::kIoThreadIfNonBlocking},
    {"GET", "/images/files/*", Endpoint::kImageFiles, &HttpApi::ImageFile,
     Thread::kIoThreadIfNonBlocking},
    // Answered on the I/O thread: a probe never waits behind busy workers.
    {"GET", "/healthz", Endpoint::kHealth, &HttpApi::Healthz, Thread::kIoThread},
    {"GET", "/readyz", Endpoint::kHealth, &HttpApi::Readyz, Thread::kIoThread},
};

Endpoint HttpApi::EndpointOfRoute(std::string_view route) {
  if (route.rfind("/v1/", 0) == 0) route.remove_prefix(3);
  for (const Route& r : kRoutes) {
    if (route == r.path) return r.endpoint;
  }
  return route == "/metrics" ? Endpoint::kMetrics : Endpoint::kOther;
}

HttpApi::HttpApi(Gateway& gateway, std::function<bool()> ready, std::string public_base_url)
    : gateway_(gateway),
      ready_(std::move(ready)),
      models_json_(ModelListJson(gateway.models())),
      public_base_url_(std::move(public_base_url)) {}

absl::Status HttpApi::AddRoutes(HttpRouter& router) {
  for (const Route& r : kRoutes) {
    // Whether an endpoint blocks does not change while the server runs (it depends on the
    // configuration), except a chat's, which depends on the model its body names.
    const bool io_thread = r.thread == Thread::kIoThread ||
                           r.thread == Thread::kIoThreadPerRequest ||
                           gateway_.AnswersWithoutBlocking(r.endpoint);
    absl::Status s = router.Add(
        r.method, r.path,
        [this, h = r.handler](HttpExchange& x) {
          ExchangeProbe presence(x);
          (this->*h)(x);
        },
        io_thread ? HttpRouter::Dispatch::kInline : HttpRouter::Dispatch::kWorker);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void HttpApi::ChatCompletions(HttpExchange& exchange) {
  absl::StatusOr<ChatCompletionBody> body = ParseChatCompletionBody(exchange.request().body);
  if (!body.ok()) return exchange.Respond(ErrorResponse(body.status()));
  // Parsed once, here: a chat that would block its thread (a stream, whose chunks wait for the
  // client; a model served upstream; admissions that wait for the disk) goes on to a worker
  // with its parsed body.
  if (exchange.OnIoThread() &&
      (body->stream ||
       !gateway_.AnswersWithoutBlocking(Endpoint::kChatCompletions, body->request.model()))) {
    return exchange.ContinueOnWorker([this, body = *std::move(body)](HttpExchange& x) {
      ExchangeProbe presence(x);
      AnswerChat(x, body);
    });
  }
  AnswerChat(exchange, *body);
}

void HttpApi::AnswerChat(HttpExchange& exchange, const ChatCompletionBody& body) {
  const Caller caller = CallerOf(exchange.request());
  if (!body.stream) {
    return SendJson(exchange, gateway_.Chat(caller, body.request), &ChatCompletionJson);
  }
  EventStream events(exchange);
  std::optional<v1::ChatCompletionChunk> usage_chunk;
  const bool include_usage = body.include_usage;
  const StreamOutcome outcome = gateway_.StreamChat(
      caller, body.request, [&](const std::optional<RateLimitState>& r) { return events.Start(r); },
      [&](const v1::ChatCompletionChunk& chunk) {
        if (include_usage && chunk.has_usage()) usage_chunk = chunk;
        return events.Write(ChatCompletionChunkJson(chunk, include_usage));
      });
  if (outcome.status.ok() && usage_chunk.has_value()) {
    events.Write(ChatUsageChunkJson(*usage_chunk));
  }
  events.End(outcome, "[DONE]");
}

void HttpApi::Models(HttpExchange& exchange) {
  Outcome<const v1::ListModelsResponse*> outcome =
      gateway_.ListModels(CallerOf(exchange.request()));
  Send(exchange,
       outcome.result.ok() ? JsonResponse(models_json_) : ErrorResponse(outcome.result.status()),
       outcome.rate_limit);
}

void HttpApi::Model(HttpExchange& exchange) {
  const std::string& path = exchange.request().path;
  std::optional<std::string> id = net::PercentDecode(path.substr(path.rfind('/') + 1));
  if (!id.has_value()) {
    return exchange.Respond(ErrorResponse(InvalidField("model", "malformed %-escape")));
  }
  SendJson(exchange, gateway_.GetModel(CallerOf(exchange.request()), *id), &ModelJson);
}

void HttpApi::GenerateImages(HttpExchange& exchange) {
  absl::StatusOr<v1::GenerateImagesRequest> request =
      ParseGenerateImagesBody(exchange.request().body);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  Caller caller = CallerOf(exchange.request());
  const std::string base = BaseUrlOf(exchange.request(), public_base_url_);
  caller.public_base_url = base;
  SendJson(exchange, gateway_.GenerateImages(caller, *std::move(request)), &GenerateImagesJson);
}

void HttpApi::ImageFile(HttpExchange& exchange) {
  const std::string& path = exchange.request().path;
  absl::StatusOr<ImageStore::Image> image =
      gateway_.FetchImage(std::string_view(path).substr(path.rfind('/') + 1));
  if (!image.ok()) return exchange.Respond(ErrorResponse(image.status()));
  HttpResponse response;
  response.headers.emplace_back("content-type", "image/png");
  response.headers.emplace_back("x-content-type-options", "nosniff");
  // Anyone with the URL may fetch it, until it expires; shared caches need not keep it.
  response.headers.emplace_back(
      "cache-control", absl::StrCat("private, max-age=", absl::ToInt64Seconds(image->ttl_left)));
  response.body = *image->png;
  exchange.Respond(std::move(response));
}

void HttpApi::Imagine(HttpExchange& exchange) {
  absl::StatusOr<v1::ImagineRequest> request = ImagineRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  Outcome<v1::ImagineResponse> image =
      gateway_.Imagine(CallerOf(exchange.request()), *std::move(request));
  if (!image.result.ok()) {
    return Send(exchange, ErrorResponse(image.result.status()), image.rate_limit);
  }
  HttpResponse response;
  response.headers.emplace_back("content-type", image.result->content_type());
  response.body = std::move(*image.result->mutable_image());
  Send(exchange, std::move(response), image.rate_limit);
}

void HttpApi::Ask(HttpExchange& exchange) {
  absl::StatusOr<v1::AskRequest> request = AskRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  EventStream events(exchange);
  const StreamOutcome outcome = gateway_.Ask(
      CallerOf(exchange.request()), *request,
      [&](const std::optional<RateLimitState>& r) { return events.Start(r); },
      [&](const v1::AskChunk& chunk) { return events.Write(AskChunkJson(chunk)); });
  // The seed's stream is JSON chunks only: no [DONE] marker, the stream just ends.
  events.End(outcome, "");
}

void HttpApi::Vision(HttpExchange& exchange) {
  absl::StatusOr<v1::DescribeImageRequest> request =
      DescribeImageRequestFromQuery(exchange.request().query);
  if (!request.ok()) return exchange.Respond(ErrorResponse(request.status()));
  Outcome<v1::DescribeImageResponse> described =
      gateway_.DescribeImage(CallerOf(exchange.request()), *std::move(request));
  const std::optional<std::string_view> accept = exchange.request().Header("accept");
  if (!described.result.ok() ||
      (accept.has_value() && accept->find("application/json") != std::string_view::npos)) {
    return SendJson(exchange, described, &DescribeImageJson);
  }
  HttpResponse response;
  response.headers.emplace_back("content-type", "text/plain; charset=utf-8");
  response.body = std::move(*described.result->mutable_description());
  Send(exchange, std::move(response), described.rate_limit);
}

void HttpApi::Check(HttpExchange& exchange) {
  const HttpRequest& r = exchange.request();
  absl::StatusOr<std::string> key = CheckKeyFromQuery(r.query);
  // A browser (Accept prefers text/html) gets the usage page, its errors too as a small page
  // with the same status: someone who typed the URL reads a sentence, not OpenAI's JSON.
  const bool html = PrefersHtml(r.Header("accept"));
  if (!key.ok()) {
    return exchange.Respond(html ? UsageErrorPage(key.status()) : ErrorResponse(key.status()));
  }
  const Outcome<v1::CheckKeyResponse> outcome = gateway_.CheckKey(CallerOf(r), *key);
  HttpResponse response = !html ? outcome.result.ok() ? JsonResponse(CheckKeyJson(*outcome.result))
                                                      : ErrorResponse(outcome.result.status())
                          : outcome.result.ok() ? UsagePage(*outcome.result, absl::Now())
                                                : UsageErrorPage(outcome.result.status());
  // The answer depends on Accept, and usage changes with every call: no cache may keep it.
  response.headers.emplace_back("vary", "Accept");
  if (!html) response.headers.emplace_back("cache-control", "no-store");
  Send(exchange, std::move(response), outcome.rate_limit);
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
