// The gRPC front's own TCP listener, so that its connections are capped as the HTTP front's
// are (issue 12): at most max_connections at once, and max_connections_per_address from one
// client address (connection_caps.h: IPv4 the address, IPv6 its network of
// ipv6_prefix_length bits; the trusted proxies of `uncapped_peer` escape only the latter).
// gRPC 1.51 has no channel argument that caps connections: without this, ~20,000 idle
// connections use up the descriptor limit and then nobody is served.
//
// It accepts the sockets itself and hands each admitted one to the grpc::Server through the
// external connection acceptor of gRPC's ServerBuilder (FROM_FD), which then runs the usual
// handshake (TLS when the credentials are TLS, the handshake timeout, the channel args). A
// connection over a cap is closed at accept (counted in refused()). To know when gRPC is done
// with a socket, it keeps a dup of it in an epoll set, waiting for EPOLLHUP (gRPC always
// shutdown(SHUT_RDWR)s a socket before it closes it: iomgr's fd_orphan) or EPOLLRDHUP (the
// peer went); then it closes the dup and gives the place back. So a connection costs two
// descriptors: the total cap is lowered, saying so on stderr, to fit 2 per connection under
// the open-file limit (raised first to its hard limit) with some headroom. Should accept
// still fail for want of descriptors (EMFILE, ENFILE), it is retried every 50 ms rather than
// spun on.
//
//   absl::StatusOr<std::unique_ptr<GrpcAcceptor>> acceptor =
//       GrpcAcceptor::Listen("0.0.0.0:50051", GrpcAcceptorOptions{...});
//   grpc::ServerBuilder builder;   // no AddListeningPort
//   (*acceptor)->Attach(builder.experimental().AddExternalConnectionAcceptor(
//       grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD, credentials));
//   std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
//   (*acceptor)->Start();
//   ...
//   (*acceptor)->Stop();           // before server->Shutdown()
//   server->Shutdown(deadline);
//
// Listen binds and listens at once (so the port is known, and connections wait in the
// backlog, before the server is built); Start begins accepting on one thread, which also
// watches the admitted sockets. Stop must come before the grpc::Server shuts down: gRPC drops
// (without closing) a connection handed to it once it has shut down.
//
// Thread safety: Listen, Attach, Start and Stop are for the owner (Stop and the destructor
// may be called from any thread but the acceptor's own, and more than once); port(),
// refused(), open() and max_connections() from any thread at any time.
#ifndef ANYAI_SERVER_GRPC_GRPC_ACCEPTOR_H_
#define ANYAI_SERVER_GRPC_GRPC_ACCEPTOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_builder.h"
#include "server/net/connection_caps.h"

namespace anyai::server {

struct GrpcAcceptorOptions {
  // Connections held open at once, in all and from one client address (IPv4: the address;
  // IPv6: its network of ipv6_prefix_length bits). One over a cap is closed at accept.
  int64_t max_connections = 4096;
  int64_t max_connections_per_address = 64;
  int ipv6_prefix_length = 64;
  // Peers the per-address cap does not apply to (the total cap still does): the trusted
  // proxies. Gets the peer's canonical address text (IpAddress::ToString). Null: none. Called
  // on the acceptor's thread; must not block.
  std::function<bool(std::string_view peer_address)> uncapped_peer;
  // listen(2)'s backlog.
  int backlog = 1024;
  // The config field of the listen address, which every error and notice is prefixed with
  // ("admin_listen" for the Admin listener).
  std::string field = "grpc_listen";
};

class GrpcAcceptor {
 public:
  // Binds `host_port` ("0.0.0.0:50051", "[::]:0", "localhost:50051": a host name binds the
  // first of its addresses that can be bound), with SO_REUSEADDR, and listens. Port 0 picks a
  // free port (port() says which). INVALID_ARGUMENT for a bad address or option (naming it,
  // after options.field), UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcAcceptor>> Listen(const std::string& host_port,
                                                              GrpcAcceptorOptions options);

  GrpcAcceptor(const GrpcAcceptor&) = delete;
  GrpcAcceptor& operator=(const GrpcAcceptor&) = delete;
  // Stop().
  ~GrpcAcceptor();

  // The gRPC server's side: what AddExternalConnectionAcceptor returned. Before Start.
  void Attach(std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor);

  // Begins accepting; after the grpc::Server is built and started. FAILED_PRECONDITION when
  // nothing is attached, or when already started or stopped.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);

  // Stops accepting and closes the listener (a new connection is refused by the system);
  // waits for the acceptor's thread. Connections already handed to gRPC stay gRPC's.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // The bound port.
  int port() const { return port_; }
  // Connections closed at accept because a cap was full; counted before the close, so a
  // client that saw its connection closed sees it counted.
  int64_t refused() const { return refused_.load(std::memory_order_acquire); }
  // Connections admitted and not yet given back.
  int64_t open() const { return caps_.open(); }
  // The total cap in force (options.max_connections, perhaps lowered to the descriptor limit).
  int64_t max_connections() const { return caps_.max_connections(); }

 private:
  GrpcAcceptor(GrpcAcceptorOptions options, int64_t max_connections, int listener_fd, int port);

  // The acceptor's thread: accepts, admits and hands over; gives back what gRPC is done with.
  void Run();
  // Accepts what is pending. False when out of descriptors (back off).
  bool AcceptPending();
  void Admit(int fd, const sockaddr* peer, socklen_t peer_length);
  void Unwatch(int dup_fd);

  const GrpcAcceptorOptions options_;
  net::ConnectionCaps caps_;
  const int listener_fd_;
  const int port_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: written by Stop to end Run
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> grpc_;
  std::atomic<int64_t> refused_{0};
  // The dup of each socket handed to gRPC, and its address key. Touched only by Run's thread
  // while it runs, and by Stop after it has been joined.
  absl::flat_hash_map<int, std::string> watched_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_ACCEPTOR_H_
