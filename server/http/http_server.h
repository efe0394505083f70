// The HTTP/1.1 transport of the OpenAI-compatible front (SPEC §4), on Boost.Beast and Asio:
// it accepts connections, reads requests within the configured limits, hands each to the
// route's handler (http_router.h) and writes the answer, whole or streamed.
//
//   HttpRouter router;  // routes added (http_api.h), then the router must not change
//   auto http = HttpServer::Start({.listen = "127.0.0.1:0"}, router);
//   std::cout << "http listening on " << (*http)->address() << "\n";
//   ...
//   (*http)->Shutdown(absl::Now() + absl::Seconds(5));
//
// Threading. `io_threads` threads run one io_context; every connection lives on its own
// strand, so its socket is touched by one thread at a time. Handlers that may block (every
// API endpoint: admission writes to RocksDB, a provider renders a PNG or waits seconds for an
// upstream) run on a separate pool of `worker_threads` threads and post their answer back to
// the connection's strand, so a slow provider never stalls the reading and writing of other
// connections. A streamed answer's WriteChunk blocks its worker until the chunk is written
// (back-pressure: a slow reader slows its own provider, no one else's) and returns false once
// the client has gone, which is how a provider learns to stop (provider.h's `emit`).
//
// Per connection: HTTP/1.1 keep-alive (one request at a time; pipelined requests wait their
// turn), `Expect: 100-continue` answered, chunked request bodies accepted. Limits:
//   idle_timeout   a kept-alive connection with no byte of a next request is closed (silently)
//   read_timeout   from a request's first byte to its last: 408, then the connection closes
//   write_timeout  each write of a response or chunk; a client that stops reading is dropped
//   max_header_bytes  request line plus headers: 431      max_body_bytes  body: 413
//   malformed HTTP: 400.
// Framing (http_framing.h, RFC 9112 §6): after a request's head is read and before a byte of
// its body is read or it is dispatched, a Transfer-Encoding other than a final `chunked`,
// Content-Length with Transfer-Encoding, differing Content-Lengths, a missing or repeated Host
// (HTTP/1.1), obsolete line folding or Transfer-Encoding on HTTP/1.0 is refused (400; 501 for
// a coding other than chunked before it) and the connection closed, so the bytes after it (a
// smuggled request) are never parsed as a request.
// Every error the transport sends itself has OpenAI's error body (http_status.h) and closes
// the connection after a lingering close (the unread rest of the request is drained for a
// moment, so that the client reads the answer instead of a reset).
//
// Shutdown: BeginShutdown() stops accepting and closes idle connections; requests in flight
// finish and their connections close after the answer. Shutdown(deadline) then waits for them
// until `deadline`, closes what is left (a stream's next WriteChunk returns false), waits for
// the worker pool (a provider call already running is waited for) and stops the threads.
//
// Thread safety: thread-safe. BeginShutdown() and Shutdown() may be called from any thread
// except the server's own; the accessors at any time.
#ifndef ANYAI_SERVER_HTTP_HTTP_SERVER_H_
#define ANYAI_SERVER_HTTP_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/http/http_router.h"

namespace anyai::server {

struct HttpServerOptions {
  std::string listen = "0.0.0.0:8080";  // HOST:PORT; port 0 picks a free port
  int64_t max_body_bytes = 1 << 20;
  int64_t max_header_bytes = 16 << 10;
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
  int io_threads = 2;
  int worker_threads = 16;
  // Called once per answered request (for metrics), on a server thread, after its answer is
  // written or abandoned: the matched route's path ("" when none matched, e.g. a 404 or an
  // error of the transport), the method, the HTTP status, and the time from the request's
  // last byte to the answer's. Must not block.
  std::function<void(std::string_view route, std::string_view method, int status,
                     absl::Duration latency)>
      on_response;
};

class HttpServer {
 public:
  // Binds and starts serving `router`, which must outlive the server. UNAVAILABLE naming the
  // address when it cannot be bound, INVALID_ARGUMENT for a bad option.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           const HttpRouter& router);
  ~HttpServer();  // Shutdown(now): whatever is in flight is closed
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "host:port" with the port really bound.
  const std::string& address() const;
  int port() const;

  // Stops accepting and closes idle connections; returns at once. Idempotent.
  void BeginShutdown();
  // BeginShutdown(), then waits for in-flight requests until `deadline`, closes the rest and
  // stops every thread. Idempotent; returns when done.
  void Shutdown(absl::Time deadline);

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_SERVER_H_
