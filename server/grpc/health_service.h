// gRPC's health service (grpc.health.v1.Health) for the public gRPC port: SERVING while the
// server takes calls and its storage is healthy (the same test as HTTP's /readyz), NOT_SERVING
// while it starts, drains or its storage fails; for the whole server ("") and for
// "anyai.v1.AnyAI", NOT_FOUND for any other name. Both methods run on the completion queues
// (async_calls.h), so HTTP/2 rapid reset on them costs what it costs on any method and the
// port has no synchronous method (whose server's idle threads would take a share of the
// polling of every call, issue 13). Check is answered on the polling thread. Watch, a
// long-lived stream kubelets and load balancers rarely use, holds no thread while it waits: a
// call object sends the status at once, then a grpc::Alarm on its queue looks at it every
// second and the call writes only when it changed (SERVICE_UNKNOWN for a name this port does
// not serve), one write or alarm outstanding at a time; it ends OK when the server stops
// (Shutdown, which cancels every watcher's alarm) or when the client goes.
//
//   HealthService health([&] { return ready && database.healthy(); });
//   builder.RegisterService(&health);           // before BuildAndStart
//   queues.Start([&](CallQueue& q) { health.Arm(q); ... });
//   ...
//   health.Shutdown();  server->Shutdown(deadline);  queues.Stop();
//
// Thread safety: thread-safe; `serving` is called from the queues' polling threads, Shutdown
// from any thread.
#ifndef ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_
#define ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/grpc/async_calls.h"

namespace anyai::server {

class HealthService final : public grpc::health::v1::Health::AsyncService {
 public:
  explicit HealthService(std::function<bool()> serving);
  ~HealthService() override;

  // Posts Check's and Watch's waiting requests on `queue`.
  void Arm(CallQueue& queue);
  // The server is stopping: every Watch ends now (OK; a client retries elsewhere), and so does
  // every one that starts after.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class WatchCall;

  // The status of `service`, or nothing for a name this port does not serve.
  std::optional<grpc::health::v1::HealthCheckResponse::ServingStatus> StatusOf(
      const std::string& service) const;
  // Check's answer (not named Check, which would hide the generated one).
  grpc::Status Answer(grpc::ServerContext& context,
                      const grpc::health::v1::HealthCheckRequest& request,
                      grpc::health::v1::HealthCheckResponse& response);

  const std::function<bool()> serving_;
  const std::unique_ptr<
      UnaryMethod<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>>
      check_;
  // Every Watch call alive, so that Shutdown can cancel their alarms; a call adds itself when
  // it starts and removes itself before it is deleted, and sets or cancels its alarm only
  // under `mu_`, so Shutdown never touches a deleted call or races an alarm's Set.
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<WatchCall*> watches_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_HEALTH_SERVICE_H_
