// The gRPC front of the AnyAI service (SPEC §4): each method hands its call to the Gateway's
// entry for that endpoint (which authenticates, validates, admits, calls the provider and
// finishes) and turns the Outcome into the response, its status and x-ratelimit-* metadata.
// It runs on gRPC's completion-queue API (async_calls.h): ListModels and CheckKey, which never
// block, are answered on the queues' polling threads; the methods that call a provider, which
// may block for as long as its upstream takes (the openai provider: seconds), run on a fixed
// pool of worker threads, and a stream's writes block its worker until gRPC has taken each
// chunk, which matches the providers' `emit` contract (a chunk leaves as soon as the provider
// yields it; a vanished client stops the provider).
//
//   AnyAIService service(gateway, {...});
//   service.AddTo(builder);                 // registers the service and its queues
//   server = builder.BuildAndStart();
//   service.Start();
//   ...
//   server->Shutdown(deadline);  server->Wait();  service.Stop();
//
// The port's gRPC health service (health_service.h) and server reflection
// (reflection_service.h) run on the same queues, and so do calls of unknown methods
// (UNIMPLEMENTED): the port has no synchronous method, so gRPC runs no synchronous server (and
// none of its threads) for it.
//
// Thread safety: AddTo, Start, BeginShutdown and Stop are called by one owner thread, in that
// order; the calls run concurrently on gRPC's and the service's threads.
#ifndef ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_
#define ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_

#include <grpcpp/generic/async_generic_service.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "anyai/v1/anyai.grpc.pb.h"
#include "server/gateway/gateway.h"
#include "server/grpc/async_calls.h"
#include "server/grpc/health_service.h"
#include "server/grpc/reflection_service.h"

namespace anyai::server {

class AnyAIService final {
 public:
  struct Options {
    // ServerConfig.public_base_url: prefixes the URLs of generated images; when empty they
    // point at `http_port` on the host the client called (its :authority).
    std::string public_base_url;
    int http_port = 0;
    // A call whose metadata is over this (names and values, 32 bytes of overhead each as HPACK
    // counts them) is refused with RESOURCE_EXHAUSTED.
    int64_t max_metadata_bytes = 16 << 10;
    CallQueues::Options queues;
    // Whether the port serves, for its health service (health_service.h).
    std::function<bool()> serving;
  };

  AnyAIService(Gateway& gateway, Options options);
  ~AnyAIService();
  AnyAIService(const AnyAIService&) = delete;
  AnyAIService& operator=(const AnyAIService&) = delete;

  // Registers the service, the port's health and reflection services, the handler of unknown
  // methods, and the queues.
  void AddTo(grpc::ServerBuilder& builder);
  void Start();
  // The server begins to stop: health Watch and reflection streams end.
  void BeginShutdown();
  // After the server's Shutdown() and Wait() returned.
  void Stop();

 private:
  struct Methods;

  grpc::Status Chat(grpc::ServerContext& context, const v1::ChatCompletionRequest& request,
                    v1::ChatCompletion& response);
  grpc::Status StreamChat(grpc::ServerContext& context, const v1::ChatCompletionRequest& request,
                          absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> write);
  grpc::Status ListModels(grpc::ServerContext& context, const v1::ListModelsRequest& request,
                          v1::ListModelsResponse& response);
  grpc::Status GenerateImages(grpc::ServerContext& context,
                              const v1::GenerateImagesRequest& request,
                              v1::GenerateImagesResponse& response);
  grpc::Status Imagine(grpc::ServerContext& context, const v1::ImagineRequest& request,
                       v1::ImagineResponse& response);
  grpc::Status Ask(grpc::ServerContext& context, const v1::AskRequest& request,
                   absl::FunctionRef<bool(const v1::AskChunk&)> write);
  grpc::Status DescribeImage(grpc::ServerContext& context, const v1::DescribeImageRequest& request,
                             v1::DescribeImageResponse& response);
  grpc::Status CheckKey(grpc::ServerContext& context, const v1::CheckKeyRequest& request,
                        v1::CheckKeyResponse& response);

  // Where the caller reaches the HTTP front, for image URLs.
  std::string BaseUrlOf(const grpc::ServerContextBase& context) const;

  Gateway& gateway_;
  const Options options_;
  v1::AnyAI::AsyncService service_;
  HealthService health_;
  ReflectionService reflection_;
  // Every method no service of the server has (async_calls.h's UnknownMethodCall).
  grpc::AsyncGenericService unknown_methods_;
  // Declared before the queues, so that it outlives them: ~CallQueues waits for the last call.
  std::unique_ptr<Methods> methods_;
  CallQueues queues_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ANYAI_SERVICE_H_
