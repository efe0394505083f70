#include "server/grpc/reflection_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"

namespace anyai::server {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::FileDescriptorProto;
using ::grpc::reflection::v1alpha::ErrorResponse;
using ::grpc::reflection::v1alpha::ExtensionNumberResponse;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;

// `file` and, once each, every file it imports, transitively (gRPC's order: the file first,
// then each dependency depth first).
void AddFileAndDependencies(const FileDescriptor* file, absl::flat_hash_set<const void*>& seen,
                            ServerReflectionResponse& response) {
  if (!seen.insert(file).second) return;
  FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(response.mutable_file_descriptor_response()->add_file_descriptor_proto());
  for (int i = 0; i < file->dependency_count(); ++i) {
    AddFileAndDependencies(file->dependency(i), seen, response);
  }
}

// The file's descriptors, or NOT_FOUND saying what was not found (the messages are gRPC's).
grpc::Status FileResponse(const FileDescriptor* file, const char* not_found,
                          ServerReflectionResponse& response) {
  if (file == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, not_found);
  absl::flat_hash_set<const void*> seen;
  AddFileAndDependencies(file, seen, response);
  return grpc::Status::OK;
}

}  // namespace

// One ServerReflectionInfo stream. Its events: kStarted, kWritten (the read or the write
// outstanding, never both: `reading_` tells which) and kFinished; it asks for no kDone, as a
// client that goes fails the outstanding read or write.
class ReflectionService::InfoCall final : public AsyncCall {
 public:
  InfoCall(ReflectionService& service, CallQueue& queue)
      : AsyncCall(queue), service_(service), stream_(&context_) {
    service_.RequestServerReflectionInfo(&context_, &stream_, queue_.cq(), queue_.cq(),
                                         Tag(Event::kStarted));
  }
  ~InfoCall() override { service_.Close(this); }

  void Cancel() { context_.TryCancel(); }

  void OnEvent(Event event, bool ok) override {
    switch (event) {
      case Event::kStarted:
        if (!ok) {  // never started (the server is stopping)
          delete this;
          return;
        }
        queue_.Arm<InfoCall>(service_);
        if (!service_.Open(this)) context_.TryCancel();
        Read();  // after a cancel, it fails at once and the stream finishes
        return;
      case Event::kWritten:
        if (!ok) {  // the client half-closed, reset or went
          stream_.Finish(grpc::Status::OK, Tag(Event::kFinished));
        } else if (reading_) {
          reading_ = false;
          response_ = service_.Answer(request_);
          stream_.Write(response_, Tag(Event::kWritten));
        } else {
          Read();
        }
        return;
      case Event::kFinished:
      case Event::kDone:
        Ended(event);
        return;
    }
  }

 private:
  void Read() {
    reading_ = true;
    stream_.Read(&request_, Tag(Event::kWritten));
  }

  ReflectionService& service_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<ServerReflectionResponse, ServerReflectionRequest> stream_;
  ServerReflectionRequest request_;
  ServerReflectionResponse response_;
  bool reading_ = false;
};

ReflectionService::ReflectionService(std::vector<std::string> services)
    : services_(std::move(services)) {}

ReflectionService::~ReflectionService() = default;

void ReflectionService::Arm(CallQueue& queue) { queue.Fill<InfoCall>(*this); }

bool ReflectionService::Open(InfoCall* call) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  open_.insert(call);
  return true;
}

void ReflectionService::Close(InfoCall* call) {
  absl::MutexLock lock(&mu_);
  open_.erase(call);
}

void ReflectionService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  // Under the lock, so no stream is destroyed meanwhile; a cancelled stream finishes on its
  // polling thread, whose Close() waits for this loop to end.
  for (InfoCall* call : open_) call->Cancel();
}

ServerReflectionResponse ReflectionService::Answer(const ServerReflectionRequest& request) const {
  const DescriptorPool& pool = *DescriptorPool::generated_pool();
  ServerReflectionResponse response;
  grpc::Status status;
  switch (request.message_request_case()) {
    case ServerReflectionRequest::kFileByFilename:
      status = FileResponse(pool.FindFileByName(request.file_by_filename()), "File not found.",
                            response);
      break;
    case ServerReflectionRequest::kFileContainingSymbol:
      status = FileResponse(pool.FindFileContainingSymbol(request.file_containing_symbol()),
                            "Symbol not found.", response);
      break;
    case ServerReflectionRequest::kFileContainingExtension: {
      const Descriptor* type =
          pool.FindMessageTypeByName(request.file_containing_extension().containing_type());
      if (type == nullptr) {
        status = grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
        break;
      }
      const FieldDescriptor* extension =
          pool.FindExtensionByNumber(type, request.file_containing_extension().extension_number());
      status = FileResponse(extension == nullptr ? nullptr : extension->file(),
                            "Extension not found.", response);
      break;
    }
    case ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const Descriptor* type = pool.FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        status = grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
        break;
      }
      std::vector<const FieldDescriptor*> extensions;
      pool.FindAllExtensions(type, &extensions);
      ExtensionNumberResponse& numbers = *response.mutable_all_extension_numbers_response();
      numbers.set_base_type_name(request.all_extension_numbers_of_type());
      for (const FieldDescriptor* extension : extensions) {
        numbers.add_extension_number(extension->number());
      }
      break;
    }
    case ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        response.mutable_list_services_response()->add_service()->set_name(name);
      }
      break;
    case ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
      break;
  }
  if (!status.ok()) {
    // gRPC's answer to an error: only the error in the oneof (what was filled is dropped).
    ErrorResponse& error = *response.mutable_error_response();
    error.set_error_code(status.error_code());
    error.set_error_message(status.error_message());
  }
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  return response;
}

}  // namespace anyai::server
