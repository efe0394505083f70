#include "server/grpc/anyai_service.h"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/gateway/client_address.h"
#include "server/gateway/client_presence.h"
#include "server/grpc/grpc_status.h"

namespace anyai::server {
namespace {

// One call's Caller: its authorization and x-forwarded-for metadata (a proxy in front passes
// the client's address; the Gateway believes it only from trusted_proxies) and its peer. The
// views point into the context and into `peer`.
// Who calls, from the call's metadata; and, for as long as it lives, whether that client is
// still there (client_presence.h): a blocked upstream then stops when the call is cancelled.
class GrpcCaller {
 public:
  explicit GrpcCaller(const grpc::ServerContextBase& context)
      : peer_(AddressOfGrpcPeer(context.peer())),
        presence_(
            [](const void* c) {
              return static_cast<const grpc::ServerContextBase*>(c)->IsCancelled();
            },
            &context) {
    const auto& metadata = context.client_metadata();
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      caller_.authorization = std::string_view(it->second.data(), it->second.size());
    }
    if (auto it = metadata.find("x-forwarded-for"); it != metadata.end()) {
      caller_.forwarded_for = std::string_view(it->second.data(), it->second.size());
    }
    caller_.peer = peer_;
    if (const auto deadline = context.deadline();
        deadline != std::chrono::system_clock::time_point::max()) {
      caller_.deadline = absl::FromChrono(deadline);
    }
  }
  GrpcCaller(const GrpcCaller&) = delete;
  GrpcCaller& operator=(const GrpcCaller&) = delete;

  const Caller& get() const { return caller_; }

 private:
  const std::string peer_;
  Caller caller_;
  ScopedClientProbe presence_;
};

// The status of a finished call, with its x-ratelimit-* metadata; the answer moved into
// `response`.
template <typename T, typename Response>
absl::Status Deliver(grpc::ServerContextBase& context, Outcome<T> outcome, Response* response) {
  const absl::Status status = outcome.result.status();
  AddRateLimitMetadata(context, outcome.rate_limit, status);
  if (status.ok()) {
    if constexpr (std::is_pointer_v<T>) {
      *response = **outcome.result;
    } else {
      *response = *std::move(outcome.result);
    }
  }
  return status;
}

// A stream's head: the x-ratelimit-* initial metadata, sent with the first chunk. A refused
// stream, never started, gets them as trailers with its status.
class StreamHead {
 public:
  explicit StreamHead(grpc::ServerContextBase& context) : context_(context) {}

  bool Start(const std::optional<RateLimitState>& rate_limit) {
    AddRateLimitMetadata(context_, rate_limit, absl::OkStatus());
    return started_ = true;
  }

  grpc::Status End(const StreamOutcome& outcome) {
    if (!started_) AddRateLimitMetadata(context_, outcome.rate_limit, outcome.status);
    return ToGrpcStatus(outcome.status);
  }

 private:
  grpc::ServerContextBase& context_;
  bool started_ = false;
};

// RESOURCE_EXHAUSTED when the call's metadata is over `limit` bytes (see the header).
absl::Status CheckMetadataSize(const grpc::ServerContextBase& context, int64_t limit) {
  constexpr int64_t kEntryOverhead = 32;  // RFC 7541 §4.1, as gRPC counts it
  int64_t size = 0;
  for (const auto& [name, value] : context.client_metadata()) {
    size += static_cast<int64_t>(name.size() + value.size()) + kEntryOverhead;
  }
  if (size <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the call's metadata is ", size, " bytes, over the limit of ", limit));
}

}  // namespace

grpc::Status AnyAIService::CreateChatCompletion(grpc::ServerContext* context,
                                                const v1::ChatCompletionRequest* request,
                                                v1::ChatCompletion* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  return ToGrpcStatus(Deliver(*context, gateway_.Chat(caller.get(), *request), response));
}

grpc::Status AnyAIService::StreamChatCompletion(
    grpc::ServerContext* context, const v1::ChatCompletionRequest* request,
    grpc::ServerWriter<v1::ChatCompletionChunk>* writer) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  StreamHead head(*context);
  return head.End(gateway_.StreamChat(
      caller.get(), *request, [&](const std::optional<RateLimitState>& r) { return head.Start(r); },
      [&](const v1::ChatCompletionChunk& chunk) { return writer->Write(chunk); }));
}

grpc::Status AnyAIService::ListModels(grpc::ServerContext* context, const v1::ListModelsRequest*,
                                      v1::ListModelsResponse* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  return ToGrpcStatus(Deliver(*context, gateway_.ListModels(caller.get()), response));
}

grpc::Status AnyAIService::GenerateImages(grpc::ServerContext* context,
                                          const v1::GenerateImagesRequest* request,
                                          v1::GenerateImagesResponse* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  Caller with_base = caller.get();
  const std::string base = BaseUrlOf(*context);
  with_base.public_base_url = base;
  return ToGrpcStatus(Deliver(*context, gateway_.GenerateImages(with_base, *request), response));
}

std::string AnyAIService::BaseUrlOf(const grpc::ServerContextBase& context) const {
  if (!public_base_url_.empty()) return public_base_url_;
  const grpc::string_ref authority = context.ExperimentalGetAuthority();
  return ImageBaseUrl(std::string_view(authority.data(), authority.size()), http_port_);
}

grpc::Status AnyAIService::Imagine(grpc::ServerContext* context, const v1::ImagineRequest* request,
                                   v1::ImagineResponse* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  return ToGrpcStatus(Deliver(*context, gateway_.Imagine(caller.get(), *request), response));
}

grpc::Status AnyAIService::Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                               grpc::ServerWriter<v1::AskChunk>* writer) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  StreamHead head(*context);
  return head.End(gateway_.Ask(
      caller.get(), *request, [&](const std::optional<RateLimitState>& r) { return head.Start(r); },
      [&](const v1::AskChunk& chunk) { return writer->Write(chunk); }));
}

grpc::Status AnyAIService::DescribeImage(grpc::ServerContext* context,
                                         const v1::DescribeImageRequest* request,
                                         v1::DescribeImageResponse* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  return ToGrpcStatus(Deliver(*context, gateway_.DescribeImage(caller.get(), *request), response));
}

grpc::Status AnyAIService::CheckKey(grpc::ServerContext* context,
                                    const v1::CheckKeyRequest* request,
                                    v1::CheckKeyResponse* response) {
  if (absl::Status s = CheckMetadataSize(*context, max_metadata_bytes_); !s.ok()) {
    return ToGrpcStatus(s);
  }
  GrpcCaller caller(*context);
  return ToGrpcStatus(Deliver(*context, gateway_.CheckKey(caller.get(), request->key()), response));
}

}  // namespace anyai::server
