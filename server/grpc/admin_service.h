// The gRPC front of the Admin service (SPEC §3): key management and usage look-ups, each call
// authorized by the admin token (`authorization: Bearer <admin token>`), never an API key.
//
// Thread safety: thread-safe; gRPC calls the methods concurrently.
#ifndef ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
#define ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_

#include "anyai/v1/admin.grpc.pb.h"
#include "server/gateway/gateway.h"

namespace anyai::server {

class AdminService final : public v1::Admin::CallbackService {
 public:
  explicit AdminService(Gateway& gateway) : gateway_(gateway) {}

  grpc::ServerUnaryReactor* CreateKey(grpc::CallbackServerContext* context,
                                      const v1::CreateKeyRequest* request,
                                      v1::CreateKeyResponse* response) override;
  grpc::ServerUnaryReactor* GetKey(grpc::CallbackServerContext* context,
                                   const v1::GetKeyRequest* request,
                                   v1::KeyRecord* response) override;
  grpc::ServerUnaryReactor* ListKeys(grpc::CallbackServerContext* context,
                                     const v1::ListKeysRequest* request,
                                     v1::ListKeysResponse* response) override;
  grpc::ServerUnaryReactor* UpdateKey(grpc::CallbackServerContext* context,
                                      const v1::UpdateKeyRequest* request,
                                      v1::KeyRecord* response) override;
  grpc::ServerUnaryReactor* RevokeKey(grpc::CallbackServerContext* context,
                                      const v1::RevokeKeyRequest* request,
                                      v1::KeyRecord* response) override;
  grpc::ServerUnaryReactor* GetUsage(grpc::CallbackServerContext* context,
                                     const v1::GetUsageRequest* request,
                                     v1::GetUsageResponse* response) override;

 private:
  Gateway& gateway_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
