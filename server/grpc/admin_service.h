// The gRPC front of the Admin service (SPEC §3): key management and usage look-ups, each call
// authorized by the admin token (`authorization: Bearer <admin token>`), never an API key.
// On the synchronous API, as every method of the gRPC front: gRPC 1.51's callback API queues
// the work of streams a client resets without bound (HTTP/2 rapid reset, CVE-2023-44487), the
// synchronous server's is bounded (tests/e2e/rapid_reset_test.py).
//
// Thread safety: thread-safe; gRPC calls the methods concurrently.
#ifndef ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
#define ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_

#include "anyai/v1/admin.grpc.pb.h"
#include "server/gateway/gateway.h"

namespace anyai::server {

class AdminService final : public v1::Admin::Service {
 public:
  explicit AdminService(Gateway& gateway) : gateway_(gateway) {}

  grpc::Status CreateKey(grpc::ServerContext* context, const v1::CreateKeyRequest* request,
                         v1::CreateKeyResponse* response) override;
  grpc::Status GetKey(grpc::ServerContext* context, const v1::GetKeyRequest* request,
                      v1::KeyRecord* response) override;
  grpc::Status ListKeys(grpc::ServerContext* context, const v1::ListKeysRequest* request,
                        v1::ListKeysResponse* response) override;
  grpc::Status UpdateKey(grpc::ServerContext* context, const v1::UpdateKeyRequest* request,
                         v1::KeyRecord* response) override;
  grpc::Status RevokeKey(grpc::ServerContext* context, const v1::RevokeKeyRequest* request,
                         v1::KeyRecord* response) override;
  grpc::Status GetUsage(grpc::ServerContext* context, const v1::GetUsageRequest* request,
                        v1::GetUsageResponse* response) override;

 private:
  Gateway& gateway_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
