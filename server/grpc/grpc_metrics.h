// Counts and times every gRPC call (SPEC §7): a server interceptor that reports each call's
// endpoint, HTTP-equivalent status and latency to an observer when its status is sent. Installed
// once on the ServerBuilder; covers every service (AnyAI, Admin, health, reflection). The
// observer is a function, so that the front does not know the metrics backend (the Server hands
// it Metrics::ObserveRequest).
//
// Thread safety: one interceptor per call, created by gRPC; `observe` is called from any thread.
#ifndef ANYAI_SERVER_GRPC_GRPC_METRICS_H_
#define ANYAI_SERVER_GRPC_GRPC_METRICS_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string_view>

#include "absl/time/time.h"
#include "server/gateway/endpoint.h"

namespace anyai::server {

// (endpoint, HTTP status, latency) of one finished call.
using GrpcCallObserver = std::function<void(Endpoint, int, absl::Duration)>;

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    GrpcCallObserver observe);

// The endpoint of a gRPC method path ("/anyai.v1.AnyAI/CreateChatCompletion").
Endpoint EndpointOfGrpcMethod(std::string_view method);

// The HTTP status a finished call is counted under, from the table the HTTP front answers with
// (server/gateway/error_kind.h). An UNAVAILABLE call's details tell a failed upstream (502) from
// the gateway's own storage (503).
int HttpStatusOfGrpcStatus(const grpc::Status& status);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_METRICS_H_
