#include "server/grpc/grpc_acceptor.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/net/connection_caps.h"
#include "server/net/host_port.h"
#include "server/net/ip_address.h"

namespace anyai::server {
namespace {

// Descriptors kept free of the connections: the listener, epoll, eventfd, RocksDB's files,
// the HTTP front's listener, logs.
constexpr int64_t kReservedDescriptors = 64;
// How long accept rests when the process is out of descriptors.
constexpr std::chrono::milliseconds kOutOfDescriptorsBackoff(50);
// What the watch of a socket handed to gRPC waits for: gRPC shut it down (EPOLLHUP), the peer
// closed its side (EPOLLRDHUP), or it failed (EPOLLERR). Not EPOLLIN: the bytes are gRPC's.
constexpr uint32_t kWatchEvents = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

// Binds and listens on the first address of `host_port` that can be bound; the listener fd
// (non-blocking, close-on-exec) and its port.
absl::StatusOr<std::pair<int, int>> BindAndListen(const net::HostPort& host_port, int backlog,
                                                  const std::string& field,
                                                  const std::string& text) {
  const auto cannot = [&](const std::string& why) {
    return absl::UnavailableError(absl::StrCat(field, ": cannot listen on \"", text, "\": ", why));
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (host_port.host.address.has_value()) hints.ai_flags |= AI_NUMERICHOST;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(host_port.port);
  if (int rc = ::getaddrinfo(host_port.host.name.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return cannot(::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, ::freeaddrinfo);
  std::string why = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, backlog) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    const int bound_port = bound.ss_family == AF_INET6
                               ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
                               : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
    return std::make_pair(fd, bound_port);
  }
  return cannot(why);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcAcceptor>> GrpcAcceptor::Listen(const std::string& host_port,
                                                                   GrpcAcceptorOptions options) {
  if (options.max_connections < 1 || options.max_connections_per_address < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.field, ": max_connections and max_connections_per_address must be at least 1"));
  }
  if (options.ipv6_prefix_length < 1 || options.ipv6_prefix_length > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.field, ": ipv6_prefix_length must be in [1, 128]"));
  }
  if (options.backlog < 1) {
    return absl::InvalidArgumentError(absl::StrCat(options.field, ": backlog must be >= 1"));
  }
  absl::StatusOr<net::HostPort> parsed = net::HostPort::Parse(host_port);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(options.field, ": ", parsed.status().message()));
  }
  int64_t max_connections = options.max_connections;
  if (const int64_t fds = net::RaiseDescriptorLimit(); fds > 0) {
    // Two descriptors a connection: gRPC's and the watching dup.
    const int64_t fit = std::max<int64_t>(1, (fds - kReservedDescriptors) / 2);
    if (max_connections > fit) {
      std::cerr << "anyai-server: " << options.field << ": max_connections " << max_connections
                << " lowered to " << fit << " (the open-file limit is " << fds
                << ", 2 per connection)\n";
      max_connections = fit;
    }
  }
  absl::StatusOr<std::pair<int, int>> listener =
      BindAndListen(*parsed, options.backlog, options.field, host_port);
  if (!listener.ok()) return listener.status();
  std::unique_ptr<GrpcAcceptor> acceptor(
      new GrpcAcceptor(std::move(options), max_connections, listener->first, listener->second));

  acceptor->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  acceptor->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (acceptor->epoll_fd_ < 0 || acceptor->wake_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat(acceptor->options_.field, ": cannot listen on \"",
                                               host_port, "\": ", std::strerror(errno)));
  }
  for (int fd : {acceptor->listener_fd_, acceptor->wake_fd_}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(acceptor->epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      return absl::UnavailableError(absl::StrCat(acceptor->options_.field, ": cannot listen on \"",
                                                 host_port, "\": ", std::strerror(errno)));
    }
  }
  return acceptor;
}

GrpcAcceptor::GrpcAcceptor(GrpcAcceptorOptions options, int64_t max_connections, int listener_fd,
                           int port)
    : options_(std::move(options)),
      caps_(max_connections, options_.max_connections_per_address),
      listener_fd_(listener_fd),
      port_(port) {}

GrpcAcceptor::~GrpcAcceptor() { Stop(); }

void GrpcAcceptor::Attach(
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor) {
  grpc_ = std::move(acceptor);
}

absl::Status GrpcAcceptor::Start() {
  absl::MutexLock lock(&mu_);
  if (grpc_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.field, ": no server is attached to the acceptor"));
  }
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.field, ": the acceptor was already started or stopped"));
  }
  started_ = true;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void GrpcAcceptor::Stop() {
  std::thread thread;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    thread = std::move(thread_);
  }
  if (thread.joinable()) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
    thread.join();
  }
  // The sockets stay open in gRPC: only the watching dups close, and nothing counts any more.
  for (const auto& [fd, key] : watched_) {
    ::close(fd);
    caps_.Release(key);
  }
  watched_.clear();
  for (int fd : {listener_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

void GrpcAcceptor::Run() {
  constexpr int kBatch = 64;
  epoll_event events[kBatch];
  bool resting = false;  // out of descriptors: the listener is not watched until `resume`
  std::chrono::steady_clock::time_point resume;
  for (;;) {
    int timeout_ms = -1;
    if (resting) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::ceil<std::chrono::milliseconds>(resume - std::chrono::steady_clock::now())
                 .count()));
    }
    const int n = ::epoll_wait(epoll_fd_, events, kBatch, timeout_ms);
    if (n < 0 && errno != EINTR) {
      std::cerr << "anyai-server: " << options_.field
                << ": the acceptor stops: epoll_wait: " << std::strerror(errno) << "\n";
      return;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) return;
      if (fd == listener_fd_) {
        if (!resting && !AcceptPending()) {
          epoll_event none{};
          none.data.fd = listener_fd_;
          (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listener_fd_, &none);
          resting = true;
          resume = std::chrono::steady_clock::now() + kOutOfDescriptorsBackoff;
        }
      } else {
        Unwatch(fd);
      }
    }
    if (resting && std::chrono::steady_clock::now() >= resume) {
      epoll_event in{};
      in.events = EPOLLIN;
      in.data.fd = listener_fd_;
      (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listener_fd_, &in);
      resting = false;
    }
  }
}

bool GrpcAcceptor::AcceptPending() {
  for (;;) {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    // Non-blocking: gRPC takes the socket as it is and expects it so.
    const int fd = ::accept4(listener_fd_, reinterpret_cast<sockaddr*>(&peer), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Admit(fd, reinterpret_cast<const sockaddr*>(&peer), length);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        return true;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        return false;
      default:
        // EINTR, or a connection that failed before it was accepted (ECONNABORTED, EPROTO,
        // the network errors accept(2) passes on): the next one.
        continue;
    }
  }
}

void GrpcAcceptor::Admit(int fd, const sockaddr* peer, socklen_t peer_length) {
  absl::StatusOr<net::IpAddress> ip = net::IpAddressOf(peer, peer_length);
  if (!ip.ok()) {
    ::close(fd);
    return;
  }
  const std::string key = net::AddressKey(*ip, options_.ipv6_prefix_length);
  const bool capped = options_.uncapped_peer == nullptr || !options_.uncapped_peer(ip->ToString());
  if (!caps_.TryAdmit(key, capped)) {
    // Counted first, so that whoever sees the close sees the count.
    refused_.fetch_add(1, std::memory_order_release);
    ::close(fd);
    return;
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const int watch = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  epoll_event event{};
  event.events = kWatchEvents;
  event.data.fd = watch;
  if (watch < 0 || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, watch, &event) != 0) {
    if (watch >= 0) ::close(watch);
    ::close(fd);
    caps_.Release(key);
    return;
  }
  watched_.emplace(watch, key);
  grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters connection;
  connection.listener_fd = listener_fd_;
  connection.fd = fd;
  grpc_->HandleNewConnection(&connection);
}

void GrpcAcceptor::Unwatch(int dup_fd) {
  auto it = watched_.find(dup_fd);
  if (it == watched_.end()) return;
  (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, dup_fd, nullptr);
  ::close(dup_fd);
  caps_.Release(it->second);
  watched_.erase(it);
}

}  // namespace anyai::server
