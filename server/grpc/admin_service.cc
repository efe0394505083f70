#include "server/grpc/admin_service.h"

#include <string>

#include "server/gateway/client_address.h"
#include "server/grpc/grpc_status.h"

namespace anyai::server {
namespace {

std::string_view Authorization(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return {};
  return std::string_view(it->second.data(), it->second.size());
}

// Authorizes, runs `call`, stores its result in `response`; the call's status.
template <typename Response, typename Call>
grpc::Status Serve(Gateway& gateway, grpc::ServerContext* context, Response* response, Call call) {
  absl::Status status =
      gateway.AuthorizeAdmin(Authorization(*context), AddressOfGrpcPeer(context->peer()));
  if (status.ok()) {
    absl::StatusOr<Response> result = call();
    status = result.status();
    if (result.ok()) *response = *std::move(result);
  }
  return ToGrpcStatus(status);
}

}  // namespace

grpc::Status AdminService::CreateKey(grpc::ServerContext* context,
                                     const v1::CreateKeyRequest* request,
                                     v1::CreateKeyResponse* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.CreateKey(*request); });
}

grpc::Status AdminService::GetKey(grpc::ServerContext* context, const v1::GetKeyRequest* request,
                                  v1::KeyRecord* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.GetKey(*request); });
}

grpc::Status AdminService::ListKeys(grpc::ServerContext* context,
                                    const v1::ListKeysRequest* request,
                                    v1::ListKeysResponse* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.ListKeys(*request); });
}

grpc::Status AdminService::UpdateKey(grpc::ServerContext* context,
                                     const v1::UpdateKeyRequest* request, v1::KeyRecord* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.UpdateKey(*request); });
}

grpc::Status AdminService::RevokeKey(grpc::ServerContext* context,
                                     const v1::RevokeKeyRequest* request, v1::KeyRecord* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.RevokeKey(*request); });
}

grpc::Status AdminService::GetUsage(grpc::ServerContext* context,
                                    const v1::GetUsageRequest* request,
                                    v1::GetUsageResponse* response) {
  return Serve(gateway_, context, response, [&] { return gateway_.GetUsage(*request); });
}

}  // namespace anyai::server
