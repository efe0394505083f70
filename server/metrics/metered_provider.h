// A Provider that counts and times every call of the provider it wraps (SPEC §7: upstream
// requests and latency by provider), so that no provider needs to know about metrics.
//
// Thread safety: as thread-safe as the wrapped provider (all of ours are).
#ifndef ANYAI_SERVER_METRICS_METERED_PROVIDER_H_
#define ANYAI_SERVER_METRICS_METERED_PROVIDER_H_

#include <string>

#include "server/gateway/provider.h"
#include "server/metrics/metrics.h"

namespace anyai::server {

class MeteredProvider final : public Provider {
 public:
  // Both borrowed; they must outlive this object.
  MeteredProvider(std::string name, Provider& inner, Metrics& metrics)
      : name_(std::move(name)), inner_(inner), metrics_(metrics) {}

  bool ChatsWithoutBlocking() const override { return inner_.ChatsWithoutBlocking(); }
  absl::StatusOr<v1::ChatCompletion> Chat(const v1::ChatCompletionRequest& request) override;
  absl::Status StreamChat(const v1::ChatCompletionRequest& request,
                          absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) override;
  absl::StatusOr<v1::GenerateImagesResponse> GenerateImages(
      const v1::GenerateImagesRequest& request) override;
  absl::StatusOr<v1::ImagineResponse> Imagine(const v1::ImagineRequest& request) override;
  absl::Status Ask(const v1::AskRequest& request,
                   absl::FunctionRef<bool(const v1::AskChunk&)> emit) override;
  absl::StatusOr<v1::DescribeImageResponse> DescribeImage(
      const v1::DescribeImageRequest& request) override;

 private:
  template <typename Call>
  auto Timed(Call call);

  const std::string name_;
  Provider& inner_;
  Metrics& metrics_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_METRICS_METERED_PROVIDER_H_
