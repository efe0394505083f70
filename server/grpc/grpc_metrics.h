// Counts and times every gRPC call (SPEC §7): a server interceptor that reports each call's
// method, status and latency to Metrics when its status is sent. Installed once on the
// ServerBuilder; covers every service (AnyAI, Admin, health, reflection).
//
// Thread safety: one interceptor per call, created by gRPC; Metrics is thread-safe.
#ifndef ANYAI_SERVER_GRPC_GRPC_METRICS_H_
#define ANYAI_SERVER_GRPC_GRPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "server/metrics/metrics.h"

namespace anyai::server {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    Metrics& metrics);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_METRICS_H_
