#include "tests/server/providers/openai/fake_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace anyai::testing {
namespace {

constexpr int kPollMillis = 10;
constexpr size_t kMaxRequestBytes = 16 << 20;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

std::string FakeUpstream::Request::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

FakeUpstream::Response FakeUpstream::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}};
  r.body = std::move(body);
  return r;
}

FakeUpstream::Response FakeUpstream::Sse(const std::vector<std::string>& events) {
  Response r;
  r.headers = {{"Content-Type", "text/event-stream"}};
  for (const std::string& e : events)
    r.steps.push_back({.data = absl::StrCat("data: ", e, "\n\n")});
  r.steps.push_back({.data = "data: [DONE]\n\n"});
  return r;
}

std::unique_ptr<FakeUpstream> FakeUpstream::Start() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::perror("FakeUpstream: socket");
    std::abort();
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 64) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::perror("FakeUpstream: bind/listen");
    std::abort();
  }
  return std::unique_ptr<FakeUpstream>(new FakeUpstream(fd, ntohs(address.sin_port)));
}

FakeUpstream::FakeUpstream(int listen_fd, int port) : listen_fd_(listen_fd), port_(port) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

FakeUpstream::~FakeUpstream() {
  stopping_.store(true, std::memory_order_release);
  acceptor_.join();
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
  close(listen_fd_);
}

std::string FakeUpstream::base_url() const {
  return absl::StrCat("http://127.0.0.1:", port_, "/v1");
}

void FakeUpstream::Enqueue(Response response) {
  absl::MutexLock lock(&mu_);
  script_.push_back(std::move(response));
}

std::vector<FakeUpstream::Request> FakeUpstream::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

int FakeUpstream::connections() const {
  absl::MutexLock lock(&mu_);
  return connections_;
}

int FakeUpstream::disconnects() const {
  absl::MutexLock lock(&mu_);
  return disconnects_;
}

int FakeUpstream::wait_timeouts() const {
  absl::MutexLock lock(&mu_);
  return wait_timeouts_;
}

bool FakeUpstream::WaitForDisconnects(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return disconnects_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

void FakeUpstream::CountDisconnect() {
  absl::MutexLock lock(&mu_);
  ++disconnects_;
}

void FakeUpstream::AcceptLoop() {
  while (!stopping_.load(std::memory_order_acquire)) {
    pollfd p{.fd = listen_fd_, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, kPollMillis) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    ++connections_;
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FakeUpstream::Serve(int fd) {
  std::string buffer;
  for (;;) {
    Request request;
    if (!ReadRequest(fd, buffer, request)) break;
    Response response;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(request);
      if (script_.empty()) {
        response = Json(500, R"({"error":{"message":"FakeUpstream: no response scripted"}})");
      } else {
        response = std::move(script_.front());
        script_.pop_front();
      }
    }
    if (!Answer(fd, response) || response.close_after ||
        absl::EqualsIgnoreCase(request.Header("connection"), "close")) {
      break;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    std::erase(open_fds_, fd);
  }
  close(fd);
}

bool FakeUpstream::ReadRequest(int fd, std::string& buffer, Request& request) {
  size_t header_end = std::string::npos;
  size_t body_length = 0;
  for (;;) {
    if (header_end == std::string::npos) {
      header_end = buffer.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const std::vector<absl::string_view> lines =
            absl::StrSplit(absl::string_view(buffer).substr(0, header_end), "\r\n");
        const std::vector<absl::string_view> first = absl::StrSplit(lines[0], ' ');
        if (first.size() < 2) return false;
        request.method = std::string(first[0]);
        request.target = std::string(first[1]);
        for (size_t i = 1; i < lines.size(); ++i) {
          const size_t colon = lines[i].find(':');
          if (colon == absl::string_view::npos) continue;
          request.headers.emplace_back(
              absl::AsciiStrToLower(lines[i].substr(0, colon)),
              std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
        }
        if (!absl::SimpleAtoi(request.Header("content-length"), &body_length)) body_length = 0;
      }
    }
    if (header_end != std::string::npos && buffer.size() >= header_end + 4 + body_length) {
      request.body = buffer.substr(header_end + 4, body_length);
      buffer.erase(0, header_end + 4 + body_length);
      return true;
    }
    if (buffer.size() > kMaxRequestBytes) return false;
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = poll(&p, 1, kPollMillis);
    if (stopping_.load(std::memory_order_acquire)) return false;
    if (ready <= 0) continue;
    char chunk[16384];
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

bool FakeUpstream::Wait(int fd, absl::Duration delay, absl::Notification* notification) {
  const absl::Time start = absl::Now();
  bool notification_done = notification == nullptr;
  absl::Time deadline = notification_done ? start + delay : start + kMaxStepWait;
  for (;;) {
    if (stopping_.load(std::memory_order_acquire)) return false;
    if (!notification_done) {
      if (notification->HasBeenNotified() || absl::Now() >= deadline) {
        if (!notification->HasBeenNotified()) {
          absl::MutexLock lock(&mu_);
          ++wait_timeouts_;
        }
        notification_done = true;
        deadline = absl::Now() + delay;
      }
    } else if (absl::Now() >= deadline) {
      return true;
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, kPollMillis) > 0) {
      char byte;
      const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (!stopping_.load(std::memory_order_acquire)) CountDisconnect();
        return false;
      }
      // The client sent more (a pipelined request): leave it for later, without spinning.
      absl::SleepFor(absl::Milliseconds(kPollMillis));
    }
  }
}

bool FakeUpstream::Answer(int fd, const Response& response) {
  if (response.hang) {
    Wait(fd, absl::InfiniteDuration(), nullptr);
    return false;
  }
  std::string head =
      absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status), "\r\n");
  for (const auto& [name, value] : response.headers)
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  if (response.close_after) head += "Connection: close\r\n";
  if (response.steps.empty()) {
    absl::StrAppend(&head, "Content-Length: ", response.body.size(), "\r\n\r\n", response.body);
    if (!SendAll(fd, head)) {
      CountDisconnect();
      return false;
    }
    return true;
  }
  head += "Transfer-Encoding: chunked\r\n\r\n";
  if (!SendAll(fd, head)) {
    CountDisconnect();
    return false;
  }
  for (const Step& step : response.steps) {
    if ((step.delay > absl::ZeroDuration() || step.wait_for != nullptr) &&
        !Wait(fd, step.delay, step.wait_for)) {
      return false;
    }
    if (step.data.empty()) continue;
    if (!SendAll(fd, absl::StrCat(absl::Hex(step.data.size()), "\r\n", step.data, "\r\n"))) {
      CountDisconnect();
      return false;
    }
  }
  if (!SendAll(fd, "0\r\n\r\n")) {
    CountDisconnect();
    return false;
  }
  return true;
}

}  // namespace anyai::testing
