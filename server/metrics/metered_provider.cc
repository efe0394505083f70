#include "server/metrics/metered_provider.h"

#include <chrono>

namespace anyai::server {
namespace {

bool Succeeded(const absl::Status& s) {
  // A client that went away is not the upstream's failure.
  return s.ok() || s.code() == absl::StatusCode::kCancelled;
}
template <typename T>
bool Succeeded(const absl::StatusOr<T>& s) {
  return Succeeded(s.status());
}

}  // namespace

template <typename Call>
auto MeteredProvider::Timed(Call call) {
  const auto start = std::chrono::steady_clock::now();
  auto result = call();
  metrics_.ObserveUpstream(name_, Succeeded(result),
                           absl::FromChrono(std::chrono::steady_clock::now() - start));
  return result;
}

absl::StatusOr<v1::ChatCompletion> MeteredProvider::Chat(const v1::ChatCompletionRequest& request) {
  return Timed([&] { return inner_.Chat(request); });
}

absl::Status MeteredProvider::StreamChat(
    const v1::ChatCompletionRequest& request,
    absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) {
  return Timed([&] { return inner_.StreamChat(request, emit); });
}

absl::StatusOr<v1::GenerateImagesResponse> MeteredProvider::GenerateImages(
    const v1::GenerateImagesRequest& request) {
  return Timed([&] { return inner_.GenerateImages(request); });
}

absl::StatusOr<v1::ImagineResponse> MeteredProvider::Imagine(const v1::ImagineRequest& request) {
  return Timed([&] { return inner_.Imagine(request); });
}

absl::Status MeteredProvider::Ask(const v1::AskRequest& request,
                                  absl::FunctionRef<bool(const v1::AskChunk&)> emit) {
  return Timed([&] { return inner_.Ask(request, emit); });
}

absl::StatusOr<v1::DescribeImageResponse> MeteredProvider::DescribeImage(
    const v1::DescribeImageRequest& request) {
  return Timed([&] { return inner_.DescribeImage(request); });
}

}  // namespace anyai::server
