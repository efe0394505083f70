#include "server/grpc/anyai_service.h"

#include <string>

#include "server/grpc/grpc_status.h"

namespace anyai::server {
namespace {

// Finishes a unary call with the mapped status; x-ratelimit-* whenever the call was metered
// (`decision` set: admitted, whatever the provider then answered), and on a 429.
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& status,
                                 const quota::Decision* decision) {
  if (decision != nullptr) AddRateLimitMetadata(*context, *decision);
  if (!status.ok()) AddRateLimitTrailers(*context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Ends a synchronous unary call the same way.
grpc::Status Finish(grpc::ServerContext* context, const absl::Status& status,
                    const quota::Decision* decision) {
  if (decision != nullptr) AddRateLimitMetadata(*context, *decision);
  if (!status.ok()) AddRateLimitTrailers(*context, status);
  return ToGrpcStatus(status);
}

template <typename Response>
absl::Status Assign(absl::StatusOr<Response> result, Response* out) {
  if (!result.ok()) return result.status();
  *out = *std::move(result);
  return absl::OkStatus();
}

}  // namespace

Caller CallerOf(const grpc::ServerContextBase& context, const std::string& peer) {
  // What a present but blank authorization becomes: not "Bearer <key>", so the Gateway
  // refuses it (UNAUTHENTICATED) instead of treating the caller as anonymous (SPEC §3).
  constexpr std::string_view kBlankAuthorization = " ";
  Caller caller;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    caller.authorization = it->second.empty()
                               ? kBlankAuthorization
                               : std::string_view(it->second.data(), it->second.size());
  }
  // A proxy in front (deploy/nginx) passes the client's address; the Gateway believes it
  // only from trusted_proxies.
  if (auto it = metadata.find("x-forwarded-for"); it != metadata.end()) {
    caller.forwarded_for = std::string_view(it->second.data(), it->second.size());
  }
  caller.peer = peer;
  return caller;
}

grpc::Status AnyAIService::CreateChatCompletion(grpc::ServerContext* context,
                                                const v1::ChatCompletionRequest* request,
                                                v1::ChatCompletion* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  absl::StatusOr<Admitted> admitted = gateway_.AdmitChat(CallerOf(*context, peer), *request);
  if (!admitted.ok()) return Finish(context, admitted.status(), nullptr);
  return Finish(context, Assign(admitted->provider->Chat(*request), response), &admitted->decision);
}

grpc::Status AnyAIService::StreamChatCompletion(
    grpc::ServerContext* context, const v1::ChatCompletionRequest* request,
    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  absl::StatusOr<Admitted> admitted = gateway_.AdmitChat(CallerOf(*context, peer), *request);
  if (!admitted.ok()) {
    AddRateLimitTrailers(*context, admitted.status());
    return ToGrpcStatus(admitted.status());
  }
  AddRateLimitMetadata(*context, admitted->decision);
  return ToGrpcStatus(admitted->provider->StreamChat(
      *request, [&](const v1::ChatCompletionChunk& chunk) { return writer->Write(chunk); }));
}

grpc::ServerUnaryReactor* AnyAIService::ListModels(grpc::CallbackServerContext* context,
                                                   const v1::ListModelsRequest*,
                                                   v1::ListModelsResponse* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  absl::StatusOr<Admitted> admitted = gateway_.AdmitMeta(CallerOf(*context, peer));
  if (!admitted.ok()) return Finish(context, admitted.status(), nullptr);
  *response = gateway_.ListModels();
  return Finish(context, absl::OkStatus(), &admitted->decision);
}

grpc::Status AnyAIService::GenerateImages(grpc::ServerContext* context,
                                          const v1::GenerateImagesRequest* request,
                                          v1::GenerateImagesResponse* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  v1::GenerateImagesRequest filled = *request;
  absl::StatusOr<Admitted> admitted = gateway_.AdmitImages(CallerOf(*context, peer), filled);
  if (!admitted.ok()) return Finish(context, admitted.status(), nullptr);
  return Finish(context, Assign(admitted->provider->GenerateImages(filled), response),
                &admitted->decision);
}

grpc::Status AnyAIService::Imagine(grpc::ServerContext* context,
                                   const v1::ImagineRequest* request,
                                   v1::ImagineResponse* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  v1::ImagineRequest filled = *request;
  absl::StatusOr<Admitted> admitted = gateway_.AdmitImagine(CallerOf(*context, peer), filled);
  if (!admitted.ok()) return Finish(context, admitted.status(), nullptr);
  return Finish(context, Assign(admitted->provider->Imagine(filled), response),
                &admitted->decision);
}

grpc::Status AnyAIService::Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                               grpc::ServerWriter<v1::AskChunk>* writer) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  absl::StatusOr<Admitted> admitted = gateway_.AdmitAsk(CallerOf(*context, peer), *request);
  if (!admitted.ok()) {
    AddRateLimitTrailers(*context, admitted.status());
    return ToGrpcStatus(admitted.status());
  }
  AddRateLimitMetadata(*context, admitted->decision);
  return ToGrpcStatus(admitted->provider->Ask(
      *request, [&](const v1::AskChunk& chunk) { return writer->Write(chunk); }));
}

grpc::Status AnyAIService::DescribeImage(grpc::ServerContext* context,
                                         const v1::DescribeImageRequest* request,
                                         v1::DescribeImageResponse* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  v1::DescribeImageRequest filled = *request;
  absl::StatusOr<Admitted> admitted = gateway_.AdmitVision(CallerOf(*context, peer), filled);
  if (!admitted.ok()) return Finish(context, admitted.status(), nullptr);
  return Finish(context, Assign(admitted->provider->DescribeImage(filled), response),
                &admitted->decision);
}

grpc::ServerUnaryReactor* AnyAIService::CheckKey(grpc::CallbackServerContext* context,
                                                 const v1::CheckKeyRequest* request,
                                                 v1::CheckKeyResponse* response) {
  const std::string peer = AddressOfGrpcPeer(context->peer());
  quota::Decision decision;
  absl::StatusOr<v1::CheckKeyResponse> result =
      gateway_.CheckKey(CallerOf(*context, peer), request->key(), &decision);
  return Finish(context, Assign(std::move(result), response), &decision);
}

}  // namespace anyai::server
