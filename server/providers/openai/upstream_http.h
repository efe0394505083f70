// The HTTP client the openai provider talks to its upstream with: JSON POSTs over libcurl,
// answered whole (Post) or handed over piece by piece as the bytes arrive (PostStream).
//
//   absl::StatusOr<std::unique_ptr<UpstreamHttp>> http = UpstreamHttp::Create();
//   absl::StatusOr<UpstreamResponse> r = (*http)->Post({.url = ..., .body = json, ...});
//   if (!r.ok()) ...            // the exchange failed: see "Errors" below
//   else if (r->status != 200)  // the upstream answered, with an error of its own
//
// Errors (transport only; the HTTP status of an answer is the caller's to interpret):
//   DEADLINE_EXCEEDED  Post: no whole answer within `timeout`; PostStream: no byte for
//                      `timeout`; or no connection within `connect_timeout`.
//   UNAVAILABLE        could not resolve, connect, or complete TLS; the connection broke;
//                      the answer was larger than kMaxResponseBytes.
//   CANCELLED          PostStream: `on_data` returned false.
// Messages are libcurl's generic description of the failure: never the URL, the address or
// the headers (the bearer token is a secret).
//
// Connections are kept alive and reused across Post calls through a small pool of libcurl
// easy handles (each keeps its own connection cache). A PostStream has a connection of its
// own, closed when it returns: stopping a stream must reach the upstream as a closed socket.
// Redirects are not followed; only http and https are spoken. libcurl's proxy environment variables
// (https_proxy, no_proxy, ...) apply as usual.
//
// Thread-safe: one UpstreamHttp serves concurrent calls; each call has a handle of its own.
// PostStream calls `on_data` on the calling thread.
#ifndef ANYAI_SERVER_PROVIDERS_OPENAI_UPSTREAM_HTTP_H_
#define ANYAI_SERVER_PROVIDERS_OPENAI_UPSTREAM_HTTP_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::server {

struct UpstreamRequest {
  std::string url;
  std::string body;          // sent as Content-Type: application/json
  std::string bearer_token;  // sent as Authorization: Bearer when not empty
  // Post: the whole exchange. PostStream: the longest silence (no byte received).
  absl::Duration timeout = absl::Seconds(60);
  absl::Duration connect_timeout = absl::Seconds(10);
};

struct UpstreamResponse {
  int status = 0;            // the HTTP status code
  std::string content_type;  // as sent, or empty
  std::string retry_after;   // the Retry-After header, or empty
  // Post: the whole body. PostStream: the body only when `status` is not 2xx (the upstream's
  // error), at most kMaxErrorBodyBytes of it; a 2xx body went to `on_data`.
  std::string body;
};

class UpstreamHttp {
 public:
  // The largest body Post accepts (images as base64 are large).
  static constexpr size_t kMaxResponseBytes = size_t{64} << 20;
  // The most of an error body PostStream keeps.
  static constexpr size_t kMaxErrorBodyBytes = size_t{64} << 10;
  // Idle easy handles (and so kept-alive connections) the pool keeps.
  static constexpr size_t kMaxPooledHandles = 16;

  // INTERNAL when libcurl cannot be initialised.
  static absl::StatusOr<std::unique_ptr<UpstreamHttp>> Create();
  ~UpstreamHttp();

  UpstreamHttp(const UpstreamHttp&) = delete;
  UpstreamHttp& operator=(const UpstreamHttp&) = delete;

  // POSTs `request` and returns the answer whole, whatever its status.
  absl::StatusOr<UpstreamResponse> Post(const UpstreamRequest& request);

  // POSTs `request` and, when the answer's status is 2xx, passes its body to `on_data` as it
  // arrives, in order, as libcurl delivers it (no framing is assumed). When `on_data`
  // returns false the transfer stops at once, the connection is closed (so the upstream sees
  // the client go away) and the result is CANCELLED. Otherwise the result is the response,
  // once the upstream has ended the body.
  absl::StatusOr<UpstreamResponse> PostStream(const UpstreamRequest& request,
                                              absl::FunctionRef<bool(absl::string_view)> on_data);

 private:
  UpstreamHttp() = default;

  // A handle from the pool, or a new one; nullptr when libcurl is out of memory.
  void* AcquireHandle() ABSL_LOCKS_EXCLUDED(mu_);
  // Back to the pool (reset, its connections kept) or cleaned up when the pool is full or
  // `reusable` is false.
  void ReleaseHandle(void* handle, bool reusable) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL* easy handles
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_OPENAI_UPSTREAM_HTTP_H_
