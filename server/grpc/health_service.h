// gRPC's health service (grpc.health.v1.Health) for the public gRPC port: SERVING while the
// server takes calls and its storage is healthy (the same test as HTTP's /readyz), NOT_SERVING
// while it starts, drains or its storage fails; for the whole server ("") and for
// "anyai.v1.AnyAI", NOT_FOUND for any other name. Check runs on the completion queues
// (async_calls.h), so HTTP/2 rapid reset on it costs what it costs on any method; Watch, a
// long-lived stream kubelets and load balancers rarely use, stays on gRPC's synchronous server,
// which sends the status at once and again whenever it changes (looked at every second), until
// the client goes or the server stops.
//
//   HealthService health([&] { return ready && database.healthy(); });
//   builder.RegisterService(&health);           // before BuildAndStart
//   queues.Start([&](CallQueue& q) { health.Arm(q); ... });
//
// Thread safety: thread-safe; `serving` is called from gRPC's and the queues' threads.
#ifndef ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_
#define ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/grpc/async_calls.h"

namespace anyai::server {

class HealthService final
    : public grpc::health::v1::Health::WithAsyncMethod_Check<grpc::health::v1::Health::Service> {
 public:
  explicit HealthService(std::function<bool()> serving);
  ~HealthService() override;

  // Posts Check's waiting requests on `queue`.
  void Arm(CallQueue& queue);
  // The server is stopping: every Watch ends now (OK; a client retries elsewhere).
  void Shutdown();

  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  // The status of `service`, or nothing for a name this port does not serve.
  std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> StatusOf(
      const std::string& service) const;
  // Check's answer (not named Check, which would hide the generated one).
  grpc::Status Answer(grpc::ServerContext& context,
                      const grpc::health::v1::HealthCheckRequest& request,
                      grpc::health::v1::HealthCheckResponse& response);

  const std::function<bool()> serving_;
  absl::Notification shutting_down_;
  const std::unique_ptr<
      UnaryMethod<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>>
      check_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_
