// The endpoints of the OpenAI-compatible HTTP API (SPEC §4), as routes of an HttpRouter. Each
// turns its request (a JSON body: http_json.h; a query string: http_query.h) into the very
// Gateway call the gRPC front makes (server/grpc/anyai_service.cc), and the Outcome into the
// answer in OpenAI's shape. No rule lives here; errors map to HTTP in http_status.h.
//
//   method  path (also under /v1)  answer
//   POST    /chat/completions      chat.completion JSON, or with "stream": true a
//                                  text/event-stream of `data: {chat.completion.chunk}` events
//                                  ending with `data: [DONE]`
//   GET     /models                {"object": "list", "data": [...]}
//   GET     /models/{id}           one model (as OpenAI's models.retrieve), or 404
//   POST    /images/generations    {"created", "data": [{"url"} | {"b64_json"}]}
//   GET     /imagine               the image (image/png)
//   GET     /ask                   text/event-stream of `data: {"message", "url"}` events
//   GET     /images/vision         the description as text/plain, or {"description", "model"}
//                                  when the Accept header asks for application/json
//   GET     /images/files/{id}.png an image generated with response_format "url" (image/png),
//                                  for anyone holding the URL until it expires; else 404
//   GET     /check                 the usage (http_json.h's CheckKeyJson) of ?key=, else of the
//                                  caller: its Authorization: Bearer key, or without one its
//                                  anonymous tenant (as gRPC CheckKey); for a browser (Accept
//                                  prefers text/html) the usage page of usage_page.h
//   GET     /healthz               200 while the process serves (answered on the I/O thread)
//   GET     /readyz                200 while `ready()`, else 503
//
// Threads: a call the Gateway answers without blocking (Gateway::AnswersWithoutBlocking: the
// model list, a unary chat with the builtin provider, each unless admissions wait for the
// disk; the probes) is answered on the HTTP I/O thread that read it, saving two thread
// hand-offs; everything else runs on the server's workers. A chat decides by its parsed body
// (its model, `stream`): it starts on the I/O thread and hands itself, body parsed, to a
// worker when it would block (HttpExchange::ContinueOnWorker).
//
// Callers: the Authorization header (a present but blank one is malformed, 401, never
// anonymous), the peer address and X-Forwarded-For, which the Gateway believes only from a
// trusted proxy. Every metered answer, success or not, carries x-ratelimit-*; a 429 also
// Retry-After. A stream that fails after its head is out ends with an error event, `data:
// {"error": {...}}`, instead of [DONE]; a client that goes away stops its provider.
//
// Thread safety: thread-safe; the handlers run concurrently on the HTTP server's I/O threads
// and workers.
#ifndef ANYAI_SERVER_HTTP_HTTP_API_H_
#define ANYAI_SERVER_HTTP_HTTP_API_H_

#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "server/gateway/endpoint.h"
#include "server/gateway/gateway.h"
#include "server/http/http_json.h"
#include "server/http/http_message.h"
#include "server/http/http_router.h"

namespace anyai::server {

class HttpApi {
 public:
  // `gateway` must outlive this object, which must outlive the routes it adds. `ready` says
  // whether /readyz answers 200. `public_base_url` (ServerConfig.public_base_url, may be empty:
  // then each request's Host) prefixes the URLs of generated images.
  HttpApi(Gateway& gateway, std::function<bool()> ready, std::string public_base_url = "");

  absl::Status AddRoutes(HttpRouter& router);

  // The endpoint a route serves, for the request metrics: a route as AddRoutes registers it
  // ("/chat/completions", "/v1/models/*") or "/metrics"; anything else (and "", no route) is
  // Endpoint::kOther.
  static Endpoint EndpointOfRoute(std::string_view route);

 private:
  // Where a route's handler runs.
  enum class Thread {
    kIoThread,               // always on the I/O thread (it never blocks)
    kIoThreadIfNonBlocking,  // there when Gateway::AnswersWithoutBlocking(endpoint), else a worker
    kIoThreadPerRequest,     // starts there; the handler itself hands on to a worker
  };
  struct Route {
    const char* method;
    const char* path;  // without "/v1"
    Endpoint endpoint;
    void (HttpApi::*handler)(HttpExchange&);
    Thread thread;
  };
  static const Route kRoutes[11];

  void ChatCompletions(HttpExchange& exchange);
  void AnswerChat(HttpExchange& exchange, const ChatCompletionBody& body);
  void Models(HttpExchange& exchange);
  void Model(HttpExchange& exchange);
  void GenerateImages(HttpExchange& exchange);
  void Imagine(HttpExchange& exchange);
  void Ask(HttpExchange& exchange);
  void Vision(HttpExchange& exchange);
  void ImageFile(HttpExchange& exchange);
  void Check(HttpExchange& exchange);
  void Healthz(HttpExchange& exchange);
  void Readyz(HttpExchange& exchange);

  Gateway& gateway_;
  std::function<bool()> ready_;
  const std::string models_json_;  // GET /models: the catalogue does not change
  const std::string public_base_url_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_API_H_
