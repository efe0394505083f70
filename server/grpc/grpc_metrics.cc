#include "server/grpc/grpc_metrics.h"

#include <chrono>
#include <string_view>

#include "google/rpc/status.pb.h"
#include "server/gateway/error_kind.h"
#include "server/gateway/errors.h"

namespace anyai::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The endpoint of a gRPC method path ("/anyai.v1.AnyAI/CreateChatCompletion").
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

// The HTTP status the request metrics count a finished call under, from the same table as the
// HTTP front's answers. Only an UNAVAILABLE call's details are read: they tell a failed upstream
// (502) from the gateway's storage (503).
int HttpStatusOf(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return ErrorKindOf(absl::Status(static_cast<absl::StatusCode>(status.error_code()), "x"))
        .http_status;
  }
  google::rpc::Status rpc;
  rpc.set_code(status.error_code());
  if (!status.error_details().empty()) rpc.ParseFromString(status.error_details());
  return ErrorKindOf(FromRpcStatus(rpc)).http_status;
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics& metrics, Endpoint endpoint)
      : metrics_(metrics), endpoint_(endpoint), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_.ObserveRequest(endpoint_, Transport::kGrpc, HttpStatusOf(status),
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
    return new MetricsInterceptor(metrics_, EndpointOfGrpcMethod(info->method()));
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
