#include "server/grpc/grpc_metrics.h"

#include <chrono>

namespace anyai::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics& metrics, Endpoint endpoint)
      : metrics_(metrics), endpoint_(endpoint), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_.ObserveRequest(endpoint_, Transport::kGrpc,
                              Metrics::HttpStatusOfGrpcCode(status.error_code()),
                              absl::FromChrono(std::chrono::steady_clock::now() - start_));
    }
    methods->Proceed();
  }

 private:
  Metrics& metrics_;
  const Endpoint endpoint_;
  const std::chrono::steady_clock::time_point start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics& metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, Metrics::EndpointOfGrpcMethod(info->method()));
  }

 private:
  Metrics& metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    Metrics& metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

}  // namespace anyai::server
