#include "server/grpc/health_service.h"

#include <grpcpp/alarm.h>

#include <chrono>
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

// One Watch call. Its events: kStarted, kWritten (the write or the alarm outstanding, never
// both), kDone (the call ended: the client went, or after Finish) and kFinished.
class HealthService::WatchCall final : public AsyncCall {
 public:
  WatchCall(HealthService& service, CallQueue& queue)
      : AsyncCall(queue), service_(service), writer_(&context_) {
    context_.AsyncNotifyWhenDone(Tag(Event::kDone));
    AwaitDone();
    service_.RequestWatch(&context_, &request_, &writer_, queue_.cq(), queue_.cq(),
                          Tag(Event::kStarted));
  }

  ~WatchCall() override {
    absl::MutexLock lock(&service_.mu_);
    service_.watches_.erase(this);
  }

  void OnEvent(Event event, bool ok) override {
    switch (event) {
      case Event::kStarted:
        if (!ok) {  // never started: gRPC sends no kDone either
          delete this;
          return;
        }
        queue_.Arm<WatchCall>(service_);
        {
          absl::MutexLock lock(&service_.mu_);
          service_.watches_.insert(this);
        }
        Step();
        return;
      case Event::kWritten:
        if (writing_ && !ok) gone_ = true;
        writing_ = false;
        waiting_ = false;
        Step();
        return;
      case Event::kDone:
        gone_ = true;
        if (waiting_) {
          absl::MutexLock lock(&service_.mu_);
          alarm_.Cancel();  // its event comes at once, and Step finishes the call
        }
        Ended(event);
        return;
      case Event::kFinished:
        Ended(event);
        return;
    }
  }

 private:
  friend class HealthService;  // Shutdown cancels `alarm_`

  // After the start, a write or an alarm: the end, a write of a changed status, or the wait
  // for the next look.
  void Step() {
    if (!gone_) {
      const HealthCheckResponse::ServingStatus now =
          service_.StatusOf(request_.service()).value_or(HealthCheckResponse::SERVICE_UNKNOWN);
      absl::MutexLock lock(&service_.mu_);
      if (!service_.shutting_down_) {
        if (sent_ != now) {
          response_.set_status(now);
          sent_ = now;
          writing_ = true;
          writer_.Write(response_, Tag(Event::kWritten));
        } else {
          waiting_ = true;
          alarm_.Set(queue_.cq(), std::chrono::system_clock::now() + kLookEvery,
                     Tag(Event::kWritten));
        }
        return;
      }
    }
    writer_.Finish(grpc::Status::OK, Tag(Event::kFinished));
  }

  static constexpr std::chrono::seconds kLookEvery{1};

  HealthService& service_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  HealthCheckResponse response_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_;
  grpc::Alarm alarm_;
  std::optional<HealthCheckResponse::ServingStatus> sent_;
  bool writing_ = false;  // a write outstanding
  bool waiting_ = false;  // the alarm set
  bool gone_ = false;     // the client went (or its write failed)
};

void HealthService::Arm(CallQueue& queue) {
  queue.Fill<UnaryCall<HealthCheckRequest, HealthCheckResponse>>(*check_);
  queue.Fill<WatchCall>(*this);
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

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  // An alarm not set, or already fired, ignores its Cancel; a set one fires now, not ok.
  for (WatchCall* watch : watches_) watch->alarm_.Cancel();
}

}  // namespace anyai::server
