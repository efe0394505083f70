#include "server/providers/openai/upstream_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/gateway/client_presence.h"

namespace anyai::server {
namespace {

using SteadyClock = std::chrono::steady_clock;

absl::once_flag curl_init_once;
CURLcode curl_init_result = CURLE_OK;

// What one transfer's callbacks share with the code that runs it. Lives on the caller's stack
// for the duration of the transfer; libcurl calls back on the calling thread only.
struct Transfer {
  CURL* easy = nullptr;
  UpstreamResponse response;
  // Post: the whole body is kept, up to kMaxResponseBytes.
  bool too_large = false;
  // PostStream: where a 2xx body goes, and whether it asked to stop.
  absl::FunctionRef<bool(absl::string_view)>* on_data = nullptr;
  bool stopped_by_receiver = false;
  bool client_gone = false;  // the progress callback saw the client leave
  SteadyClock::time_point last_byte = SteadyClock::now();
};

// Owns the request headers of one transfer.
struct HeaderList {
  curl_slist* list = nullptr;
  ~HeaderList() { curl_slist_free_all(list); }
  bool Add(const std::string& header) {
    curl_slist* next = curl_slist_append(list, header.c_str());
    if (next == nullptr) return false;
    list = next;
    return true;
  }
};

long Millis(absl::Duration d) {
  return static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

size_t OnHeader(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->last_byte = SteadyClock::now();
  const absl::string_view line(buffer, size * count);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a 100 Continue, say): forget the previous one's headers.
    t->response.retry_after.clear();
  } else if (absl::StartsWithIgnoreCase(line, "retry-after:")) {
    t->response.retry_after =
        std::string(absl::StripAsciiWhitespace(line.substr(sizeof("retry-after:") - 1)));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->response.body.size() + n > UpstreamHttp::kMaxResponseBytes) {
    t->too_large = true;
    return 0;  // CURLE_WRITE_ERROR
  }
  t->response.body.append(data, n);
  return n;
}

size_t OnStreamBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  t->last_byte = SteadyClock::now();
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    if (!(*t->on_data)(absl::string_view(data, n))) {
      t->stopped_by_receiver = true;
      return 0;  // CURLE_WRITE_ERROR: libcurl drops the transfer and closes its connection
    }
    return n;
  }
  // An error body: keep its beginning for the message, read (and drop) the rest.
  const size_t room = UpstreamHttp::kMaxErrorBodyBytes -
                      std::min(UpstreamHttp::kMaxErrorBodyBytes, t->response.body.size());
  t->response.body.append(data, std::min(n, room));
  return n;
}

// Options every transfer shares. False when libcurl refused one (out of memory).
bool Configure(CURL* easy, const UpstreamRequest& request, HeaderList& headers, bool stream) {
  const bool headers_ok =
      headers.Add("Content-Type: application/json") &&
      headers.Add(stream ? "Accept: text/event-stream" : "Accept: application/json") &&
      // No "Expect: 100-continue" round trip before large bodies.
      headers.Add("Expect:") &&
      (request.bearer_token.empty() ||
       headers.Add(absl::StrCat("Authorization: Bearer ", request.bearer_token)));
  if (!headers_ok) return false;
  bool ok = true;
  auto set = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  set(curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str()));
  set(curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(easy, CURLOPT_USERAGENT, "anyai-gateway"));
  set(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.list));
  set(curl_easy_setopt(easy, CURLOPT_POST, 1L));
  set(curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data()));
  set(curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size())));
  set(curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                       Millis(std::min(request.connect_timeout, request.timeout))));
  set(curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &OnHeader));
  set(curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, stream ? &OnStreamBody : &OnBody));
  if (!stream) {
    set(curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, Millis(request.timeout)));
    // Whole answers may come compressed; a stream is left alone, so that no decoder holds
    // back its pieces.
    set(curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""));
  }
  return ok;
}

// How often a silent stream asks whether its client is still there (client_presence.h).
constexpr int64_t kPresencePollMs = 250;

// libcurl's progress callback for a whole-body transfer: about once a second while it waits, a
// client that left aborts it (CURLE_ABORTED_BY_CALLBACK).
int OnProgress(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  if (!ClientGone()) return 0;
  static_cast<Transfer*>(data)->client_gone = true;
  return 1;
}

absl::Status TransportError(CURLcode code, const Transfer& t, absl::Duration timeout, bool stream) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(
          stream ? absl::StrCat("no data for ", absl::FormatDuration(timeout))
                 : absl::StrCat("no complete answer within ", absl::FormatDuration(timeout)));
    case CURLE_ABORTED_BY_CALLBACK:
      if (t.client_gone) return absl::CancelledError("the client went away");
      break;
    case CURLE_WRITE_ERROR:
      if (t.stopped_by_receiver) return absl::CancelledError("the receiver stopped the transfer");
      if (t.too_large) {
        return absl::UnavailableError(
            absl::StrCat("the answer is larger than ", UpstreamHttp::kMaxResponseBytes, " bytes"));
      }
      break;
    default:
      break;
  }
  // curl_easy_strerror's text is generic ("Couldn't connect to server"): no URL or address.
  return absl::UnavailableError(curl_easy_strerror(code));
}

void FillResponseInfo(CURL* easy, UpstreamResponse& response) {
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  const char* content_type = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &content_type) == CURLE_OK &&
      content_type != nullptr) {
    response.content_type = content_type;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpstreamHttp>> UpstreamHttp::Create() {
  absl::call_once(curl_init_once, [] { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (curl_init_result != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("libcurl failed to initialise: ", curl_easy_strerror(curl_init_result)));
  }
  return std::unique_ptr<UpstreamHttp>(new UpstreamHttp());
}

UpstreamHttp::~UpstreamHttp() {
  absl::MutexLock lock(&mu_);
  for (void* handle : idle_) curl_easy_cleanup(static_cast<CURL*>(handle));
  idle_.clear();
}

void* UpstreamHttp::AcquireHandle() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* handle = idle_.back();
      idle_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void UpstreamHttp::ReleaseHandle(void* handle, bool reusable) {
  CURL* easy = static_cast<CURL*>(handle);
  if (reusable) {
    // Forgets every option (the body and header pointers among them) but keeps the live
    // connections, so the next call to the same upstream skips the TCP and TLS handshakes.
    curl_easy_reset(easy);
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxPooledHandles) {
      idle_.push_back(easy);
      return;
    }
  }
  curl_easy_cleanup(easy);
}

absl::StatusOr<UpstreamResponse> UpstreamHttp::Post(const UpstreamRequest& request) {
  CURL* easy = static_cast<CURL*>(AcquireHandle());
  if (easy == nullptr) return absl::UnavailableError("libcurl: out of memory");
  Transfer t;
  t.easy = easy;
  HeaderList headers;
  absl::StatusOr<UpstreamResponse> result;
  if (!Configure(easy, request, headers, /*stream=*/false) ||
      curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &OnProgress) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &t) != CURLE_OK ||
      curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L) != CURLE_OK) {
    result = absl::UnavailableError("libcurl refused an option (out of memory?)");
  } else if (const CURLcode code = curl_easy_perform(easy); code != CURLE_OK) {
    result = TransportError(code, t, request.timeout, /*stream=*/false);
  } else {
    FillResponseInfo(easy, t.response);
    result = std::move(t.response);
  }
  ReleaseHandle(easy, /*reusable=*/true);
  return result;
}

absl::StatusOr<UpstreamResponse> UpstreamHttp::PostStream(
    const UpstreamRequest& request, absl::FunctionRef<bool(absl::string_view)> on_data) {
  // A handle and a multi of its own: the connection lives exactly as long as the stream, so
  // that stopping it closes the socket at once. The multi interface lets this loop measure
  // silence between bytes itself (libcurl's own low-speed limit counts whole seconds).
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> easy(curl_easy_init(), &curl_easy_cleanup);
  std::unique_ptr<CURLM, decltype(&curl_multi_cleanup)> multi(curl_multi_init(),
                                                              &curl_multi_cleanup);
  if (easy == nullptr || multi == nullptr) return absl::UnavailableError("libcurl: out of memory");
  Transfer t;
  t.easy = easy.get();
  t.on_data = &on_data;
  HeaderList headers;
  if (!Configure(easy.get(), request, headers, /*stream=*/true) ||
      curl_easy_setopt(easy.get(), CURLOPT_HEADERDATA, &t) != CURLE_OK ||
      curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &t) != CURLE_OK ||
      curl_multi_add_handle(multi.get(), easy.get()) != CURLM_OK) {
    return absl::UnavailableError("libcurl refused an option (out of memory?)");
  }

  const auto silence_limit = absl::ToChronoMilliseconds(request.timeout);
  t.last_byte = SteadyClock::now();
  absl::Status failure;
  CURLcode code = CURLE_OK;
  for (;;) {
    int running = 0;
    if (const CURLMcode mc = curl_multi_perform(multi.get(), &running); mc != CURLM_OK) {
      failure = absl::UnavailableError(curl_multi_strerror(mc));
      break;
    }
    if (running == 0) {
      int queued = 0;
      CURLMsg* message = curl_multi_info_read(multi.get(), &queued);
      code = message != nullptr && message->msg == CURLMSG_DONE ? message->data.result
                                                                : CURLE_RECV_ERROR;
      break;
    }
    // A client that left while the upstream is silent: stop now, not at the next chunk.
    if (ClientGone()) return absl::CancelledError("the client went away");
    const auto silent = SteadyClock::now() - t.last_byte;
    if (silent >= silence_limit) {
      code = CURLE_OPERATION_TIMEDOUT;
      break;
    }
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit - silent).count() + 1;
    if (const CURLMcode mc =
            curl_multi_poll(multi.get(), nullptr, 0,
                            static_cast<int>(std::min<int64_t>(wait, kPresencePollMs)), nullptr);
        mc != CURLM_OK) {
      failure = absl::UnavailableError(curl_multi_strerror(mc));
      break;
    }
  }
  curl_multi_remove_handle(multi.get(), easy.get());
  if (!failure.ok()) return failure;
  if (code != CURLE_OK) return TransportError(code, t, request.timeout, /*stream=*/true);
  FillResponseInfo(easy.get(), t.response);
  return std::move(t.response);
}

}  // namespace anyai::server
