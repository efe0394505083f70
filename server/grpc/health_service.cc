#include "server/grpc/health_service.h"

#include <optional>
#include <string>
#include <utility>

#include "anyai/v1/anyai.grpc.pb.h"

namespace anyai::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::function<bool()> serving)
    : serving_(std::move(serving)),
      check_(std::make_unique<UnaryMethod<HealthCheckRequest, HealthCheckResponse>>(
          UnaryMethod<HealthCheckRequest, HealthCheckResponse>{
              .request = [this](grpc::ServerContext* c, HealthCheckRequest* r,
                                grpc::ServerAsyncResponseWriter<HealthCheckResponse>* w,
                                grpc::ServerCompletionQueue* cq,
                                void* tag) { RequestCheck(c, r, w, cq, cq, tag); },
              .on_worker = nullptr,  // answered on the polling thread
              .answer = [this](grpc::ServerContext& c, const HealthCheckRequest& r,
                               HealthCheckResponse& out) { return Answer(c, r, out); },
          })) {}

HealthService::~HealthService() = default;

void HealthService::Arm(CallQueue& queue) {
  queue.Fill<UnaryCall<HealthCheckRequest, HealthCheckResponse>>(*check_);
}

std::optional<HealthCheckResponse::ServingStatus> HealthService::StatusOf(
    const std::string& service) const {
  if (!service.empty() && service != v1::AnyAI::service_full_name()) return std::nullopt;
  return serving_() ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Answer(grpc::ServerContext&, const HealthCheckRequest& request,
                                   HealthCheckResponse& response) {
  const std::optional<HealthCheckResponse::ServingStatus> status = StatusOf(request.service());
  if (!status) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
  response.set_status(*status);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context, const HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  std::optional<HealthCheckResponse::ServingStatus> sent;
  while (!context->IsCancelled() && !shutting_down_.HasBeenNotified()) {
    const HealthCheckResponse::ServingStatus now =
        StatusOf(request->service()).value_or(HealthCheckResponse::SERVICE_UNKNOWN);
    if (sent != now) {
      HealthCheckResponse response;
      response.set_status(now);
      if (!writer->Write(response)) break;
      sent = now;
    }
    shutting_down_.WaitForNotificationWithTimeout(absl::Seconds(1));
  }
  return grpc::Status::OK;
}

void HealthService::Shutdown() {
  if (!shutting_down_.HasBeenNotified()) shutting_down_.Notify();
}

}  // namespace anyai::server
