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
// Threading. Each of the `io_threads` threads runs an io_context of its own, and a new
// connection is given to the next one in turn (round robin), so a connection's handlers all run
// on one thread, which wakes no other I/O thread to serve it; every connection also lives on its
// own strand, so its socket is touched by one thread at a time. A handler that answers without
// blocking (a kInline route: the probes, the model list, a unary chat with the builtin
// provider) runs on the I/O thread that read its request, and its Respond writes the answer
// there and then: no thread hand-off at all. Handlers that may block (a provider renders a PNG
// or waits seconds for an upstream, an admission waits for fsync, any stream) run on a
// separate pool of `worker_threads` threads and post their answer back to the connection's
// strand, so a slow provider never stalls the reading and writing of other connections: a
// kWorker route goes there at once; a kInline handler that learns from the request (a chat's
// body) that its call blocks hands the rest of itself there (HttpExchange::ContinueOnWorker).
// A streamed answer's WriteChunk blocks its worker until the chunk is written (back-pressure:
// a slow reader slows its own provider, no one else's) and returns false once the client has
// gone, which is how a provider learns to stop (provider.h's `emit`).
//
// Writing. A whole answer's head is serialized into a buffer the connection keeps, and head
// and body go out in one sendmsg (two iovecs, the body not copied; TLS: one record, the body
// copied once) tried at once, without a timer; only what the socket does not take at once is
// written asynchronously under write_timeout. TCP_NODELAY is set on every connection. A
// request that arrives whole (the usual case) is parsed from the bytes of its first read, and
// the read timers below are armed only while a request waits for more bytes; idle_timeout is
// one coarse timer per connection, re-armed when it fires, not per request.
//
// Per connection: HTTP/1.1 keep-alive (one request at a time; pipelined requests wait their
// turn; they are answered in order), `Expect: 100-continue` answered, chunked request bodies
// accepted. Limits:
//   first_byte_timeout  a new connection (TLS: once its handshake is done) that sends no byte
//                  is closed silently
//   header_timeout from a request's first byte to the end of its headers: 408, then close;
//                  it also bounds the TLS handshake (a failed or slow one: closed silently)
//   idle_timeout   a kept-alive connection with no byte of a next request is closed (silently)
//   read_timeout   from a request's first byte to its last: 408, then the connection closes
//   write_timeout  each write of a response or chunk; a client that stops reading is dropped
//   max_header_bytes  request line plus headers: 431      max_body_bytes  body: 413
//   malformed HTTP: 400.
// Connections: at most max_connections at once, and max_connections_per_address from one
// client address (IPv4: the address; IPv6: its /ipv6_prefix_length network), so that one
// attacker address cannot take every place. A connection over a cap is closed at accept; on a
// plaintext listener it first gets a short 503 (Connection: close, Retry-After), written
// with one non-blocking send into the new socket's empty buffer (a TLS listener just closes).
// Start() raises the process's soft open-file limit to its hard limit, and lowers the total
// cap to fit that limit (saying so on stderr) so that the caps, not EMFILE, bound it; should
// accept still fail (EMFILE, ENFILE), it is retried every 50 ms rather than spun on.
// Framing (http_framing.h, RFC 9112 §6): after a request's head is read and before a byte of
// its body is read or it is dispatched, a Transfer-Encoding other than a final `chunked`,
// Content-Length with Transfer-Encoding, differing Content-Lengths, a missing or repeated Host
// (HTTP/1.1), obsolete line folding or Transfer-Encoding on HTTP/1.0 is refused (400; 501 for
// a coding other than chunked before it) and the connection closed, so the bytes after it (a
// smuggled request) are never parsed as a request.
// Every error the transport sends itself has OpenAI's error body (http_status.h) and closes
// the connection after a lingering close (the unread rest of the request is drained for a
// moment, so that the client reads the answer instead of a reset; TLS: close_notify).
// TLS: with tls_cert_file and tls_key_file the listener speaks only TLS (1.2 and up); with
// tls_client_ca_file every client must present a certificate that CA signed. Plaintext sent
// to it fails the handshake and is closed.
//
// Shutdown: BeginShutdown() closes idle kept-alive connections; from then on every request
// whose head arrives (on an open connection, or on a new one: the listener still accepts) is
// answered 503 with Retry-After and `Connection: close` instead of being handled, while
// requests already being handled finish and their connections close after the answer.
// Shutdown(deadline) then waits until no request is in flight (one counts from its first
// byte) or `deadline`, stops accepting, and cuts what is left: a stream in progress gets its
// HttpResponse::stream_cut_tail as a last chunk and the chunked body's end (its handler's
// next WriteChunk returns false), anything else is closed; then it waits for the worker pool
// (a provider call already running is waited for) and stops the threads. A handler handed to
// the pool once it is closing is answered 503 instead.
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
  // A new connection that sends no byte (TLS: after its handshake) within this long is closed
  // silently.
  absl::Duration first_byte_timeout = absl::Seconds(10);
  // From a request's first byte to the end of its headers (and the TLS handshake): 408, then
  // the connection closes. read_timeout still bounds the whole request.
  absl::Duration header_timeout = absl::Seconds(10);
  // Connections held open at once, in all and from one client address (IPv4: the address;
  // IPv6: its network of ipv6_prefix_length bits). One over a cap is closed at accept.
  int64_t max_connections = 4096;
  int64_t max_connections_per_address = 64;
  int ipv6_prefix_length = 64;
  // Peers the per-address cap does not apply to (the total cap still does): the trusted
  // proxies, whose one address carries many clients' connections. Null: none. Must not block.
  std::function<bool(std::string_view peer_address)> uncapped_peer;
  // TLS (PEM files): with a cert and key the listener speaks only HTTPS; with a client CA too,
  // every client must present a certificate that CA signed.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
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

  // Begins the drain: closes idle connections and answers every request whose head arrives
  // from now on (new connections included: the listener stays open until Shutdown) with 503
  // and Connection: close; returns at once. Idempotent.
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
