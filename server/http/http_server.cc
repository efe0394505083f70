#include "server/http/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/gateway/errors.h"
#include "server/http/http_framing.h"
#include "server/http/http_status.h"
#include "server/net/connection_caps.h"
#include "server/net/host_port.h"
#include "server/net/ip_address.h"

namespace anyai::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr char kServerName[] = "anyai-gateway";
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
// Bytes asked of the socket while waiting for a request's first byte.
constexpr size_t kIdleReadBytes = 4096;
// Beyond the header limit, how many unparsed bytes a connection may buffer (a chunk header
// with its extensions, a trailer section, a pipelined request's start).
constexpr size_t kMaxUnparsedBodyBytes = 64 << 10;
// A lingering close drains the unread rest of a refused request for at most this long and
// this many bytes, so that the client reads our answer rather than a TCP reset.
constexpr absl::Duration kLingerTimeout = absl::Seconds(2);
constexpr size_t kMaxLingerBytes = 4 << 20;
// After the last worker is done, how long Shutdown waits for connections to wind down.
constexpr absl::Duration kFinalDrain = absl::Seconds(10);
// How long a connection over a cap, or one that arrives while the server drains, is told to
// wait before trying again.
constexpr char kRetryAfterSeconds[] = "1";
// Descriptors kept free of HTTP connections (for RocksDB, gRPC, logs) when the total cap is
// clamped to the process's descriptor limit.
constexpr int64_t kReservedDescriptors = 64;
// What a connection over a cap gets before it is closed (plaintext listeners only): one
// non-blocking send into the new socket's empty buffer, which costs no more than the close.
const std::string& OverCapacityResponse() {
  static const std::string* const response = [] {
    const std::string body =
        "{\"error\":{\"message\":\"too many connections; try again later\",\"type\":"
        "\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";
    return new std::string(absl::StrCat(
        "HTTP/1.1 503 Service Unavailable\r\nServer: anyai-gateway\r\nConnection: close\r\n"
        "Retry-After: ",
        kRetryAfterSeconds, "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
        "\r\n\r\n", body));
  }();
  return *response;
}

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  d = std::min(d, absl::Hours(24 * 365));
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

std::string Str(beast::string_view s) { return std::string(s.data(), s.size()); }

// Whether a handler's header line may go into a response head: not one the transport owns
// (content-length, transfer-encoding, connection), and no CR or LF that would break the head.
// (Two memchr scans per string: std::string::find_first_of("\r\n") calls memchr once per
// character, 2% of a refused call's profile.)
bool HandlerMaySet(std::string_view name, std::string_view value) {
  const auto has_line_break = [](std::string_view s) {
    return s.find('\r') != std::string_view::npos || s.find('\n') != std::string_view::npos;
  };
  return name != "content-length" && name != "transfer-encoding" && name != "connection" &&
         !has_line_break(name) && !has_line_break(value);
}

// A parse error of Beast's HTTP parser (malformed request), as opposed to a socket error.
bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

// `head_fields`: how many of the message's fields are its head's; the rest are the trailer
// fields of a chunked body, which are not headers (RFC 9110 §6.5.1: an Authorization or
// X-Forwarded-For trailer must not authenticate or re-address the request), so are dropped.
HttpRequest ToHttpRequest(http::request<http::string_body>& message, std::string peer,
                          size_t head_fields) {
  HttpRequest r;
  r.method = Str(message.method_string());
  r.target = Str(message.target());
  const size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  r.version = message.version() == 10 ? 10 : 11;
  // A request has a handful of fields: up to kLinearFields distinct names a linear search for
  // a repeated one costs less than an index. Past them (a head may be thousands of tiny fields
  // within max_header_bytes, which would make the search quadratic) an index of names keeps it
  // linear. Its views point into r.headers, which never reallocates (reserved for every field).
  constexpr size_t kLinearFields = 16;
  absl::flat_hash_map<std::string_view, size_t> index;
  r.headers.reserve(head_fields);
  size_t seen = 0;
  for (const auto& field : message) {
    if (seen++ == head_fields) break;
    std::string name = absl::AsciiStrToLower(Str(field.name_string()));
    const beast::string_view value = field.value();
    size_t at = r.headers.size();  // where `name` already is; size(): nowhere yet
    if (r.headers.size() < kLinearFields) {
      at = static_cast<size_t>(
          std::find_if(r.headers.begin(), r.headers.end(),
                       [&](const auto& header) { return header.first == name; }) -
          r.headers.begin());
    } else {
      if (index.empty()) {
        for (size_t i = 0; i < r.headers.size(); ++i) index.emplace(r.headers[i].first, i);
      }
      if (auto it = index.find(name); it != index.end()) at = it->second;
    }
    if (at == r.headers.size()) {
      r.headers.emplace_back(std::move(name), Str(value));
      if (!index.empty()) index.emplace(r.headers.back().first, at);
    } else {
      absl::StrAppend(&r.headers[at].second, ", ", absl::string_view(value.data(), value.size()));
    }
  }
  r.body = std::move(message.body());
  r.peer = std::move(peer);
  return r;
}

// The head as the framing checks take it: every field line, in order.
HttpRequestHead HeadOf(const http::request<http::string_body>& message) {
  HttpRequestHead head;
  head.version = static_cast<int>(message.version());
  for (const auto& field : message) {
    head.fields.emplace_back(Str(field.name_string()), Str(field.value()));
  }
  return head;
}

// A peer's address as text, an IPv4-mapped IPv6 address as IPv4.
std::string PeerAddress(net::ip::address address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6());
  }
  return address.to_string();
}

// The key a connection counts under for max_connections_per_address (connection_caps.h).
std::string AddressKey(const net::ip::address& address, int ipv6_prefix_length) {
  const ::anyai::net::IpAddress ip =
      address.is_v4() ? ::anyai::net::IpAddress::FromIpv4Bytes(address.to_v4().to_bytes())
                      : ::anyai::net::IpAddress::FromIpv6Bytes(address.to_v6().to_bytes());
  return ::anyai::net::AddressKey(ip, ipv6_prefix_length);
}

// What the server-wide registry knows of a connection, whatever its stream type.
class Connection {
 public:
  virtual ~Connection() = default;
  // The server is stopping: an idle kept-alive connection closes now, a busy one after its
  // answer; one that has not sent its first request yet will be answered 503.
  virtual void OnServerStopping() = 0;
  // Shutdown's deadline: closes now; a stream in progress first gets its cut tail.
  virtual void ForceClose() = 0;
};

// What every connection of one server shares: the options and routes, the registry of live
// connections (for shutdown) and their count per address (for the caps), the requests in
// flight, the TLS context, and the worker pool. Outlives every Session: Shutdown waits for
// them, and the io_context, which may hold the last references, is destroyed before it.
class Context {
 public:
  Context(HttpServerOptions options, const HttpRouter& router)
      : options(std::move(options)),
        router(router),
        workers_(static_cast<size_t>(this->options.worker_threads)) {}

  const HttpServerOptions options;
  const HttpRouter& router;
  // Set before the first accept when the listener speaks TLS; never changes after.
  std::unique_ptr<net::ssl::context> ssl;
  // The caps in force (options.max_connections clamped to the descriptor limit, and
  // options.max_connections_per_address); set before the first accept, never changes after.
  std::unique_ptr<::anyai::net::ConnectionCaps> caps;

  bool stopping() const { return stopping_.load(std::memory_order_seq_cst); }
  // True for the call that set it.
  bool SetStopping() { return !stopping_.exchange(true, std::memory_order_seq_cst); }

  void Register(const std::shared_ptr<Connection>& c) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sessions_[c.get()] = c;
  }
  void Unregister(Connection* c) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sessions_.erase(c);
  }
  std::vector<std::shared_ptr<Connection>> Sessions() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::shared_ptr<Connection>> out;
    absl::MutexLock lock(&mu_);
    for (auto& [raw, weak] : sessions_) {
      if (std::shared_ptr<Connection> c = weak.lock()) out.push_back(std::move(c));
    }
    return out;
  }
  // True when no connection is left by `deadline`.
  bool AwaitNoSessions(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&NoSessions, this), deadline);
  }

  // A request from its head to its answer (written or abandoned): what shutdown waits for.
  void RequestBegan() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++requests_;
  }
  void RequestEnded() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --requests_;
  }
  bool AwaitNoRequests(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&NoRequests, this), deadline);
  }

  // Runs `work` on the worker pool; false (and `work` dropped) once the pool is closing.
  bool Dispatch(absl::AnyInvocable<void() &&> work) ABSL_LOCKS_EXCLUDED(work_mu_) {
    absl::MutexLock lock(&work_mu_);
    if (!work_open_) return false;
    net::post(workers_, [work = std::move(work)]() mutable { std::move(work)(); });
    return true;
  }
  // No more work; waits for what is running or queued.
  void CloseAndJoinWorkers() ABSL_LOCKS_EXCLUDED(work_mu_) {
    {
      absl::MutexLock lock(&work_mu_);
      work_open_ = false;
    }
    workers_.join();
  }

 private:
  static bool NoSessions(Context* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
    return c->sessions_.empty();
  }
  static bool NoRequests(Context* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
    return c->requests_ <= 0;
  }

  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  absl::flat_hash_map<Connection*, std::weak_ptr<Connection>> sessions_ ABSL_GUARDED_BY(mu_);
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex work_mu_;
  bool work_open_ ABSL_GUARDED_BY(work_mu_) = true;
  net::thread_pool workers_;
};

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection, over plain TCP or TLS (`Stream`). Every member below is touched only on the
// connection's strand (the stream's executor); the public methods post there and may be
// called from any thread. It holds one unit of the connection caps (its address key) from
// accept to destruction.
template <class Stream>
class Session final : public Connection, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Session(tcp::socket socket, Context& context, std::string address_key)
      : stream_(MakeStream(std::move(socket), context)),
        context_(context),
        address_key_(std::move(address_key)),
        read_timer_(stream_.get_executor()),
        idle_timer_(stream_.get_executor()),
        cut_timer_(stream_.get_executor()),
        fd_(Lowest().socket().native_handle()) {
    beast::error_code ec;
    Lowest().socket().set_option(tcp::no_delay(true), ec);
    // A whole answer is first written with one non-blocking send (WriteResponse); the
    // asynchronous operations are unaffected.
    Lowest().socket().non_blocking(true, ec);
    tcp::endpoint remote = Lowest().socket().remote_endpoint(ec);
    if (!ec) peer_ = PeerAddress(remote.address());
  }
  ~Session() override {
    EndCount();
    context_.Unregister(this);
    context_.caps->Release(address_key_);
  }

  void Start() {
    context_.Register(Self());
    net::dispatch(stream_.get_executor(), [self = Self()] {
      if constexpr (kTls) {
        self->Handshake();
      } else {
        self->ReadIdle();
      }
    });
  }

  void OnServerStopping() override {
    net::post(stream_.get_executor(), [self = Self()] {
      if (self->state_ == State::kIdle && self->request_number_ > 0) self->Close();
    });
  }
  void ForceClose() override {
    net::post(stream_.get_executor(), [self = Self()] { self->Cut(); });
  }

  // From any thread: whether the client closed or reset the connection (a peek at the socket,
  // which never consumes a byte; a pipelined request waiting there means it is still here).
  bool PeerGone() const {
    if (closed_.load(std::memory_order_acquire)) return true;
    char byte;
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }

  // The Exchange's side: called from the handler's thread.
  void PostResponse(HttpResponse response) {
    net::post(stream_.get_executor(), [self = Self(), response = std::move(response)]() mutable {
      self->WriteResponse(std::move(response), /*close_after=*/false);
    });
  }
  bool StartStreamAndWait(HttpResponse head) {
    return RunAndWait([self = Self(), head = std::move(head)](Done done) mutable {
      self->WriteStreamHead(std::move(head), std::move(done));
    });
  }
  bool WriteChunkAndWait(std::string data) {
    return RunAndWait([self = Self(), data = std::move(data)](Done done) mutable {
      self->WriteStreamChunk(std::move(data), std::move(done));
    });
  }
  void PostEndStream() {
    net::post(stream_.get_executor(), [self = Self()] { self->EndStream(); });
  }

 private:
  // kHandshake: TLS handshake. kIdle: waiting for a request's first byte (nothing buffered).
  // kReading: a request has begun. kHandling: its handler runs. kWriting: its answer is being
  // written. kLingering: the answer is out, the rest of the request is being drained before
  // closing.
  enum class State { kHandshake, kIdle, kReading, kHandling, kWriting, kLingering, kClosed };
  // Which limit a request's read timer stands for.
  enum class ReadLimit { kHeader, kWhole };
  using Done = std::function<void(bool)>;

  static Stream MakeStream(tcp::socket socket, Context& context) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *context.ssl);
    } else {
      (void)context;
      return Stream(std::move(socket));
    }
  }

  std::shared_ptr<Session> Self() { return this->shared_from_this(); }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  // Runs `op` on the strand and blocks the calling (worker) thread until `op` calls its Done.
  // A Done dropped uncalled (the io_context went away) counts as false.
  bool RunAndWait(std::function<void(Done)> op) {
    auto promise = std::make_shared<std::promise<bool>>();
    std::future<bool> result = promise->get_future();
    net::post(stream_.get_executor(), [op = std::move(op), promise]() mutable {
      op([promise](bool ok) { promise->set_value(ok); });
    });
    try {
      return result.get();
    } catch (const std::future_error&) {
      return false;
    }
  }

  // TLS: the handshake, bounded by header_timeout; a failure (e.g. plaintext HTTP sent to the
  // TLS port, a missing or untrusted client certificate) closes the connection silently.
  void Handshake() {
    state_ = State::kHandshake;
    StreamExpiresAfter(context_.options.header_timeout);
    if constexpr (kTls) {
      stream_.async_handshake(net::ssl::stream_base::server, [self = Self()](beast::error_code ec) {
        if (ec) {
          self->Close();
          return;
        }
        self->ReadIdle();
      });
    }
  }

  void ReadIdle() {
    if (state_ == State::kClosed) return;
    // Stopping: a kept-alive connection closes; a new one (or a pipelined request already
    // here) is read and answered 503.
    if (context_.stopping() && request_number_ > 0 && buffer_.size() == 0) {
      Close();
      return;
    }
    state_ = State::kIdle;
    if (buffer_.size() > 0) {  // a pipelined request is already here
      ReadRequest();
      return;
    }
    // A new connection gets first_byte_timeout for its first byte, a kept-alive one
    // idle_timeout for its next request's; either closes silently. The idle wait is a coarse
    // timer (WaitIdle), not re-armed for every request.
    if (request_number_ == 0) {
      StreamExpiresAfter(context_.options.first_byte_timeout);
    } else {
      StreamExpiresNever();
      WaitIdle();
    }
    stream_.async_read_some(buffer_.prepare(kIdleReadBytes),
                            [self = Self()](beast::error_code ec, size_t n) {
                              if (ec) {  // timeout, the client closed, or the server closed us
                                self->Close();
                                return;
                              }
                              self->buffer_.commit(n);
                              self->ReadRequest();
                            });
  }

  void ReadRequest() {
    if (state_ == State::kClosed) return;
    state_ = State::kReading;
    ++request_number_;
    // In flight from its first byte when it began before the drain (Shutdown waits for it and
    // it gets its 503); one begun during the drain only from a complete head (below), so that
    // clients trickling bytes into new connections cannot hold the drain for the whole grace.
    if (!counted_ && !context_.stopping()) {
      counted_ = true;
      context_.RequestBegan();
    }
    read_timed_out_ = false;
    armed_limit_.reset();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(std::clamp<int64_t>(
        context_.options.max_header_bytes, 1, std::numeric_limits<uint32_t>::max())));
    parser_->body_limit(
        static_cast<uint64_t>(std::max<int64_t>(0, context_.options.max_body_bytes)));
    head_bytes_.clear();
    // Unparsed bytes stay within a bound: a chunk header, a chunk extension or a trailer that
    // never ends would otherwise be buffered until read_timeout (Beast's parser needs each
    // whole). Past it Beast says buffer_overflow: 400.
    buffer_.max_size(static_cast<size_t>(std::max<int64_t>(context_.options.max_header_bytes, 0)) +
                     kMaxUnparsedBodyBytes);
    // The read timeouts are our own timer, not the stream's expiry (which would close the
    // socket), so that a slow client still gets its 408: header_timeout from the request's
    // first byte to the end of its head, read_timeout to its last byte. The timer is armed
    // only once the request must wait for bytes (EnsureReadTimer): one that arrived whole
    // with its first read costs no timer at all.
    StreamExpiresNever();
    const absl::Time now = absl::Now();
    header_deadline_ = now + context_.options.header_timeout;
    read_deadline_ = now + context_.options.read_timeout;
    read_limit_ = context_.options.header_timeout < context_.options.read_timeout
                      ? ReadLimit::kHeader
                      : ReadLimit::kWhole;
    ParseHead();
  }

  // Before the request waits for more bytes: the read timer stands for read_limit_.
  void EnsureReadTimer() {
    if (armed_limit_ != read_limit_) ArmReadTimer();
  }

  void ArmReadTimer() {
    armed_limit_ = read_limit_;
    const absl::Time deadline =
        read_limit_ == ReadLimit::kHeader ? header_deadline_ : read_deadline_;
    read_timer_.expires_after(Chrono(std::max(deadline - absl::Now(), absl::ZeroDuration())));
    read_timer_.async_wait([self = Self(), number = request_number_](beast::error_code ec) {
      if (ec || self->state_ != State::kReading || self->request_number_ != number) return;
      self->read_timed_out_ = true;
      self->Lowest().cancel();
    });
  }

  void CancelReadTimer() {
    if (!armed_limit_.has_value()) return;
    armed_limit_.reset();
    read_timer_.cancel();
  }

  // The stream's own expiry (which closes the socket) is set only around the operations that
  // need it, and cleared only when set, so that a request answered at once costs no timer.
  void StreamExpiresAfter(absl::Duration d) {
    Lowest().expires_after(Chrono(d));
    stream_expiry_set_ = true;
  }
  void StreamExpiresNever() {
    if (!stream_expiry_set_) return;
    Lowest().expires_never();
    stream_expiry_set_ = false;
  }

  // idle_timeout for a kept-alive connection waiting for its next request: one timer per
  // connection, re-armed when it fires (not per request), which closes the connection once it
  // has been idle for idle_timeout.
  void WaitIdle() {
    idle_since_ = std::chrono::steady_clock::now();
    if (!idle_timer_armed_) ArmIdleTimer();
  }

  void ArmIdleTimer() {
    idle_timer_armed_ = true;
    idle_timer_.expires_at(idle_since_ + Chrono(context_.options.idle_timeout));
    idle_timer_.async_wait([self = Self()](beast::error_code ec) {
      self->idle_timer_armed_ = false;
      if (ec || self->state_ != State::kIdle) return;  // busy: the next WaitIdle arms it again
      if (std::chrono::steady_clock::now() - self->idle_since_ >=
          Chrono(self->context_.options.idle_timeout)) {
        self->Close();
        return;
      }
      self->ArmIdleTimer();  // idle since less long: wait for the rest
    });
  }

  // Feeds what is buffered to the parser until the head is complete, reading more as needed.
  // The bytes the parser takes are kept (head_bytes_) for the framing checks, which need them
  // raw: Beast unfolds obsolete line folding silently.
  void ParseHead() {
    if (state_ != State::kReading) return;
    if (buffer_.size() > 0) {
      beast::error_code ec;
      const size_t used = parser_->put(buffer_.data(), ec);
      head_bytes_.append(static_cast<const char*>(buffer_.data().data()), used);
      buffer_.consume(used);
      if (!ec && parser_->is_header_done()) {
        OnHeader();
        return;
      }
      if (ec && ec != http::error::need_more) {
        OnReadError(ec);
        return;
      }
    }
    EnsureReadTimer();
    stream_.async_read_some(
        buffer_.prepare(kIdleReadBytes), [self = Self()](beast::error_code ec, size_t n) {
          if (ec) {
            // A client that leaves mid-head just goes, as Beast's partial_message would.
            self->OnReadError(
                ec == net::error::eof ? beast::error_code(http::error::partial_message) : ec);
            return;
          }
          self->buffer_.commit(n);
          self->ParseHead();
        });
  }

  void OnHeader() {
    if (!counted_) {  // begun during the drain: in flight from here
      counted_ = true;
      context_.RequestBegan();
    }
    head_fields_ = static_cast<size_t>(std::distance(parser_->get().begin(), parser_->get().end()));
    // RFC 9112 framing (http_framing.h), before a byte of the body is read or the request is
    // dispatched: a refused request's connection closes, so whatever follows its head (a
    // smuggled request) is never parsed.
    absl::Status framing = CheckHeaderBlock(head_bytes_);
    head_bytes_.clear();
    if (framing.ok()) framing = CheckFraming(HeadOf(parser_->get()));
    if (!framing.ok()) {
      const int status = FramingHttpStatus(framing);
      Refuse(ProtocolError(status, std::string(framing.message()),
                           status == 501 ? "unsupported_transfer_coding" : "invalid_http_request"));
      return;
    }
    if (read_limit_ == ReadLimit::kHeader) {
      read_limit_ = ReadLimit::kWhole;
      if (armed_limit_.has_value()) ArmReadTimer();
    }
    if (context_.stopping()) {  // not read on: answered 503 at once, then closed
      RefuseDraining();
      return;
    }
    if (!parser_->is_done() &&
        beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      EnsureReadTimer();
      net::async_write(stream_, net::buffer(kContinue, sizeof(kContinue) - 1),
                       [self = Self()](beast::error_code ec, size_t) {
                         if (ec) {
                           self->OnReadError(ec);
                         } else {
                           self->ReadBody();
                         }
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    // What is buffered already (usually the whole body, sent with the head) is parsed here;
    // only the rest is read asynchronously.
    while (!parser_->is_done() && buffer_.size() > 0) {
      beast::error_code ec;
      parser_->eager(true);
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) {
        OnReadError(ec);
        return;
      }
      if (used == 0) break;
    }
    if (parser_->is_done()) {
      OnRequest();
      return;
    }
    EnsureReadTimer();
    http::async_read(stream_, buffer_, *parser_, [self = Self()](beast::error_code ec, size_t) {
      if (ec) {
        self->OnReadError(ec);
      } else {
        self->OnRequest();
      }
    });
  }

  void OnReadError(beast::error_code ec) {
    if (state_ == State::kClosed) return;
    CancelReadTimer();
    int status = 0;
    std::string message;
    std::string code;
    if (read_timed_out_) {
      status = 408;
      if (read_limit_ == ReadLimit::kHeader) {
        message = absl::StrCat("the request's headers were not received within ",
                               absl::FormatDuration(context_.options.header_timeout));
      } else {
        message = absl::StrCat("the request was not received within ",
                               absl::FormatDuration(context_.options.read_timeout));
      }
      code = "request_timeout";
    } else if (ec == http::error::header_limit) {
      status = 431;
      message = absl::StrCat("the request line and headers exceed ",
                             context_.options.max_header_bytes, " bytes");
      code = "request_header_fields_too_large";
    } else if (ec == http::error::buffer_overflow) {
      status = 400;
      message = absl::StrCat("a chunk header or the trailer section exceeds ",
                             context_.options.max_header_bytes, " bytes");
      code = "invalid_http_request";
    } else if (ec == http::error::body_limit) {
      status = 413;
      message =
          absl::StrCat("the request body exceeds ", context_.options.max_body_bytes, " bytes");
      code = "request_too_large";
    } else if (IsHttpParseError(ec) && ec != http::error::end_of_stream &&
               ec != http::error::partial_message) {
      status = 400;
      message = absl::StrCat("malformed HTTP request: ", ec.message());
      code = "invalid_http_request";
    } else {  // the client went away (or we closed it)
      Close();
      return;
    }
    Refuse(ProtocolError(status, message, code));
  }

  // An error of the transport itself: answered, then the connection closes (lingering).
  void Refuse(HttpResponse response) {
    CancelReadTimer();
    BeginExchange("", "");
    keep_alive_ = false;
    WriteResponse(std::move(response), /*close_after=*/true);
  }

  // The server drains: a request is answered 503 with Retry-After and its connection closed.
  void RefuseDraining() {
    version_ = parser_->get().version() == 10 ? 10 : 11;
    HttpResponse response =
        ErrorResponse(absl::UnavailableError("the server is shutting down; try again in a moment"));
    response.headers.emplace_back("retry-after", kRetryAfterSeconds);
    Refuse(std::move(response));
  }

  void OnRequest() {
    if (state_ == State::kClosed) return;
    CancelReadTimer();
    if (context_.stopping()) {
      RefuseDraining();
      return;
    }
    state_ = State::kHandling;
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    keep_alive_ = message.keep_alive();
    version_ = message.version() == 10 ? 10 : 11;
    HttpRequest request = ToHttpRequest(message, peer_, head_fields_);
    const HttpRouter::Match match = context_.router.Find(request.method, request.path);
    BeginExchange(match.route != nullptr ? match.route->path : "", request.method);
    if (match.route == nullptr) {
      HttpResponse response;
      const std::string what =
          QuoteForMessage(absl::StrCat(request.method, " ", request.path), 200);
      if (match.status == 405) {
        response = ProtocolError(
            405, absl::StrCat("Method not allowed (", what, "); allowed: ", match.allow),
            "method_not_allowed");
        response.headers.emplace_back("allow", match.allow);
      } else {
        response = ProtocolError(404, absl::StrCat("Invalid URL (", what, ")"), "unknown_url");
      }
      WriteResponse(std::move(response), /*close_after=*/false);
      return;
    }
    const HttpHandler* handler = &match.route->handler;  // the router outlives the server
    if (match.route->dispatch == HttpRouter::Dispatch::kInline) {
      // On this thread: its Respond writes the answer before returning. The exchange answers
      // (or sends a 500) as it goes out of scope, here or, handed to a worker, there.
      auto exchange = std::make_shared<Exchange>(Self(), std::move(request), true);
      RunHandler(*handler, *exchange);
      return;
    }
    auto exchange = std::make_shared<Exchange>(Self(), std::move(request), false);
    if (!context_.Dispatch([handler, exchange] { RunHandler(*handler, *exchange); })) {
      exchange->Respond(ErrorResponse(absl::UnavailableError("the server is shutting down")));
    }
  }

  // The head of a whole answer, into head_ (whose capacity the connection keeps): the status
  // line, Server, the handler's headers, then Connection and Content-Length as the request's
  // version and keep-alive need (as Beast's keep_alive() and prepare_payload() would write
  // them). Header lines the transport owns, or that would break the head (CR or LF), are left
  // out.
  void SerializeHead(const HttpResponse& response, size_t body_size) {
    head_.clear();
    const unsigned status = static_cast<unsigned>(std::clamp(response.status, 100, 999));
    const beast::string_view reason = http::obsolete_reason(http::int_to_status(status));
    absl::StrAppend(&head_, version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ", status, " ",
                    absl::string_view(reason.data(), reason.size()), "\r\nServer: ", kServerName,
                    "\r\n");
    for (const auto& [name, value] : response.headers) {
      if (!HandlerMaySet(name, value)) continue;
      absl::StrAppend(&head_, name, ": ", value, "\r\n");
    }
    if (version_ == 11 && !keep_alive_) head_.append("Connection: close\r\n");
    if (version_ == 10 && keep_alive_) head_.append("Connection: keep-alive\r\n");
    // RFC 9110 §8.6: no Content-Length in a 1xx, 204 or 304 (which have no body).
    if (status >= 200 && status != 204 && status != 304) {
      absl::StrAppend(&head_, "Content-Length: ", body_size, "\r\n");
    }
    head_.append("\r\n");
  }

  void WriteResponse(HttpResponse response, bool close_after) {
    if (state_ == State::kClosed || state_ == State::kLingering || cutting_) {
      Record(response.status);
      return;
    }
    state_ = State::kWriting;
    status_ = response.status;
    keep_alive_ = keep_alive_ && !close_after && !context_.stopping();
    const bool no_body = response.status < 200 || response.status == 204 || response.status == 304;
    SerializeHead(response, response.body.size());
    body_ = no_body ? std::string() : std::move(response.body);
    size_t written = 0;
    if constexpr (kTls) {
      // One TLS record rather than one per buffer: the body is copied once (encryption copies
      // it anyway).
      head_.append(body_);
      body_.clear();
    } else {
      // Head and body in one sendmsg, at once: a client reading its answers takes it into
      // the socket's buffer, with no timer, no asynchronous operation and no copy of the body.
      // What does not fit is written asynchronously below.
      beast::error_code ec;
      const std::array<net::const_buffer, 2> out = {net::buffer(head_), net::buffer(body_)};
      written = Lowest().socket().write_some(out, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        written = 0;
      } else if (ec || written == head_.size() + body_.size()) {
        Written(ec, /*at_once=*/true);
        return;
      }
    }
    StreamExpiresAfter(context_.options.write_timeout);
    write_in_flight_ = true;
    const auto on_written = [self = Self()](beast::error_code ec, size_t) {
      self->write_in_flight_ = false;
      self->Written(ec, /*at_once=*/false);
    };
    if (written < head_.size()) {
      const std::array<net::const_buffer, 2> rest = {net::buffer(head_) + written,
                                                     net::buffer(body_)};
      net::async_write(stream_, rest, on_written);
    } else {
      net::async_write(stream_, net::buffer(body_) + (written - head_.size()), on_written);
    }
  }

  // A whole answer is out (or failed): next request, or close. `at_once`: written by
  // WriteResponse itself, on the stack of whoever called it; a pipelined request already
  // buffered is then started from the strand's queue rather than recursively.
  void Written(beast::error_code ec, bool at_once) {
    body_ = std::string();
    // A TLS answer's body was copied into head_: a connection keeps no more than a usual head.
    if (head_.capacity() > kKeptHeadCapacity) head_ = std::string();
    Record(status_);
    if (ec || cutting_) {
      Close();
    } else if (at_once && buffer_.size() > 0) {
      net::post(stream_.get_executor(), [self = Self()] { self->Finished(); });
    } else {
      Finished();
    }
  }

  void WriteStreamHead(HttpResponse head, Done done) {
    if (state_ == State::kClosed || cutting_) {
      done(false);
      return;
    }
    state_ = State::kWriting;
    status_ = head.status;
    chunked_ = version_ == 11;
    keep_alive_ = keep_alive_ && chunked_ && !context_.stopping();
    cut_tail_ = std::move(head.stream_cut_tail);
    stream_head_.emplace();
    stream_head_->version(version_);
    stream_head_->result(static_cast<unsigned>(head.status));
    stream_head_->set(http::field::server, kServerName);
    for (auto& [name, value] : head.headers) {
      if (HandlerMaySet(name, value)) stream_head_->insert(name, value);
    }
    if (chunked_) stream_head_->chunked(true);
    stream_head_->keep_alive(keep_alive_);
    stream_serializer_.emplace(*stream_head_);
    StreamExpiresAfter(context_.options.write_timeout);
    write_in_flight_ = true;
    http::async_write_header(stream_, *stream_serializer_,
                             [self = Self(), done = std::move(done)](beast::error_code ec, size_t) {
                               self->write_in_flight_ = false;
                               if (ec) {
                                 self->Close();
                               } else if (self->cutting_) {
                                 self->WriteCutTail();
                               }
                               done(!ec && !self->cutting_);
                             });
  }

  void WriteStreamChunk(std::string data, Done done) {
    if (state_ != State::kWriting || stream_serializer_ == std::nullopt || cutting_) {
      done(false);
      return;
    }
    if (data.empty()) {  // an empty chunk would end the body
      done(true);
      return;
    }
    chunk_ = std::move(data);
    StreamExpiresAfter(context_.options.write_timeout);
    write_in_flight_ = true;
    auto on_written = [self = Self(), done = std::move(done)](beast::error_code ec, size_t) {
      self->write_in_flight_ = false;
      if (ec) {
        self->Close();
      } else if (self->cutting_) {
        self->WriteCutTail();
      }
      done(!ec && !self->cutting_);
    };
    if (chunked_) {
      net::async_write(stream_, http::make_chunk(net::buffer(chunk_)), std::move(on_written));
    } else {
      net::async_write(stream_, net::buffer(chunk_), std::move(on_written));
    }
  }

  void EndStream() {
    stream_serializer_.reset();
    stream_head_.reset();
    if (state_ != State::kWriting || cutting_) {
      Record(status_);
      return;
    }
    if (!chunked_) {  // HTTP/1.0: the body ends with the connection
      Record(status_);
      keep_alive_ = false;
      Finished();
      return;
    }
    StreamExpiresAfter(context_.options.write_timeout);
    write_in_flight_ = true;
    net::async_write(stream_, http::make_chunk_last(),
                     [self = Self()](beast::error_code ec, size_t) {
                       self->write_in_flight_ = false;
                       self->Record(self->status_);
                       if (ec || self->cutting_) {
                         self->Close();
                       } else {
                         self->Finished();
                       }
                     });
  }

  // Shutdown's deadline. A stream in progress ends with its cut tail and the last chunk (once
  // the write in flight, if any, is done); anything else closes now.
  void Cut() {
    if (state_ == State::kClosed || cutting_) return;
    if (state_ == State::kWriting && stream_serializer_.has_value()) {
      cutting_ = true;
      if (!write_in_flight_) {
        WriteCutTail();
      } else {
        AwaitCutWrite();  // its completion writes the tail
      }
      return;
    }
    if (write_in_flight_) {  // a whole answer is going out: let it, then close
      cutting_ = true;
      AwaitCutWrite();
      return;
    }
    Close();
  }

  // A write in flight when the connection is cut gets kLingerTimeout more, not write_timeout.
  void AwaitCutWrite() {
    cut_timer_.expires_after(Chrono(kLingerTimeout));
    cut_timer_.async_wait([self = Self()](beast::error_code ec) {
      if (!ec) self->Close();
    });
  }

  void WriteCutTail() {
    stream_serializer_.reset();
    stream_head_.reset();
    cut_bytes_.clear();
    if (chunked_) {
      if (!cut_tail_.empty()) {
        absl::StrAppend(&cut_bytes_, absl::Hex(cut_tail_.size()), "\r\n", cut_tail_, "\r\n");
      }
      cut_bytes_ += "0\r\n\r\n";
    } else {
      cut_bytes_ = cut_tail_;
    }
    StreamExpiresAfter(std::min(context_.options.write_timeout, kLingerTimeout));
    write_in_flight_ = true;
    net::async_write(stream_, net::buffer(cut_bytes_), [self = Self()](beast::error_code, size_t) {
      self->write_in_flight_ = false;
      self->Record(self->status_);
      self->Close();
    });
  }

  // The answer is out: next request, or close.
  void Finished() {
    if (keep_alive_ && !context_.stopping()) {
      ReadIdle();
    } else {
      LingeringClose();
    }
  }

  void LingeringClose() {
    if (state_ == State::kClosed) return;
    state_ = State::kLingering;
    StreamExpiresAfter(kLingerTimeout);
    if constexpr (kTls) {
      // close_notify, then the peer's (or its close, or the linger timeout).
      stream_.async_shutdown([self = Self()](beast::error_code) { self->Close(); });
    } else {
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      if (ec) {
        Close();
        return;
      }
      drained_ = 0;
      Drain();
    }
  }

  void Drain() {
    Lowest().async_read_some(net::buffer(drain_buffer_),
                             [self = Self()](beast::error_code ec, size_t n) {
                               self->drained_ += n;
                               if (ec || self->drained_ > kMaxLingerBytes) {
                                 self->Close();
                               } else {
                                 self->Drain();
                               }
                             });
  }

  void Close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    closed_.store(true, std::memory_order_release);
    read_timer_.cancel();
    idle_timer_.cancel();
    cut_timer_.cancel();
    if (recorded_) EndCount();  // else the open exchange's Record ends it
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close();
  }

  void BeginExchange(std::string route, std::string method) {
    route_ = std::move(route);
    method_ = std::move(method);
    request_done_ = absl::Now();
    recorded_ = false;
  }

  void Record(int status) {
    if (recorded_) return;
    recorded_ = true;
    if (context_.options.on_response) {
      context_.options.on_response(route_, method_, status, absl::Now() - request_done_);
    }
    EndCount();
  }

  void EndCount() {
    if (!counted_) return;
    counted_ = false;
    context_.RequestEnded();
  }

  // A handler's view of one request. Lives on the thread that runs the handler; one that
  // starts on the I/O thread (on_io_thread_) writes its answer there and then, or hands itself
  // to a worker (ContinueOnWorker), which then holds it.
  class Exchange final : public HttpExchange, public std::enable_shared_from_this<Exchange> {
   public:
    Exchange(std::shared_ptr<Session> session, HttpRequest request, bool on_io_thread)
        : session_(std::move(session)), request_(std::move(request)), on_io_thread_(on_io_thread) {}
    ~Exchange() override {
      if (!answered_) {
        session_->PostResponse(
            ErrorResponse(absl::InternalError("the server failed to answer this request")));
      } else if (streaming_ && !ended_) {
        EndStream();
      }
    }

    const HttpRequest& request() const override { return request_; }

    void Respond(HttpResponse response) override {
      if (answered_) return;
      answered_ = true;
      if (on_io_thread_) {  // on the connection's strand, in OnRequest's handler
        session_->WriteResponse(std::move(response), /*close_after=*/false);
      } else {
        session_->PostResponse(std::move(response));
      }
    }

    bool OnIoThread() const override { return on_io_thread_; }

    void ContinueOnWorker(absl::AnyInvocable<void(HttpExchange&) &&> rest) override {
      if (answered_) return;
      if (!on_io_thread_) {
        RunHandler(std::move(rest), *this);
        return;
      }
      // From here the worker owns the exchange; the handler on this thread returns at once.
      on_io_thread_ = false;
      if (!session_->context_.Dispatch(
              [self = this->shared_from_this(), rest = std::move(rest)]() mutable {
                RunHandler(std::move(rest), *self);
              })) {
        on_io_thread_ = true;
        Respond(ErrorResponse(absl::UnavailableError("the server is shutting down")));
      }
    }

    bool StartStream(HttpResponse head) override {
      // An inline handler runs on the strand that would have to do the writing.
      if (answered_ || on_io_thread_) return false;
      answered_ = streaming_ = true;
      gone_ = !session_->StartStreamAndWait(std::move(head));
      return !gone_;
    }

    bool WriteChunk(std::string data) override {
      if (!streaming_ || ended_ || gone_) return false;
      // A write to a socket whose peer has closed still succeeds once: ask first, so that a
      // chunk is never counted as delivered to a client that had left.
      if (session_->PeerGone()) {
        gone_ = true;
        return false;
      }
      gone_ = !session_->WriteChunkAndWait(std::move(data));
      return !gone_;
    }

    bool ClientGone() const override { return gone_ || session_->PeerGone(); }

    void EndStream() override {
      if (!streaming_ || ended_) return;
      ended_ = true;
      session_->PostEndStream();
    }

   private:
    std::shared_ptr<Session> session_;
    HttpRequest request_;
    bool on_io_thread_;
    bool answered_ = false;
    bool streaming_ = false;
    bool ended_ = false;
    bool gone_ = false;
  };

  // `handler`: an HttpHandler, or the rest of one (ContinueOnWorker).
  template <typename Handler>
  static void RunHandler(Handler&& handler, HttpExchange& exchange) {
    // No exception may escape into Asio's threads; the exchange then answers 500.
    try {
      std::forward<Handler>(handler)(exchange);
    } catch (const std::exception& e) {
      std::cerr << "anyai-server: http handler for " << exchange.request().path
                << " threw: " << e.what() << "\n";
    } catch (...) {
      std::cerr << "anyai-server: http handler for " << exchange.request().path << " threw\n";
    }
  }

  Stream stream_;
  Context& context_;
  const std::string address_key_;
  net::steady_timer read_timer_;
  // A kept-alive connection's idle_timeout (WaitIdle): armed while idle_timer_armed_.
  net::steady_timer idle_timer_;
  net::steady_timer cut_timer_;
  // The socket's descriptor, for PeerGone() from a handler's thread; closed_ says it may have
  // been closed (and its number reused), set on the strand before closing.
  const int fd_;
  std::atomic<bool> closed_{false};
  std::string peer_;
  beast::flat_buffer buffer_;
  State state_ = State::kIdle;
  uint64_t request_number_ = 0;
  bool read_timed_out_ = false;
  // What the current request's read is bounded by now, and what read_timer_ is armed for
  // (nullopt: not armed; it is armed only while the request waits for bytes).
  ReadLimit read_limit_ = ReadLimit::kWhole;
  std::optional<ReadLimit> armed_limit_;
  absl::Time header_deadline_;
  absl::Time read_deadline_;
  bool idle_timer_armed_ = false;
  std::chrono::steady_clock::time_point idle_since_;
  // Whether the stream's expiry (Lowest().expires_after) is set.
  bool stream_expiry_set_ = false;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string head_bytes_;  // the request line and header fields read so far, raw
  bool keep_alive_ = false;
  unsigned version_ = 11;
  // The answer in progress: a whole one's head and body (head_ keeps its capacity from one
  // answer to the next), or a stream's head and serializer.
  std::string head_;
  std::string body_;
  static constexpr size_t kKeptHeadCapacity = 16 << 10;
  std::optional<http::response<http::empty_body>> stream_head_;
  std::optional<http::response_serializer<http::empty_body>> stream_serializer_;
  bool chunked_ = false;
  std::string chunk_;
  int status_ = 0;
  bool write_in_flight_ = false;
  // Shutdown's deadline cut this connection (Cut); a stream ends with cut_tail_.
  bool cutting_ = false;
  std::string cut_tail_;
  std::string cut_bytes_;
  // Lingering close.
  std::array<char, 4096> drain_buffer_;
  size_t drained_ = 0;
  // For on_response: recorded_ is false from a request's head (or refusal) to its answer.
  // counted_: a request is in flight (Context::RequestBegan), from its first byte to its
  // answer or the connection's end.
  bool counted_ = false;
  // How many fields the current request's head had (the rest are trailers).
  size_t head_fields_ = 0;
  std::string route_;
  std::string method_;
  absl::Time request_done_;
  bool recorded_ = true;
};

absl::Status LoadTls(const HttpServerOptions& options, net::ssl::context& ssl) {
  const auto cannot = [](const char* field, const std::string& path, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": cannot use \"", path, "\": ", why));
  };
  ssl.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                  net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                  net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  beast::error_code ec;
  ssl.use_certificate_chain_file(options.tls_cert_file, ec);
  if (ec) return cannot("tls.cert_file", options.tls_cert_file, ec.message());
  ssl.use_private_key_file(options.tls_key_file, net::ssl::context::pem, ec);
  if (ec) return cannot("tls.key_file", options.tls_key_file, ec.message());
  if (SSL_CTX_check_private_key(ssl.native_handle()) != 1) {
    return cannot("tls.key_file", options.tls_key_file, "it does not match tls.cert_file");
  }
  if (!options.tls_client_ca_file.empty()) {
    ssl.load_verify_file(options.tls_client_ca_file, ec);
    if (ec) return cannot("tls.client_ca_file", options.tls_client_ca_file, ec.message());
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.tls_client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ssl.native_handle(), names);
    ssl.set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
  }
  return absl::OkStatus();
}

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions options, const HttpRouter& router)
      : context(std::move(options), router),
        iocs(MakeContexts(context.options.io_threads)),
        acceptor(net::make_strand(*iocs.front())),
        accept_timer(acceptor.get_executor()) {}

  // One io_context per I/O thread, each told it has one thread: a connection's handlers run on
  // the thread that owns it, which wakes no other I/O thread to serve it (only a new connection
  // is handed over, once). A single shared io_context hands ready handlers to whichever thread
  // is idle: 0.25 futex calls per refused chat under wrk -t2 -c64 before, 0.01 after
  // (bench/syscalls_per_call.sh ... http; bench/RESULTS.md, stop 24).
  static std::vector<std::unique_ptr<net::io_context>> MakeContexts(int n) {
    std::vector<std::unique_ptr<net::io_context>> contexts;
    for (int i = 0; i < n; ++i) contexts.push_back(std::make_unique<net::io_context>(1));
    return contexts;
  }

  // The io_context of the next accepted connection: round robin over the I/O threads.
  net::io_context& NextContext() { return *iocs[next_context++ % iocs.size()]; }

  void Accept() {
    net::io_context& next = NextContext();
    acceptor.async_accept(net::make_strand(next), [this](beast::error_code ec, tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (ec) {
        if (ec == net::error::operation_aborted) return;
        // Out of descriptors (EMFILE, ENFILE) or the like: the pending connection stays in the
        // backlog; try again shortly rather than spin on it.
        accept_timer.expires_after(std::chrono::milliseconds(50));
        accept_timer.async_wait([this](beast::error_code e) {
          if (!e && acceptor.is_open()) Accept();
        });
        return;
      }
      Admit(std::move(socket));
      Accept();
    });
  }

  void Admit(tcp::socket socket) {
    beast::error_code ec;
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    if (ec) {
      socket.close(ec);
      return;
    }
    std::string key = AddressKey(remote.address(), context.options.ipv6_prefix_length);
    const bool capped = context.options.uncapped_peer == nullptr ||
                        !context.options.uncapped_peer(PeerAddress(remote.address()));
    if (!context.caps->TryAdmit(key, capped)) {
      if (!context.ssl) {
        const std::string& busy = OverCapacityResponse();
        (void)::send(socket.native_handle(), busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        socket.shutdown(tcp::socket::shutdown_send, ec);
      }
      socket.close(ec);
      return;
    }
    if (context.ssl) {
      std::make_shared<Session<TlsStream>>(std::move(socket), context, std::move(key))->Start();
    } else {
      std::make_shared<Session<PlainStream>>(std::move(socket), context, std::move(key))->Start();
    }
  }

  // Destroyed in reverse: the io_contexts (and any Session their handlers still hold) before
  // the Context they point to.
  Context context;
  std::vector<std::unique_ptr<net::io_context>> iocs;
  size_t next_context = 0;  // only the acceptor's handler (one at a time) uses it
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_guards;
  tcp::acceptor acceptor;
  net::steady_timer accept_timer;
  std::vector<std::thread> threads;
  std::string address;
  int port = 0;
  absl::Mutex shutdown_mu;
  bool shut_down ABSL_GUARDED_BY(shutdown_mu) = false;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(absl::Now()); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                              const HttpRouter& router) {
  if (options.io_threads < 1 || options.worker_threads < 1) {
    return absl::InvalidArgumentError("http: io_threads and worker_threads must be at least 1");
  }
  if (options.max_body_bytes < 1 || options.max_header_bytes < 1) {
    return absl::InvalidArgumentError("http: max_body_bytes and max_header_bytes must be >= 1");
  }
  if (options.max_connections < 1 || options.max_connections_per_address < 1) {
    return absl::InvalidArgumentError(
        "http: max_connections and max_connections_per_address must be at least 1");
  }
  if (options.ipv6_prefix_length < 1 || options.ipv6_prefix_length > 128) {
    return absl::InvalidArgumentError("http: ipv6_prefix_length must be in [1, 128]");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls: cert_file and key_file must be given together");
  }
  if (!options.tls_client_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("tls.client_ca_file: needs tls.cert_file and key_file");
  }
  absl::StatusOr<::anyai::net::HostPort> hp = ::anyai::net::HostPort::Parse(options.listen);
  if (!hp.ok())
    return absl::InvalidArgumentError(absl::StrCat("http_listen: ", hp.status().message()));
  const std::string listen = options.listen;
  auto impl = std::make_unique<Impl>(std::move(options), router);
  Context& context = impl->context;
  if (!context.options.tls_cert_file.empty()) {
    context.ssl = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
    if (absl::Status s = LoadTls(context.options, *context.ssl); !s.ok()) return s;
  }
  int64_t max_connections = context.options.max_connections;
  if (const int64_t fds = ::anyai::net::RaiseDescriptorLimit(); fds > 0) {
    const int64_t fit = std::max<int64_t>(1, fds - kReservedDescriptors);
    if (max_connections > fit) {
      std::cerr << "anyai-server: http: max_connections " << max_connections << " lowered to "
                << fit << " (the open-file limit is " << fds << ")\n";
      max_connections = fit;
    }
  }
  context.caps = std::make_unique<::anyai::net::ConnectionCaps>(
      max_connections, context.options.max_connections_per_address);

  const auto cannot = [&](const beast::error_code& ec) {
    return absl::UnavailableError(
        absl::StrCat("http_listen: cannot listen on \"", listen, "\": ", ec.message()));
  };
  beast::error_code ec;
  tcp::endpoint endpoint;
  const net::ip::address address = net::ip::make_address(hp->host.name, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, static_cast<uint16_t>(hp->port));
  } else {
    tcp::resolver resolver(*impl->iocs.front());
    auto results =
        resolver.resolve(hp->host.name, absl::StrCat(hp->port), tcp::resolver::passive, ec);
    if (ec) return cannot(ec);
    if (results.empty()) return cannot(net::error::host_not_found);
    endpoint = *results.begin();
  }
  tcp::acceptor& acceptor = impl->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return cannot(ec);
  impl->port = acceptor.local_endpoint(ec).port();
  if (ec) return cannot(ec);
  impl->address = ::anyai::net::HostPort{hp->host, impl->port}.ToString();

  for (const std::unique_ptr<net::io_context>& ioc : impl->iocs) {
    impl->work_guards.push_back(net::make_work_guard(*ioc));
  }
  impl->Accept();
  for (const std::unique_ptr<net::io_context>& owned : impl->iocs) {
    impl->threads.emplace_back([ioc = owned.get()] {
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (const std::exception& e) {  // a handler threw: log it and keep serving
          std::cerr << "anyai-server: http I/O thread: " << e.what() << "\n";
        }
      }
    });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

const std::string& HttpServer::address() const { return impl_->address; }
int HttpServer::port() const { return impl_->port; }

void HttpServer::BeginShutdown() {
  if (!impl_->context.SetStopping()) return;
  // The listener stays open until Shutdown ends: a connection arriving meanwhile is answered
  // 503 with Retry-After rather than refused.
  for (const std::shared_ptr<Connection>& c : impl_->context.Sessions()) c->OnServerStopping();
}

void HttpServer::Shutdown(absl::Time deadline) {
  BeginShutdown();
  absl::MutexLock lock(&impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->context.AwaitNoRequests(deadline);
  std::promise<void> closed;
  net::post(impl_->acceptor.get_executor(), [impl = impl_.get(), &closed] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->accept_timer.cancel();
    closed.set_value();
  });
  closed.get_future().wait();
  for (const std::shared_ptr<Connection>& c : impl_->context.Sessions()) c->ForceClose();
  impl_->context.CloseAndJoinWorkers();
  if (!impl_->context.AwaitNoSessions(absl::Now() + kFinalDrain)) {
    std::cerr << "anyai-server: http connections still open after shutdown\n";
  }
  impl_->work_guards.clear();
  for (const std::unique_ptr<net::io_context>& ioc : impl_->iocs) ioc->stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->shut_down = true;
}

}  // namespace anyai::server
