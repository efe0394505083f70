// A blocking HTTP/1.1 client over a raw loopback socket, for the HTTP front's tests. It sends
// exactly the bytes it is given (so tests can send malformed, partial, oversized or pipelined
// requests, or vanish mid-response) and parses what comes back: a Content-Length body, a
// chunked one (keeping its chunks) or one that ends with the connection.
//
//   HttpConnection c(port);
//   c.Send(Request("GET", "/v1/models"));
//   std::optional<HttpReply> r = c.Read();  // r->status, r->Header("content-type"), r->body
//
// Not thread-safe: one HttpConnection per thread.
#ifndef ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_CLIENT_H_
#define ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace anyai::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpReply {
  int status = 0;
  std::string version;              // "HTTP/1.1"
  Headers headers;                  // names lower-cased, in order
  std::string body;                 // de-chunked
  std::vector<std::string> chunks;  // a chunked body's chunks, in order
  bool chunked = false;

  std::string Header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
  bool HasHeader(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return true;
    }
    return false;
  }
};

// A request's bytes: the request line, Host, `headers`, Content-Length when `body` is not
// empty (or the method is POST), and the body.
inline std::string Request(std::string_view method, std::string_view target,
                           std::string_view body = "", const Headers& headers = {}) {
  std::string out = absl::StrCat(std::string(method), " ", std::string(target),
                                 " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  if (!body.empty() || method == "POST") {
    absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n");
  }
  out += "\r\n";
  out.append(body);
  return out;
}

class HttpConnection {
 public:
  // `source`: the local IPv4 address to connect from, e.g. "127.0.0.2" (Linux routes all of
  // 127/8 to the loopback, so tests can be several clients); empty: the system's choice.
  explicit HttpConnection(int port, const std::string& source = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    if (!source.empty()) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1 ||
          ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~HttpConnection() { Close(); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool ok() const { return fd_ >= 0; }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response (a 1xx too); nullopt when the connection ends or `timeout` passes first.
  std::optional<HttpReply> Read(absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    HttpReply reply;
    std::string_view head(buffer_.data(), end);
    const size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    const size_t sp = status_line.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    reply.version = std::string(status_line.substr(0, sp));
    if (!absl::SimpleAtoi(std::string(status_line.substr(sp + 1, 3)), &reply.status)) {
      return std::nullopt;
    }
    if (line_end != std::string_view::npos) {
      std::string_view rest = head.substr(line_end + 2);
      while (!rest.empty()) {
        const size_t eol = rest.find("\r\n");
        const std::string_view line = rest.substr(0, eol);
        const size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
          std::string value(line.substr(colon + 1));
          reply.headers.emplace_back(absl::AsciiStrToLower(std::string(line.substr(0, colon))),
                                     std::string(absl::StripAsciiWhitespace(value)));
        }
        if (eol == std::string_view::npos) break;
        rest.remove_prefix(eol + 2);
      }
    }
    buffer_.erase(0, end + 4);
    if (reply.status < 200 || reply.status == 204 || reply.status == 304) return reply;
    if (absl::AsciiStrToLower(reply.Header("transfer-encoding")) == "chunked") {
      reply.chunked = true;
      for (;;) {
        size_t eol;
        while ((eol = buffer_.find("\r\n")) == std::string::npos) {
          if (!Fill(deadline)) return std::nullopt;
        }
        size_t size = 0;
        if (!absl::SimpleHexAtoi(buffer_.substr(0, eol), &size)) return std::nullopt;
        if (size == 0) {  // last chunk, then (no trailers) CRLF
          while (buffer_.size() < eol + 4) {
            if (!Fill(deadline)) return std::nullopt;
          }
          buffer_.erase(0, eol + 4);
          return reply;
        }
        while (buffer_.size() < eol + 2 + size + 2) {
          if (!Fill(deadline)) return std::nullopt;
        }
        reply.chunks.push_back(buffer_.substr(eol + 2, size));
        reply.body += reply.chunks.back();
        buffer_.erase(0, eol + 2 + size + 2);
      }
    }
    if (reply.HasHeader("content-length")) {
      size_t length = 0;
      if (!absl::SimpleAtoi(reply.Header("content-length"), &length)) return std::nullopt;
      while (buffer_.size() < length) {
        if (!Fill(deadline)) return std::nullopt;
      }
      reply.body = buffer_.substr(0, length);
      buffer_.erase(0, length);
      return reply;
    }
    while (Fill(deadline)) {
    }
    if (!eof_) return std::nullopt;
    reply.body = std::move(buffer_);
    buffer_.clear();
    return reply;
  }

  // Reads until what has arrived (and not yet been parsed by Read) contains `needle`; false
  // when the connection ends or `timeout` passes first. Read() then parses from the start.
  bool ReadUntil(std::string_view needle, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (buffer_.find(needle) == std::string::npos) {
      if (!Fill(deadline)) return false;
    }
    return true;
  }

  // True when the server closes the connection (EOF or reset) within `timeout`; whatever it
  // sends meanwhile is discarded.
  bool WaitForClose(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    buffer_.clear();
    while (Fill(deadline)) buffer_.clear();
    return eof_ || reset_;
  }

  // Shuts down the sending side: the server reads EOF after what was sent.
  void HalfClose() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
  }

  // Closes now; with `reset`, abortively (SO_LINGER 0: the server sees a TCP reset).
  void Close(bool reset = false) {
    if (fd_ < 0) return;
    if (reset) {
      linger l{1, 0};
      ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    ::close(fd_);
    fd_ = -1;
  }

 private:
  // Reads what is available into buffer_; false on EOF, error or the deadline.
  bool Fill(absl::Time deadline) {
    if (fd_ < 0 || eof_) return false;
    for (;;) {
      const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return false;
      if (ready == 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        reset_ = true;
        return false;
      }
      if (n == 0) {
        eof_ = true;
        return false;
      }
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
  bool reset_ = false;
};

// One request on a fresh connection. status 0 when nothing (parsable) came back.
inline HttpReply Fetch(int port, std::string_view method, std::string_view target,
                       std::string_view body = "", const Headers& headers = {}) {
  HttpConnection c(port);
  if (!c.ok() || !c.Send(Request(method, target, body, headers))) return {};
  return c.Read().value_or(HttpReply{});
}

// The `data:` payloads of a text/event-stream body, in order.
inline std::vector<std::string> Events(std::string_view body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view event = body.substr(pos, end - pos);
    if (event.substr(0, 6) == "data: ") out.emplace_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

}  // namespace anyai::testing

#endif  // ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_CLIENT_H_
