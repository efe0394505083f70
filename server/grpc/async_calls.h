// The completion-queue machinery of the gRPC front: calls on gRPC's asynchronous API, answered
// inline on a queue's polling thread (calls that never block) or on a fixed pool of worker
// threads (calls that may wait for an upstream provider), with no thread created per call.
//
// Why not the synchronous or callback API (issues 12 and 13): gRPC 1.51 queues every call it
// has no waiting request for, without bound. The synchronous server has one waiting request per
// method and hands each call to a thread of a pool that grows and shrinks under load; the
// callback server queues reset streams' work. Under HTTP/2 rapid reset (CVE-2023-44487) both
// grew the process by hundreds of MB. Here every method keeps `calls_waiting` requests posted
// on every queue, a call that arrives finds one at once, and a reset call costs one event.
//
//   CallQueues queues({.queues = 2, .calls_waiting = 64, .worker_threads = 16});
//   queues.AddTo(builder);  builder.RegisterService(&async_service);
//   server = builder.BuildAndStart();
//   queues.Start([&](CallQueue& q) {
//     q.Fill<UnaryCall<Req, Resp>>(kMethod);  // kMethod: a UnaryMethod<Req, Resp>, see below
//   });
//   ...
//   server->Shutdown(deadline);  server->Wait();  queues.Stop();
//
// A call's events are tagged with the call's address and the event in the low two bits; each
// queue has one polling thread, so one call's events are handled one at a time, in order.
//
// Thread safety: CallQueues' public methods are called by one owner thread (AddTo, Start, Stop
// in that order); the calls themselves run on the polling and worker threads.
#ifndef ANYAI_SERVER_GRPC_ASYNC_CALLS_H_
#define ANYAI_SERVER_GRPC_ASYNC_CALLS_H_

#include <google/protobuf/arena.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace anyai::server {

class CallQueues;

// One completion queue, its polling thread's view of the calls on it.
class CallQueue {
 public:
  CallQueue(CallQueues& owner, grpc::ServerCompletionQueue* cq) : owner_(owner), cq_(cq) {}

  grpc::ServerCompletionQueue* cq() const { return cq_; }
  CallQueues& owner() const { return owner_; }

  // Posts one waiting request of `Call` (constructed with `method` and this queue), unless the
  // queues are stopping. Called once per waiting request at start, then by each call for its
  // successor when it starts.
  template <typename Call, typename Method>
  void Arm(Method& method);
  // At start: posts the method's `calls_waiting` waiting requests.
  template <typename Call, typename Method>
  void Fill(Method& method);

 private:
  CallQueues& owner_;
  grpc::ServerCompletionQueue* const cq_;
};

// A call in progress or waiting to start. Deleted by itself once gRPC has no event left for it.
class AsyncCall {
 public:
  enum class Event : uintptr_t { kStarted = 0, kWritten = 1, kFinished = 2, kDone = 3 };

  explicit AsyncCall(CallQueue& queue);
  virtual ~AsyncCall();
  AsyncCall(const AsyncCall&) = delete;
  AsyncCall& operator=(const AsyncCall&) = delete;

  // `ok` is gRPC's: false for kStarted when the server is shutting down, for kWritten when the
  // client has gone.
  virtual void OnEvent(Event event, bool ok) = 0;

  // The tag gRPC delivers `event` with; Dispatch() undoes it.
  void* Tag(Event event) {
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) |
                                   static_cast<uintptr_t>(event));
  }
  static void Dispatch(void* tag, bool ok);

 protected:
  // A call that asked for kDone (AsyncNotifyWhenDone) says so here, before it is requested.
  void AwaitDone() { awaiting_done_ = true; }
  // kFinished or kDone: the call deletes itself once its Finish is done and its kDone, if it
  // asked for one, is in. (Only the polling thread calls this.)
  void Ended(Event event) {
    if (event == Event::kFinished) finished_ = true;
    if (event == Event::kDone) awaiting_done_ = false;
    if (finished_ && !awaiting_done_) delete this;
  }

  CallQueue& queue_;

 private:
  bool finished_ = false;
  bool awaiting_done_ = false;
};

// A unary method: how to request its calls from the generated AsyncService, where to answer
// them, and the answer itself (the status; the response is sent only with OK).
template <typename Request, typename Response>
struct UnaryMethod {
  std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                     grpc::ServerCompletionQueue*, void*)>
      request;
  // Whether a call goes to a worker, by its request; null: every call is answered on the
  // polling thread (it must never block). With a predicate, every call also asks gRPC for its
  // end (kDone), so that one answered on a worker can see a client that has gone.
  std::function<bool(const Request&)> on_worker;
  std::function<grpc::Status(grpc::ServerContext&, const Request&, Response&)> answer;
};

// A server-streaming method; always answered on a worker, whose `write` blocks until gRPC has
// taken the chunk (false: the client has gone).
template <typename Request, typename Chunk>
struct StreamMethod {
  std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncWriter<Chunk>*,
                     grpc::ServerCompletionQueue*, void*)>
      request;
  std::function<grpc::Status(grpc::ServerContext&, const Request&,
                             absl::FunctionRef<bool(const Chunk&)> write)>
      answer;
};

class CallQueues {
 public:
  struct Options {
    // Completion queues, each with one polling thread.
    int queues = 2;
    // Requests kept posted per method and queue.
    int calls_waiting = 64;
    // Threads for the calls that may block (providers, streams).
    int worker_threads = 16;
  };

  explicit CallQueues(Options options);
  ~CallQueues();  // Stop()s if Start()ed and not stopped (the server must be shut down first)
  CallQueues(const CallQueues&) = delete;
  CallQueues& operator=(const CallQueues&) = delete;

  // Before the server is built: adds the completion queues to `builder`.
  void AddTo(grpc::ServerBuilder& builder);
  // After it started: `arm` posts each method's waiting requests on each queue (Fill, above),
  // then the polling threads start.
  void Start(const std::function<void(CallQueue&)>& arm);
  // After the server's Shutdown() returned (every call cancelled or finished): posts no more
  // requests, waits until every call is gone, then stops the workers and the queues.
  void Stop();

  int calls_waiting() const { return options_.calls_waiting; }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  // Runs `work` on a worker thread.
  void Post(std::function<void()> work);

 private:
  friend class AsyncCall;
  struct Workers;

  const Options options_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs_;
  std::vector<std::unique_ptr<CallQueue>> queues_;
  std::vector<std::thread> pollers_;
  std::unique_ptr<Workers> workers_;
  std::atomic<bool> stopping_{false};
  // Call objects alive (waiting, in progress, or awaiting gRPC's last event).
  std::atomic<int64_t> live_calls_{0};
  bool started_ = false;
  bool stopped_ = false;
};

template <typename Call, typename Method>
void CallQueue::Arm(Method& method) {
  if (owner_.stopping()) return;
  new Call(method, *this);
}

template <typename Call, typename Method>
void CallQueue::Fill(Method& method) {
  for (int i = 0; i < owner_.calls_waiting(); ++i) Arm<Call>(method);
}

// A call's request, on a protobuf arena whose first block lies in the call object itself: parsing
// it takes memory from that block rather than from malloc, and it all goes at once with the call.
// (protobuf 3.21 hands the inline block to the thread that made the arena: the queue's polling
// thread, which arms each next call and parses its request. A request that outgrows the block,
// or an allocation from another thread, gets more from the arena.) The response stays on the
// heap: the Gateway builds it there, and moving it into the call is then a swap, not a copy,
// which for an image is the whole PNG. Each waiting call holds its block: kInlineBytes times
// the calls posted (calls_waiting per method and queue), 4 MB on 2 queues.
//
// Thread safety: the arena is thread-safe; a call's messages are touched by one thread at a time.
class CallArena {
 public:
  static constexpr size_t kInlineBytes = 2048;

  CallArena() : arena_(Options(block_)) {}
  CallArena(const CallArena&) = delete;
  CallArena& operator=(const CallArena&) = delete;

  // A new message owned by the arena (never deleted on its own).
  template <typename Message>
  Message& Make() {
    return *google::protobuf::Arena::CreateMessage<Message>(&arena_);
  }

 private:
  static google::protobuf::ArenaOptions Options(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kInlineBytes;
    return options;
  }

  alignas(std::max_align_t) char block_[kInlineBytes];
  google::protobuf::Arena arena_;
};

// One call of a unary method. When it may go to a worker it also asks gRPC for the call's end
// (kDone), so that the answer can see a client that has gone (ServerContext::IsCancelled).
template <typename Request, typename Response>
class UnaryCall final : public AsyncCall {
 public:
  UnaryCall(const UnaryMethod<Request, Response>& method, CallQueue& queue)
      : AsyncCall(queue), method_(method), responder_(&context_) {
    if (method_.on_worker != nullptr) {
      context_.AsyncNotifyWhenDone(Tag(Event::kDone));
      AwaitDone();
    }
    method_.request(&context_, &request_, &responder_, queue_.cq(), Tag(Event::kStarted));
  }

  void OnEvent(Event event, bool ok) override {
    switch (event) {
      case Event::kStarted:
        if (!ok) {  // never started: gRPC sends no kDone either
          delete this;
          return;
        }
        queue_.Arm<UnaryCall>(method_);
        if (method_.on_worker != nullptr && method_.on_worker(request_)) {
          queue_.owner().Post([this] { Answer(); });
        } else {
          Answer();
        }
        return;
      case Event::kFinished:
      case Event::kDone:
        Ended(event);
        return;
      case Event::kWritten:
        return;
    }
  }

 private:
  // The last touch of `this` by the answering thread is Finish's: its kFinished may be handled
  // (and the call deleted) before Finish returns.
  void Answer() {
    const grpc::Status status = method_.answer(context_, request_, response_);
    responder_.Finish(response_, status, Tag(Event::kFinished));
  }

  const UnaryMethod<Request, Response>& method_;
  grpc::ServerContext context_;
  CallArena arena_;
  Request& request_ = arena_.Make<Request>();
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
};

// One call of a server-streaming method, answered on a worker that waits for each write.
template <typename Request, typename Chunk>
class StreamCall final : public AsyncCall {
 public:
  StreamCall(const StreamMethod<Request, Chunk>& method, CallQueue& queue)
      : AsyncCall(queue), method_(method), writer_(&context_) {
    context_.AsyncNotifyWhenDone(Tag(Event::kDone));
    AwaitDone();
    method_.request(&context_, &request_, &writer_, queue_.cq(), Tag(Event::kStarted));
  }

  void OnEvent(Event event, bool ok) override {
    switch (event) {
      case Event::kStarted:
        if (!ok) {
          delete this;
          return;
        }
        queue_.Arm<StreamCall>(method_);
        queue_.owner().Post([this] { Answer(); });
        return;
      case Event::kWritten: {
        absl::MutexLock lock(&mu_);
        written_ = true;
        write_ok_ = ok;
        return;
      }
      case Event::kFinished:
      case Event::kDone:
        Ended(event);
        return;
    }
  }

 private:
  void Answer() {
    const grpc::Status status =
        method_.answer(context_, request_, [this](const Chunk& chunk) { return Write(chunk); });
    writer_.Finish(status, Tag(Event::kFinished));
  }

  bool Write(const Chunk& chunk) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      written_ = false;
    }
    writer_.Write(chunk, Tag(Event::kWritten));
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&written_));
    return write_ok_;
  }

  const StreamMethod<Request, Chunk>& method_;
  grpc::ServerContext context_;
  CallArena arena_;
  Request& request_ = arena_.Make<Request>();
  grpc::ServerAsyncWriter<Chunk> writer_;
  absl::Mutex mu_;
  bool written_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = false;
};

// A call of a method no service has, answered UNIMPLEMENTED on the polling thread once its
// first message is in. Without this (an AsyncGenericService registered on the builder), gRPC
// answers them on the synchronous server's one thread for unknown methods and queues them
// without bound. And it reads first because gRPC 1.51 hands over a call of an unknown method
// as soon as its headers are in, even when the client has already reset it: answering that
// call queues a response the client never reads (rapid reset on an unknown method grew the
// process by 600 MB in 5 s). A call whose read fails (reset, or closed without a message) is
// dropped unanswered, which to a client still there is a cancelled call.
class UnknownMethodCall final : public AsyncCall {
 public:
  UnknownMethodCall(grpc::AsyncGenericService& service, CallQueue& queue)
      : AsyncCall(queue), service_(service), stream_(&context_) {
    service_.RequestCall(&context_, &stream_, queue_.cq(), queue_.cq(), Tag(Event::kStarted));
  }

  void OnEvent(Event event, bool ok) override {
    if (event == Event::kStarted && ok) {
      queue_.Arm<UnknownMethodCall>(service_);
      stream_.Read(&message_, Tag(Event::kWritten));  // (the one other event this call has)
      return;
    }
    if (event == Event::kWritten && ok) {
      stream_.Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no such method"),
                     Tag(Event::kFinished));
      return;
    }
    delete this;  // never started, finished, or gone before its first message
  }

 private:
  grpc::AsyncGenericService& service_;
  grpc::GenericServerContext context_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer message_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_ASYNC_CALLS_H_
