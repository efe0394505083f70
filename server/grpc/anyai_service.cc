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
  // `answered_inline`: the call may run on a polling thread, whose context may have no kDone to
  // tell IsCancelled() from (and where IsCancelled would pluck the queue), so it is never asked.
  explicit GrpcCaller(const grpc::ServerContextBase& context, bool answered_inline = false)
      : peer_(AddressOfGrpcPeer(context.peer())),
        presence_(answered_inline ? +[](const void*) { return false; }
                                  : +[](const void* c) {
                                      return static_cast<const grpc::ServerContextBase*>(c)
                                          ->IsCancelled();
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

// The answer of one call, after the metadata check every method makes first.
template <typename Answer>
grpc::Status Checked(const grpc::ServerContextBase& context, int64_t max_metadata_bytes,
                     Answer answer) {
  if (absl::Status s = CheckMetadataSize(context, max_metadata_bytes); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return answer();
}

}  // namespace

// Each method's request, placement and answer, for as long as the service lives.
struct AnyAIService::Methods {
  using Service = v1::AnyAI::AsyncService;

  // `request`: the generated Service::RequestX (a member of one of Service's bases).
  // `on_worker`: UnaryMethod's.
  template <typename Request, typename Response, typename Requester>
  static UnaryMethod<Request, Response> Unary(
      AnyAIService& s, Requester request, std::function<bool(const Request&)> on_worker,
      grpc::Status (AnyAIService::*answer)(grpc::ServerContext&, const Request&, Response&)) {
    return {
        .request = [&s, request](grpc::ServerContext* c, Request* r,
                                 grpc::ServerAsyncResponseWriter<Response>* w,
                                 grpc::ServerCompletionQueue* cq,
                                 void* tag) { (s.service_.*request)(c, r, w, cq, cq, tag); },
        .on_worker = std::move(on_worker),
        .answer = [&s, answer](grpc::ServerContext& c, const Request& r,
                               Response& out) { return (s.*answer)(c, r, out); },
    };
  }

  template <typename Request, typename Chunk, typename Requester>
  static StreamMethod<Request, Chunk> Stream(
      AnyAIService& s, Requester request,
      grpc::Status (AnyAIService::*answer)(grpc::ServerContext&, const Request&,
                                           absl::FunctionRef<bool(const Chunk&)>)) {
    return {
        .request = [&s, request](grpc::ServerContext* c, Request* r,
                                 grpc::ServerAsyncWriter<Chunk>* w, grpc::ServerCompletionQueue* cq,
                                 void* tag) { (s.service_.*request)(c, r, w, cq, cq, tag); },
        .answer =
            [&s, answer](grpc::ServerContext& c, const Request& r,
                         absl::FunctionRef<bool(const Chunk&)> write) {
              return (s.*answer)(c, r, write);
            },
    };
  }

  // Every call of a method on a worker.
  template <typename Request>
  static std::function<bool(const Request&)> Always() {
    return [](const Request&) { return true; };
  }

  explicit Methods(AnyAIService& s)
      : chat(Unary<v1::ChatCompletionRequest, v1::ChatCompletion>(
            s, &Service::RequestCreateChatCompletion,
            [&gateway = s.gateway_](const v1::ChatCompletionRequest& r) {
              return !gateway.AnswersWithoutBlocking(Endpoint::kChatCompletions, r.model());
            },
            &AnyAIService::Chat)),
        stream_chat(Stream(s, &Service::RequestStreamChatCompletion, &AnyAIService::StreamChat)),
        list_models(Unary<v1::ListModelsRequest, v1::ListModelsResponse>(
            s, &Service::RequestListModels,
            s.gateway_.AnswersWithoutBlocking(Endpoint::kModels) ? nullptr
                                                                 : Always<v1::ListModelsRequest>(),
            &AnyAIService::ListModels)),
        generate_images(Unary(s, &Service::RequestGenerateImages,
                              Always<v1::GenerateImagesRequest>(), &AnyAIService::GenerateImages)),
        imagine(Unary(s, &Service::RequestImagine, Always<v1::ImagineRequest>(),
                      &AnyAIService::Imagine)),
        ask(Stream(s, &Service::RequestAsk, &AnyAIService::Ask)),
        describe_image(Unary(s, &Service::RequestDescribeImage, Always<v1::DescribeImageRequest>(),
                             &AnyAIService::DescribeImage)),
        // (CheckKey reads usage, and a key not cached yet, from storage: a worker's.)
        check_key(Unary(s, &Service::RequestCheckKey, Always<v1::CheckKeyRequest>(),
                        &AnyAIService::CheckKey)) {}

  // Posts each method's waiting requests on `queue`.
  void Arm(CallQueue& queue) const {
    queue.Fill<UnaryCall<v1::ChatCompletionRequest, v1::ChatCompletion>>(chat);
    queue.Fill<StreamCall<v1::ChatCompletionRequest, v1::ChatCompletionChunk>>(stream_chat);
    queue.Fill<UnaryCall<v1::ListModelsRequest, v1::ListModelsResponse>>(list_models);
    queue.Fill<UnaryCall<v1::GenerateImagesRequest, v1::GenerateImagesResponse>>(generate_images);
    queue.Fill<UnaryCall<v1::ImagineRequest, v1::ImagineResponse>>(imagine);
    queue.Fill<StreamCall<v1::AskRequest, v1::AskChunk>>(ask);
    queue.Fill<UnaryCall<v1::DescribeImageRequest, v1::DescribeImageResponse>>(describe_image);
    queue.Fill<UnaryCall<v1::CheckKeyRequest, v1::CheckKeyResponse>>(check_key);
  }

  const UnaryMethod<v1::ChatCompletionRequest, v1::ChatCompletion> chat;
  const StreamMethod<v1::ChatCompletionRequest, v1::ChatCompletionChunk> stream_chat;
  const UnaryMethod<v1::ListModelsRequest, v1::ListModelsResponse> list_models;
  const UnaryMethod<v1::GenerateImagesRequest, v1::GenerateImagesResponse> generate_images;
  const UnaryMethod<v1::ImagineRequest, v1::ImagineResponse> imagine;
  const StreamMethod<v1::AskRequest, v1::AskChunk> ask;
  const UnaryMethod<v1::DescribeImageRequest, v1::DescribeImageResponse> describe_image;
  const UnaryMethod<v1::CheckKeyRequest, v1::CheckKeyResponse> check_key;
};

AnyAIService::AnyAIService(Gateway& gateway, Options options)
    : gateway_(gateway),
      options_(std::move(options)),
      health_(options_.serving),
      reflection_({v1::AnyAI::service_full_name(), grpc::health::v1::Health::service_full_name(),
                   grpc::reflection::v1alpha::ServerReflection::service_full_name()}),
      methods_(std::make_unique<Methods>(*this)),
      queues_(options_.queues) {}

AnyAIService::~AnyAIService() = default;

void AnyAIService::AddTo(grpc::ServerBuilder& builder) {
  builder.RegisterService(&service_);
  builder.RegisterService(&health_);
  builder.RegisterService(&reflection_);
  builder.RegisterAsyncGenericService(&unknown_methods_);
  queues_.AddTo(builder);
}

void AnyAIService::Start() {
  queues_.Start([this](CallQueue& queue) {
    methods_->Arm(queue);
    health_.Arm(queue);
    reflection_.Arm(queue);
    queue.Fill<UnknownMethodCall>(unknown_methods_);
  });
}

void AnyAIService::BeginShutdown() {
  health_.Shutdown();
  reflection_.Shutdown();
}

void AnyAIService::Stop() { queues_.Stop(); }

grpc::Status AnyAIService::Chat(grpc::ServerContext& context,
                                const v1::ChatCompletionRequest& request,
                                v1::ChatCompletion& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    return ToGrpcStatus(Deliver(context, gateway_.Chat(caller.get(), request), &response));
  });
}

grpc::Status AnyAIService::StreamChat(
    grpc::ServerContext& context, const v1::ChatCompletionRequest& request,
    absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> write) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    StreamHead head(context);
    return head.End(gateway_.StreamChat(
        caller.get(), request,
        [&](const std::optional<RateLimitState>& r) { return head.Start(r); }, write));
  });
}

grpc::Status AnyAIService::ListModels(grpc::ServerContext& context, const v1::ListModelsRequest&,
                                      v1::ListModelsResponse& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context, /*answered_inline=*/true);
    return ToGrpcStatus(Deliver(context, gateway_.ListModels(caller.get()), &response));
  });
}

grpc::Status AnyAIService::GenerateImages(grpc::ServerContext& context,
                                          const v1::GenerateImagesRequest& request,
                                          v1::GenerateImagesResponse& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    Caller with_base = caller.get();
    const std::string base = BaseUrlOf(context);
    with_base.public_base_url = base;
    return ToGrpcStatus(Deliver(context, gateway_.GenerateImages(with_base, request), &response));
  });
}

std::string AnyAIService::BaseUrlOf(const grpc::ServerContextBase& context) const {
  if (!options_.public_base_url.empty()) return options_.public_base_url;
  const grpc::string_ref authority = context.ExperimentalGetAuthority();
  return ImageBaseUrl(std::string_view(authority.data(), authority.size()), options_.http_port);
}

grpc::Status AnyAIService::Imagine(grpc::ServerContext& context, const v1::ImagineRequest& request,
                                   v1::ImagineResponse& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    return ToGrpcStatus(Deliver(context, gateway_.Imagine(caller.get(), request), &response));
  });
}

grpc::Status AnyAIService::Ask(grpc::ServerContext& context, const v1::AskRequest& request,
                               absl::FunctionRef<bool(const v1::AskChunk&)> write) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    StreamHead head(context);
    return head.End(gateway_.Ask(
        caller.get(), request,
        [&](const std::optional<RateLimitState>& r) { return head.Start(r); }, write));
  });
}

grpc::Status AnyAIService::DescribeImage(grpc::ServerContext& context,
                                         const v1::DescribeImageRequest& request,
                                         v1::DescribeImageResponse& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    return ToGrpcStatus(Deliver(context, gateway_.DescribeImage(caller.get(), request), &response));
  });
}

grpc::Status AnyAIService::CheckKey(grpc::ServerContext& context,
                                    const v1::CheckKeyRequest& request,
                                    v1::CheckKeyResponse& response) {
  return Checked(context, options_.max_metadata_bytes, [&] {
    GrpcCaller caller(context);
    return ToGrpcStatus(
        Deliver(context, gateway_.CheckKey(caller.get(), request.key()), &response));
  });
}

}  // namespace anyai::server
