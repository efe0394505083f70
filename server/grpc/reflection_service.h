// gRPC's server reflection (grpc.reflection.v1alpha.ServerReflection, what grpcurl and
// grpc_cli ask) for the public gRPC port, on the completion queues (async_calls.h) instead of
// gRPC's ProtoServerReflectionPlugin: that plugin is a synchronous service, and a synchronous
// method on the server keeps gRPC's synchronous server and its idle threads, which take a
// share of the polling of every call on the port (issue 13).
//
// It answers as gRPC's own implementation does, from the descriptors linked into the process
// (google::protobuf::DescriptorPool::generated_pool()): list_services with the names the owner
// gives (the services the port serves, this one included); file_by_filename,
// file_containing_symbol and file_containing_extension with the file and its transitive
// dependencies as serialized FileDescriptorProtos; all_extension_numbers_of_type; NOT_FOUND
// (in an error_response, the stream going on) for what the pool does not have, UNIMPLEMENTED
// for a request with none of these set.
//
// Each stream is one call object driven by its queue's polling thread: Read, answer, Write,
// Read again. One read or one write is outstanding at a time and the answer is built on the
// polling thread (lookups in the pool, never blocking), so a stream holds no thread while it
// waits for its client and at most one request and one response in memory; a stream that
// ends (half-closed or reset) is finished OK. Shutdown() cancels every open stream (and any that
// starts later), so an idle grpcurl or IDE session does not hold the server's graceful stop for
// its whole grace period.
//
//   ReflectionService reflection({"anyai.v1.AnyAI", "grpc.health.v1.Health",
//                                 ServerReflection::service_full_name()});
//   builder.RegisterService(&reflection);       // before BuildAndStart
//   queues.Start([&](CallQueue& q) { reflection.Arm(q); ... });
//
// Thread safety: thread-safe; the calls run on the queues' polling threads and share only
// immutable state and the set of open streams (under a mutex, for Shutdown).
#ifndef ANYAI_SERVER_GRPC_REFLECTION_SERVICE_H_
#define ANYAI_SERVER_GRPC_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/grpc/async_calls.h"

namespace anyai::server {

class ReflectionService final : public grpc::reflection::v1alpha::ServerReflection::AsyncService {
 public:
  // `services`: the full names list_services answers, in that order.
  explicit ReflectionService(std::vector<std::string> services);
  ~ReflectionService() override;

  // Posts the waiting requests of ServerReflectionInfo on `queue`.
  void Arm(CallQueue& queue);

  // Cancels every open stream, and every stream that starts from now on (the server is
  // stopping). Their clients see CANCELLED.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // The answer to one request of a stream (valid_host and original_request set).
  grpc::reflection::v1alpha::ServerReflectionResponse Answer(
      const grpc::reflection::v1alpha::ServerReflectionRequest& request) const;

 private:
  class InfoCall;

  // Called by a stream once it started, and when it is destroyed; false from Open: the server is
  // stopping, so the stream cancels itself.
  bool Open(InfoCall* call) ABSL_LOCKS_EXCLUDED(mu_);
  void Close(InfoCall* call) ABSL_LOCKS_EXCLUDED(mu_);

  const std::vector<std::string> services_;
  absl::Mutex mu_;
  absl::flat_hash_set<InfoCall*> open_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_REFLECTION_SERVICE_H_
