// One running gateway: the storage, the quota engine, the providers, the Gateway, and the
// fronts that serve them (gRPC, and HTTP: http_api.h over http_server.h), built from a
// validated ServerConfig; and the Admin service on its own gRPC listener (admin_listen,
// loopback by default), never on the public ports.
// `anyai-server` is a thin main around it; the integration tests start one in-process on
// port 0 with a temp data dir.
//
//   auto server = Server::Start(config);
//   std::cout << "grpc listening on " << (*server)->grpc_address() << "\n";
//   std::cout << "http listening on " << (*server)->http_address() << "\n";
//   std::cout << "admin listening on " << (*server)->admin_address() << "\n";
//   (*server)->Wait();  // until Shutdown() from another thread
//
// Thread safety: Shutdown() may be called from any thread, and again; the accessors are safe to
// call while serving.
#ifndef ANYAI_SERVER_APP_SERVER_H_
#define ANYAI_SERVER_APP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "quota/plan.h"
#include "server/gateway/gateway.h"

namespace grpc {
class Server;
class ServerBuilder;
}  // namespace grpc

namespace anyai::server {

class GrpcAcceptor;

struct ServerOptions {
  // The time of every decision; tests may freeze or step it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // How often idle tenants are evicted from memory.
  absl::Duration eviction_period = absl::Seconds(10);
  // The HTTP front's threads (http_server.h): I/O threads, and workers that run the handlers
  // (providers may block them for seconds).
  int http_io_threads = 2;
  int http_worker_threads = 16;
  // The gRPC front's workers, for the calls that reach a provider (anyai_service.h): as many
  // calls as this wait for upstreams at once (an openai upstream takes seconds), and a stream
  // holds its worker while its client reads. The calls that never block are answered on the
  // completion queues' threads, one per core.
  int grpc_worker_threads = 64;
};

class Server {
 public:
  // Opens the data dir, builds everything, binds the listeners. Errors name what failed: the
  // config field, the storage, or the address that could not be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const v1::ServerConfig& config,
                                                       ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // "host:port" with the port really bound (port 0 in the config picks a free one).
  const std::string& grpc_address() const;
  const std::string& http_address() const;
  const std::string& admin_address() const;
  int http_port() const;
  Gateway& gateway();

  // Shuts down in this order: /readyz turns 503 at once; for `drain_delay` calls are still
  // served (a load balancer sees the 503 and stops sending); then the listeners stop taking
  // calls and idle connections close, calls in flight get up to `grace` to finish, and what
  // is left is cancelled (a gRPC client sees CANCELLED or UNAVAILABLE); shutdown ends as soon
  // as no call is in flight. Then background work stops. Idempotent: a second call returns at
  // once (use Wait()).
  void Shutdown(absl::Duration drain_delay, absl::Duration grace);
  // With no drain delay.
  void Shutdown(absl::Duration grace) { Shutdown(absl::ZeroDuration(), grace); }
  // With the config's drain_delay and shutdown_grace.
  void Shutdown();
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  // Everything a Server owns; defined in server.cc.
  struct Parts;
  // Start()'s steps, in the order the parts depend on each other; each fills its part of `p`
  // or says what failed.
  static absl::Status OpenStorage(const v1::ServerConfig& config, const quota::PlanTable& plans,
                                  Parts& p);
  // The catalogue, the providers (each wrapped to count its calls), the metrics, the Gateway.
  static absl::Status BuildGateway(const v1::ServerConfig& config, Parts& p);
  // The public gRPC listener (TLS from config.tls, HTTP/2 bounds from the config).
  static absl::Status StartGrpc(const v1::ServerConfig& config, Parts& p);
  // The Admin service's listener (admin_listen; TLS, or mutual TLS, from config.admin_tls).
  static absl::Status StartAdmin(const v1::ServerConfig& config, Parts& p);
  // One gRPC server for the services `add_services` registers on `listen` (the config field
  // `field`) with the credentials
  // of `tls` (the field `tls_field`), the bounds of both listeners, and the interceptors that
  // count and time its calls, behind our own listener with the connection caps (`acceptor`,
  // grpc_acceptor.h); fills `server`, `acceptor` and `address` (the port really bound).
  static absl::Status ListenGrpc(absl::string_view field, const std::string& listen,
                                 absl::string_view tls_field, const v1::TlsConfig& tls,
                                 const v1::ServerConfig& config,
                                 absl::FunctionRef<void(grpc::ServerBuilder&)> add_services,
                                 Parts& p, std::unique_ptr<grpc::Server>& server,
                                 std::unique_ptr<GrpcAcceptor>& acceptor, std::string& address);
  // The API's routes, /metrics, and the server that serves them, counting every answer.
  static absl::Status StartHttp(const v1::ServerConfig& config, Parts& p);
  // Idle tenants and expired images leave memory every eviction_period, until Shutdown().
  static void StartEvictor(Parts& p);

  explicit Server(std::unique_ptr<Parts> parts);

  std::unique_ptr<Parts> parts_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_APP_SERVER_H_
