// The gRPC calls in flight on one or more grpc::Servers, so that shutdown can wait for them
// and no longer: gRPC's own Shutdown(deadline) also waits for every idle client connection to
// go away, which an idle client never does before the deadline. Install Interceptor() on each
// ServerBuilder; a call counts from the moment gRPC hands it to a service until its call
// object is destroyed (every service: AnyAI, Admin, health, reflection).
//
//   GrpcCallsInFlight calls;
//   builder.experimental().SetInterceptorCreators({..., calls.Interceptor()});
//   ...
//   calls.AwaitNone(deadline);  // after the servers stopped taking new calls
//
// Thread safety: thread-safe. It must outlive the servers it counts for.
#ifndef ANYAI_SERVER_GRPC_GRPC_CALLS_IN_FLIGHT_H_
#define ANYAI_SERVER_GRPC_GRPC_CALLS_IN_FLIGHT_H_

#include <grpcpp/support/server_interceptor.h>

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::server {

class GrpcCallsInFlight {
 public:
  GrpcCallsInFlight() = default;
  GrpcCallsInFlight(const GrpcCallsInFlight&) = delete;
  GrpcCallsInFlight& operator=(const GrpcCallsInFlight&) = delete;

  // A new interceptor factory counting into this object; one per ServerBuilder.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Interceptor();

  int64_t count() const ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until no call is in flight or until `deadline`; true if none is.
  bool AwaitNone(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class CountingInterceptor;
  void Add(int64_t delta) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_CALLS_IN_FLIGHT_H_
