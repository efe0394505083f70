// Which handler answers an HTTP request: a table of (method, path) -> handler. Every path is
// served with and without the "/v1" prefix (SPEC §4: "/v1/models" and "/models" are one
// route), a known path asked with another method is 405 with an Allow header, anything else
// 404. The endpoints of http_api.h are routes; so is anything else served on the HTTP port
// (/metrics): add it before the HttpServer starts.
//
//   HttpRouter router;
//   router.Add("GET", "/metrics", [&](HttpExchange& e) { e.Respond(...); });
//   HttpRouter::Match m = router.Find("GET", "/v1/metrics");  // m.route != nullptr
//
// A route's handler runs on the worker pool (kWorker, the default: it may block, call
// providers and stream) or on the I/O thread that read the request (kInline: for handlers
// that answer without blocking, such as /healthz, which saves two thread hand-offs). A kInline
// handler that finds, from its request, that this call would block (a chat whose body names a
// model served upstream, or asks for a stream) hands the rest of itself to the worker pool
// with HttpExchange::ContinueOnWorker; it must never block the I/O thread itself, since every
// connection that thread serves waits meanwhile.
//
// Thread safety: Add() before serving; Find() is then safe from any thread (the table is
// immutable while the server runs).
#ifndef ANYAI_SERVER_HTTP_HTTP_ROUTER_H_
#define ANYAI_SERVER_HTTP_HTTP_ROUTER_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/http/http_message.h"

namespace anyai::server {

using HttpHandler = std::function<void(HttpExchange&)>;

class HttpRouter {
 public:
  enum class Dispatch { kWorker, kInline };

  struct Route {
    std::string method;  // "GET", "POST", ...
    // Without "/v1", e.g. "/chat/completions". A path ending in "/*" (e.g. "/models/*")
    // matches one more non-empty segment ("/models/gpt-4o"), which the handler reads from
    // the request path.
    std::string path;
    HttpHandler handler;
    Dispatch dispatch = Dispatch::kWorker;
  };

  // InvalidArgument when `path` does not start with '/' or starts with "/v1/", or when the
  // same method and path are already routed.
  absl::Status Add(std::string method, std::string path, HttpHandler handler,
                   Dispatch dispatch = Dispatch::kWorker);

  struct Match {
    const Route* route = nullptr;  // set when found
    int status = 404;              // 404 or 405 when not found
    std::string allow;             // for 405: the path's methods, e.g. "GET" or "GET, POST"
  };
  // `path` is the request path (no query).
  Match Find(std::string_view method, std::string_view path) const;

 private:
  std::vector<Route> routes_;
};

// `path` without a leading "/v1" segment ("/v1/models" -> "/models", "/v1" -> "/"); other
// paths unchanged.
std::string_view WithoutV1(std::string_view path);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_ROUTER_H_
