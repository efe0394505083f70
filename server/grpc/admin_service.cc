#include "server/grpc/admin_service.h"

#include <string>
#include <string_view>

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

// The Admin methods: gateway.*call authorized, its result in `response`; the call's status.
template <typename Request, typename Response>
using AdminCall = absl::StatusOr<Response> (Gateway::*)(const Request&);

}  // namespace

struct AdminService::Methods {
  using Service = v1::Admin::AsyncService;

  // `request`: the generated Service::RequestX; every call on a worker (it reads storage).
  template <typename Request, typename Response, typename Requester>
  static UnaryMethod<Request, Response> Method(AdminService& s, Requester request,
                                               AdminCall<Request, Response> call) {
    return {
        .request = [&s, request](grpc::ServerContext* c, Request* r,
                                 grpc::ServerAsyncResponseWriter<Response>* w,
                                 grpc::ServerCompletionQueue* cq,
                                 void* tag) { (s.service_.*request)(c, r, w, cq, cq, tag); },
        .on_worker = [](const Request&) { return true; },
        .answer =
            [&gateway = s.gateway_, call](grpc::ServerContext& context, const Request& r,
                                          Response& response) {
              absl::Status status =
                  gateway.AuthorizeAdmin(Authorization(context), AddressOfGrpcPeer(context.peer()));
              if (status.ok()) {
                absl::StatusOr<Response> result = (gateway.*call)(r);
                status = result.status();
                if (result.ok()) response = *std::move(result);
              }
              return ToGrpcStatus(status);
            },
    };
  }

  explicit Methods(AdminService& s)
      : create_key(Method(s, &Service::RequestCreateKey, &Gateway::CreateKey)),
        get_key(Method(s, &Service::RequestGetKey, &Gateway::GetKey)),
        list_keys(Method(s, &Service::RequestListKeys, &Gateway::ListKeys)),
        update_key(Method(s, &Service::RequestUpdateKey, &Gateway::UpdateKey)),
        revoke_key(Method(s, &Service::RequestRevokeKey, &Gateway::RevokeKey)),
        get_usage(Method(s, &Service::RequestGetUsage, &Gateway::GetUsage)) {}

  void Arm(CallQueue& queue) const {
    queue.Fill<UnaryCall<v1::CreateKeyRequest, v1::CreateKeyResponse>>(create_key);
    queue.Fill<UnaryCall<v1::GetKeyRequest, v1::KeyRecord>>(get_key);
    queue.Fill<UnaryCall<v1::ListKeysRequest, v1::ListKeysResponse>>(list_keys);
    queue.Fill<UnaryCall<v1::UpdateKeyRequest, v1::KeyRecord>>(update_key);
    queue.Fill<UnaryCall<v1::RevokeKeyRequest, v1::KeyRecord>>(revoke_key);
    queue.Fill<UnaryCall<v1::GetUsageRequest, v1::GetUsageResponse>>(get_usage);
  }

  const UnaryMethod<v1::CreateKeyRequest, v1::CreateKeyResponse> create_key;
  const UnaryMethod<v1::GetKeyRequest, v1::KeyRecord> get_key;
  const UnaryMethod<v1::ListKeysRequest, v1::ListKeysResponse> list_keys;
  const UnaryMethod<v1::UpdateKeyRequest, v1::KeyRecord> update_key;
  const UnaryMethod<v1::RevokeKeyRequest, v1::KeyRecord> revoke_key;
  const UnaryMethod<v1::GetUsageRequest, v1::GetUsageResponse> get_usage;
};

AdminService::AdminService(Gateway& gateway)
    : gateway_(gateway),
      methods_(std::make_unique<Methods>(*this)),
      queues_({.queues = 1, .calls_waiting = 8, .worker_threads = 4}) {}

AdminService::~AdminService() = default;

void AdminService::AddTo(grpc::ServerBuilder& builder) {
  builder.RegisterService(&service_);
  builder.RegisterAsyncGenericService(&unknown_methods_);
  queues_.AddTo(builder);
}

void AdminService::Start() {
  queues_.Start([this](CallQueue& queue) {
    methods_->Arm(queue);
    queue.Fill<UnknownMethodCall>(unknown_methods_);
  });
}

void AdminService::Stop() { queues_.Stop(); }

}  // namespace anyai::server
