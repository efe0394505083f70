// The gRPC front of the AnyAI service (SPEC §4): each method hands its call to the Gateway's
// entry for that endpoint (which authenticates, validates, admits, calls the provider and
// finishes) and turns the Outcome into the response, its status and x-ratelimit-* metadata.
// Every method uses the synchronous API: a provider may block for as long as its upstream takes
// (the openai provider: seconds), which the sync API's thread pool is made for and the callback
// API's few threads are not; for the two streams its blocking ServerWriter::Write matches the
// providers' `emit` contract exactly (a chunk leaves as soon as the provider yields it; a
// vanished client stops the provider). ListModels and CheckKey, which never block, were on the
// callback API until gRPC 1.51's callback server proved to queue the work of reset streams
// without bound: HTTP/2 rapid reset (CVE-2023-44487) on ListModels took the process from 32 MB
// to 570 MB in 5 s, against +32 MB on a sync method (tests/e2e/rapid_reset_test.py).
//
// Thread safety: thread-safe; gRPC calls the methods concurrently.
#ifndef ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_
#define ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_

#include <cstdint>
#include <string>
#include <utility>

#include "anyai/v1/anyai.grpc.pb.h"
#include "server/gateway/gateway.h"

namespace anyai::server {

class AnyAIService final : public v1::AnyAI::Service {
 public:
  // `public_base_url` (ServerConfig.public_base_url) prefixes the URLs of generated images;
  // when empty they point at `http_port` on the host the client called (its :authority). A
  // call whose metadata is over `max_metadata_bytes` (names and values, 32 bytes of overhead
  // each as HPACK counts them) is refused with RESOURCE_EXHAUSTED.
  AnyAIService(Gateway& gateway, std::string public_base_url, int http_port,
               int64_t max_metadata_bytes)
      : gateway_(gateway),
        public_base_url_(std::move(public_base_url)),
        http_port_(http_port),
        max_metadata_bytes_(max_metadata_bytes) {}

  grpc::Status CreateChatCompletion(grpc::ServerContext* context,
                                    const v1::ChatCompletionRequest* request,
                                    v1::ChatCompletion* response) override;
  grpc::Status StreamChatCompletion(grpc::ServerContext* context,
                                    const v1::ChatCompletionRequest* request,
                                    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GenerateImages(grpc::ServerContext* context,
                              const v1::GenerateImagesRequest* request,
                              v1::GenerateImagesResponse* response) override;
  grpc::Status Imagine(grpc::ServerContext* context, const v1::ImagineRequest* request,
                       v1::ImagineResponse* response) override;
  grpc::Status Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                   grpc::ServerWriter<v1::AskChunk>* writer) override;
  grpc::Status DescribeImage(grpc::ServerContext* context, const v1::DescribeImageRequest* request,
                             v1::DescribeImageResponse* response) override;
  grpc::Status CheckKey(grpc::ServerContext* context, const v1::CheckKeyRequest* request,
                        v1::CheckKeyResponse* response) override;

 private:
  // Where the caller reaches the HTTP front, for image URLs.
  std::string BaseUrlOf(const grpc::ServerContextBase& context) const;

  Gateway& gateway_;
  const std::string public_base_url_;
  const int http_port_;
  const int64_t max_metadata_bytes_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_
