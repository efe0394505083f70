// The gRPC front of the Admin service (SPEC §3): key management and usage look-ups, each call
// authorized by the admin token (`authorization: Bearer <admin token>`), never an API key.
// On the completion-queue API (async_calls.h), as the AnyAI service: each call is answered on a
// small worker pool (every method reads or writes storage), and an unknown method gets
// UNIMPLEMENTED from the same handler as on the public port.
//
// It used to be a synchronous service: with gRPC's epoll1 poller (Linux's default) the epoll set
// is global, and every thread waiting on a listening completion queue takes turns at the I/O of
// every server in the process, so the synchronous Admin server's two idle threads did a fifth of
// the public port's I/O and handed each call over. Now one polling thread waits on its queue.
//
//   AdminService admin(gateway);
//   admin.AddTo(builder);  // before BuildAndStart
//   admin.Start();         // after
//   ...server->Shutdown(); admin.Stop();
//
// Thread safety: thread-safe; calls are answered concurrently on the workers.
#ifndef ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
#define ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_

#include <grpcpp/generic/async_generic_service.h>

#include <memory>

#include "anyai/v1/admin.grpc.pb.h"
#include "server/gateway/gateway.h"
#include "server/grpc/async_calls.h"

namespace anyai::server {

class AdminService {
 public:
  explicit AdminService(Gateway& gateway);
  ~AdminService();  // Stop()s
  AdminService(const AdminService&) = delete;
  AdminService& operator=(const AdminService&) = delete;

  // Registers the service, the handler of unknown methods and the queues.
  void AddTo(grpc::ServerBuilder& builder);
  void Start();
  // After the server's Shutdown() returned.
  void Stop();

 private:
  struct Methods;

  Gateway& gateway_;
  v1::Admin::AsyncService service_;
  grpc::AsyncGenericService unknown_methods_;
  const std::unique_ptr<Methods> methods_;  // before queues_, which use them until Stop()
  CallQueues queues_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ADMIN_SERVICE_H_
