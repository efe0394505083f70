#include "server/grpc/async_calls.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace anyai::server {

// A fixed set of threads taking work in order from one queue. (Boost.Asio's thread_pool would
// do, but Boost belongs to the HTTP front.)
struct CallQueues::Workers {
  explicit Workers(int threads) {
    for (int i = 0; i < std::max(threads, 1); ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }

  void Post(std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    work_.push_back(std::move(work));
    wake_.Signal();  // one thread; a Condition would have every waiter evaluated on unlock
  }

  // Runs what was posted, then ends the threads.
  void Join() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (joined_) return;
      joined_ = true;
      wake_.SignalAll();
    }
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_) {
    for (;;) {
      std::function<void()> work;
      {
        absl::MutexLock lock(&mu_);
        while (work_.empty() && !joined_) wake_.Wait(&mu_);
        if (work_.empty()) return;
        work = std::move(work_.front());
        work_.pop_front();
      }
      work();
    }
  }

  absl::Mutex mu_;
  absl::CondVar wake_;
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(mu_);
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

AsyncCall::AsyncCall(CallQueue& queue) : queue_(queue) {
  queue_.owner().live_calls_.fetch_add(1, std::memory_order_relaxed);
}

AsyncCall::~AsyncCall() { queue_.owner().live_calls_.fetch_sub(1, std::memory_order_release); }

void AsyncCall::Dispatch(void* tag, bool ok) {
  const auto bits = reinterpret_cast<uintptr_t>(tag);
  constexpr uintptr_t kEventBits = 3;
  static_assert(alignof(AsyncCall) > kEventBits);
  reinterpret_cast<AsyncCall*>(bits & ~kEventBits)
      ->OnEvent(static_cast<Event>(bits & kEventBits), ok);
}

CallQueues::CallQueues(Options options)
    : options_(options), workers_(std::make_unique<Workers>(options.worker_threads)) {}

CallQueues::~CallQueues() {
  if (started_) Stop();
  workers_->Join();
}

void CallQueues::AddTo(grpc::ServerBuilder& builder) {
  for (int i = 0; i < options_.queues; ++i) {
    cqs_.push_back(builder.AddCompletionQueue());
    queues_.push_back(std::make_unique<CallQueue>(*this, cqs_.back().get()));
  }
}

void CallQueues::Start(const std::function<void(CallQueue&)>& arm) {
  started_ = true;
  for (const std::unique_ptr<CallQueue>& queue : queues_) arm(*queue);
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& cq : cqs_) {
    pollers_.emplace_back([cq = cq.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) AsyncCall::Dispatch(tag, ok);
    });
  }
}

void CallQueues::Post(std::function<void()> work) { workers_->Post(std::move(work)); }

void CallQueues::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true, std::memory_order_release);
  // The server has shut down: every waiting request fails at once and every started call has
  // been finished or cancelled, so this ends as soon as the workers' answers are in (a worker
  // finishes a cancelled call when its provider sees the client gone).
  while (live_calls_.load(std::memory_order_acquire) > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  workers_->Join();
  for (const std::unique_ptr<grpc::ServerCompletionQueue>& cq : cqs_) cq->Shutdown();
  // Each poller returns once its queue is shut down and drained.
  for (std::thread& poller : pollers_) poller.join();
}

}  // namespace anyai::server
