// The HTTP front's request, response and exchange, as the endpoints see them: plain structs
// with no Boost.Beast in sight, so that routing (http_router.h) and the endpoints
// (http_api.h) do not depend on the transport (http_server.h), which fills them in.
//
//   void Handle(HttpExchange& exchange) {
//     const HttpRequest& r = exchange.request();
//     exchange.Respond(HttpResponse{.status = 200, .headers = {{"content-type", "text/plain"}},
//                                   .body = "ok\n"});
//   }
//
// A handler starts on the I/O thread (a kInline route, http_router.h) or on a worker; one that
// starts on the I/O thread and finds that its call would block (say, the chat model its body
// names is served by an upstream) hands the rest of itself to a worker with ContinueOnWorker:
//
//   if (exchange.OnIoThread() && Blocks(body)) {
//     return exchange.ContinueOnWorker([body](HttpExchange& x) { Answer(x, body); });
//   }
//
// Thread safety: HttpRequest and HttpResponse are values. An HttpExchange is used by the one
// thread that runs its handler (after ContinueOnWorker: the worker that runs the rest).
#ifndef ANYAI_SERVER_HTTP_HTTP_MESSAGE_H_
#define ANYAI_SERVER_HTTP_HTTP_MESSAGE_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace anyai::server {

// Header names are lower case (HTTP field names are case-insensitive).
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // as sent: path and query, e.g. "/v1/imagine?prompt=fox"
  std::string path;    // target up to '?', e.g. "/v1/imagine"
  std::string query;   // target after '?', still percent-encoded; empty when none
  int version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1
  // One entry per field name, lower-cased; a field sent several times is joined with ", ".
  HttpHeaders headers;
  std::string body;
  std::string peer;  // the client's IP address (IPv4-mapped IPv6 as IPv4), without port

  // The value of header `lower_case_name`, or nullopt.
  std::optional<std::string_view> Header(std::string_view lower_case_name) const {
    for (const auto& [name, value] : headers) {
      if (name == lower_case_name) return std::string_view(value);
    }
    return std::nullopt;
  }
};

struct HttpResponse {
  int status = 200;
  // Besides content-length, transfer-encoding and connection, which the transport sets.
  HttpHeaders headers;
  std::string body;
  // For a stream's head only (StartStream): the bytes to send as the stream's last chunk if
  // the server must cut it (shutdown's grace deadline), before the last-chunk; e.g. an SSE
  // error event `data: {"error":{...}}\n\n`. Empty: the stream just ends.
  std::string stream_cut_tail = {};  // (initialized, so designated initializers may omit it)
};

// One request and its answer. A handler answers exactly once: either Respond(), or
// StartStream() + WriteChunk()... + EndStream(). A handler that returns without answering (and
// without handing itself to a worker) gets a 500 sent for it; a stream left open is ended.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;

  virtual const HttpRequest& request() const = 0;

  // Sends `response` whole. Does not block. On the I/O thread the response is written at once
  // (one send of its head and body, no copy of the body), before Respond returns.
  virtual void Respond(HttpResponse response) = 0;

  // Whether the handler runs on the I/O thread that read the request (a kInline route), where
  // it must not block and may not stream; false on a worker.
  virtual bool OnIoThread() const = 0;

  // From a handler on the I/O thread: runs `rest` with this exchange on the worker pool and
  // returns at once; the handler then returns without answering and `rest` answers (or gets
  // the 500). On a worker, `rest` runs at once. Once the server's workers are closing
  // (shutdown), `rest` is dropped and the request answered 503.
  virtual void ContinueOnWorker(absl::AnyInvocable<void(HttpExchange&) &&> rest) = 0;

  // Streams a response: `head`'s status and headers now (its body is ignored), then the body
  // as it comes, with HTTP/1.1 chunked transfer encoding (HTTP/1.0: raw, then the connection
  // closes). Each call blocks until its bytes are written and returns false once the client
  // has gone (or stopped reading for the write timeout); later calls then return false at
  // once. Only handlers that run on the worker pool may stream (http_router.h, kWorker).
  virtual bool StartStream(HttpResponse head) = 0;
  virtual bool WriteChunk(std::string data) = 0;
  virtual void EndStream() = 0;

  // Whether the client has gone (closed or reset its connection), asked without reading: for a
  // handler blocked on an upstream (client_presence.h). Any thread.
  virtual bool ClientGone() const = 0;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_MESSAGE_H_
