// One running gateway: the storage, the quota engine, the providers, the Gateway, and the
// fronts that serve them (gRPC, and HTTP: http_api.h over http_server.h), built from a
// validated ServerConfig.
// `anyai-server` is a thin main around it; the integration tests start one in-process on
// port 0 with a temp data dir.
//
//   auto server = Server::Start(config);
//   std::cout << "grpc listening on " << (*server)->grpc_address() << "\n";
//   std::cout << "http listening on " << (*server)->http_address() << "\n";
//   (*server)->Wait();  // until Shutdown() from another thread
//
// Thread safety: Shutdown() may be called from any thread, once; the accessors are safe to
// call while serving.
#ifndef ANYAI_SERVER_APP_SERVER_H_
#define ANYAI_SERVER_APP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "quota/plan.h"
#include "server/gateway/gateway.h"

namespace anyai::server {

struct ServerOptions {
  // The time of every decision; tests may freeze or step it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // How often idle tenants are evicted from memory.
  absl::Duration eviction_period = absl::Seconds(10);
  // The HTTP front's threads (http_server.h): I/O threads, and workers that run the handlers
  // (providers may block them for seconds).
  int http_io_threads = 2;
  int http_worker_threads = 16;
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
  int http_port() const;
  Gateway& gateway();

  // Stops accepting calls (/readyz turns 503, idle HTTP connections close), lets in-flight
  // ones finish for up to `grace` on both fronts, then cancels the rest; stops background
  // work. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
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
  static absl::Status StartGrpc(const v1::ServerConfig& config, Parts& p);
  // The API's routes, /metrics, and the server that serves them, counting every answer.
  static absl::Status StartHttp(const v1::ServerConfig& config, Parts& p);
  // Idle tenants and expired images leave memory every eviction_period, until Shutdown().
  static void StartEvictor(Parts& p);

  explicit Server(std::unique_ptr<Parts> parts);

  std::unique_ptr<Parts> parts_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_APP_SERVER_H_
