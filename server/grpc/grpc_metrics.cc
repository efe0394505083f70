#include "server/grpc/grpc_metrics.h"

#include <chrono>
#include <string_view>
#include <utility>

#include "google/rpc/status.pb.h"
#include "server/gateway/error_kind.h"
#include "server/gateway/errors.h"

namespace anyai::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(const GrpcCallObserver& observe, Endpoint endpoint)
      : observe_(observe), endpoint_(endpoint), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      observe_(endpoint_, HttpStatusOfGrpcStatus(status),
               absl::FromChrono(std::chrono::steady_clock::now() - start_));
    }
    methods->Proceed();
  }

 private:
  const GrpcCallObserver& observe_;
  const Endpoint endpoint_;
  const std::chrono::steady_clock::time_point start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcCallObserver observe) : observe_(std::move(observe)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(observe_, EndpointOfGrpcMethod(info->method()));
  }

 private:
  const GrpcCallObserver observe_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeGrpcMetricsInterceptor(
    GrpcCallObserver observe) {
  return std::make_unique<MetricsInterceptorFactory>(std::move(observe));
}

Endpoint EndpointOfGrpcMethod(std::string_view method) {
  constexpr std::string_view kAnyAI = "/anyai.v1.AnyAI/";
  if (method.rfind("/anyai.v1.Admin/", 0) == 0) return Endpoint::kAdmin;
  if (method.rfind("/grpc.health.v1.Health/", 0) == 0) return Endpoint::kHealth;
  if (method.rfind(kAnyAI, 0) != 0) return Endpoint::kOther;
  const std::string_view name = method.substr(kAnyAI.size());
  if (name == "CreateChatCompletion" || name == "StreamChatCompletion") {
    return Endpoint::kChatCompletions;
  }
  if (name == "ListModels") return Endpoint::kModels;
  if (name == "GenerateImages") return Endpoint::kImagesGenerations;
  if (name == "Imagine") return Endpoint::kImagine;
  if (name == "Ask") return Endpoint::kAsk;
  if (name == "DescribeImage") return Endpoint::kVision;
  if (name == "CheckKey") return Endpoint::kCheck;
  return Endpoint::kOther;
}

int HttpStatusOfGrpcStatus(const grpc::Status& status) {
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  if (code != absl::StatusCode::kUnavailable) {
    return ErrorKindOf(absl::Status(code, "")).http_status;
  }
  google::rpc::Status rpc;
  if (!rpc.ParseFromString(status.error_details())) rpc.Clear();
  rpc.set_code(status.error_code());
  return ErrorKindOf(FromRpcStatus(rpc)).http_status;
}

}  // namespace anyai::server
