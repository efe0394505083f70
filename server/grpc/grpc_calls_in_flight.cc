#include "server/grpc/grpc_calls_in_flight.h"

namespace anyai::server {

// gRPC creates one per call when it starts and deletes it with the call.
class CountingInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit CountingInterceptor(GrpcCallsInFlight& calls) : calls_(calls) { calls_.Add(1); }
  ~CountingInterceptor() override { calls_.Add(-1); }
  CountingInterceptor(const CountingInterceptor&) = delete;
  CountingInterceptor& operator=(const CountingInterceptor&) = delete;

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  GrpcCallsInFlight& calls_;
};

namespace {

class CountingInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(GrpcCallsInFlight& calls) : calls_(calls) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new CountingInterceptor(calls_);
  }

 private:
  GrpcCallsInFlight& calls_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcCallsInFlight::Interceptor() {
  return std::make_unique<CountingInterceptorFactory>(*this);
}

int64_t GrpcCallsInFlight::count() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool GrpcCallsInFlight::AwaitNone(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
}

void GrpcCallsInFlight::Add(int64_t delta) {
  absl::MutexLock lock(&mu_);
  in_flight_ += delta;
}

}  // namespace anyai::server
