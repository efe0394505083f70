// A scripted, local stand-in for an OpenAI-compatible API, for testing the openai provider
// against real HTTP/1.1 over a real socket: it listens on 127.0.0.1 on a free port, answers
// each request with the next response a test queued, and records every request it got.
//
//   auto upstream = FakeUpstream::Start();
//   upstream->Enqueue(FakeUpstream::Json(200, R"({"choices": [...]})"));
//   ... point the provider at upstream->base_url() ("http://127.0.0.1:PORT/v1") ...
//   EXPECT_EQ(upstream->requests()[0].target, "/v1/chat/completions");
//
// A response is sent whole (Content-Length) or, when it has steps, with chunked transfer
// encoding, one HTTP chunk per step; before a step it can sleep, or wait for a test's
// notification (e.g. until the client has seen the previous chunk). While it waits it watches
// the socket, so it notices at once when the client closes the connection (disconnects()).
// A `hang` response reads the request and never answers. Connections are kept alive between
// responses, as a real upstream's are. An unscripted request gets 500.
//
// Thread-safe: the server runs on threads of its own (one per connection); every method may
// be called from any thread. The destructor closes every connection and joins the threads.
#ifndef ANYAI_TESTS_SERVER_PROVIDERS_OPENAI_FAKE_UPSTREAM_H_
#define ANYAI_TESTS_SERVER_PROVIDERS_OPENAI_FAKE_UPSTREAM_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace anyai::testing {

class FakeUpstream {
 public:
  struct Request {
    std::string method;
    std::string target;                                        // e.g. "/v1/chat/completions"
    std::vector<std::pair<std::string, std::string>> headers;  // names lower case
    std::string body;

    // The first header called `name` (lower case), or "".
    std::string Header(absl::string_view name) const;
  };

  struct Step {
    absl::Duration delay = absl::ZeroDuration();  // slept before sending `data`
    // Waited for (at most kMaxStepWait) before sending `data`; not owned.
    absl::Notification* wait_for = nullptr;
    std::string data;  // one HTTP chunk; nothing is sent when empty
  };

  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;          // sent with Content-Length when `steps` is empty
    std::vector<Step> steps;   // when set: chunked, one chunk per step, then the last chunk
    bool hang = false;         // read the request, then never answer
    bool close_after = false;  // close the connection after answering (no keep-alive)
  };

  // The longest a step waits for its notification before it goes on anyway (and counts in
  // wait_timeouts()).
  static constexpr absl::Duration kMaxStepWait = absl::Seconds(10);

  // A JSON response.
  static Response Json(int status, std::string body);
  // An SSE response: each event one `data: <event>\n\n` chunk, then `data: [DONE]`.
  static Response Sse(const std::vector<std::string>& events);

  // Listens on 127.0.0.1:0. Aborts the test binary when it cannot.
  static std::unique_ptr<FakeUpstream> Start();
  ~FakeUpstream();

  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:PORT/v1"
  std::string base_url() const;

  // The response to the next request that arrives (first queued, first served).
  void Enqueue(Response response) ABSL_LOCKS_EXCLUDED(mu_);

  // Every request received so far, in order of arrival.
  std::vector<Request> requests() const ABSL_LOCKS_EXCLUDED(mu_);
  // Connections accepted so far.
  int connections() const ABSL_LOCKS_EXCLUDED(mu_);
  // Clients that closed their connection while a response was waiting or hanging.
  int disconnects() const ABSL_LOCKS_EXCLUDED(mu_);
  // Steps whose notification did not come within kMaxStepWait.
  int wait_timeouts() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until disconnects() >= n; false on timeout.
  bool WaitForDisconnects(int n, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  FakeUpstream(int listen_fd, int port);

  void AcceptLoop();
  void Serve(int fd);
  // Reads one request from `fd` (with `buffer` holding bytes already read); false when the
  // connection ended or the server stops.
  bool ReadRequest(int fd, std::string& buffer, Request& request);
  bool Answer(int fd, const Response& response);
  // Waits `delay` or for `notification`, watching `fd`; false when the client went away.
  bool Wait(int fd, absl::Duration delay, absl::Notification* notification);
  void CountDisconnect() ABSL_LOCKS_EXCLUDED(mu_);

  const int listen_fd_;
  const int port_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  std::deque<Response> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  int disconnects_ ABSL_GUARDED_BY(mu_) = 0;
  int wait_timeouts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace anyai::testing

#endif  // ANYAI_TESTS_SERVER_PROVIDERS_OPENAI_FAKE_UPSTREAM_H_
