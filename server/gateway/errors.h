// The gateway's one vocabulary of errors, shared by the gRPC and HTTP fronts (SPEC §4). Every
// error the domain returns is an absl::Status whose code is the gRPC code and whose payloads
// are google.rpc detail messages (google/rpc/error_details.proto), each stored under its
// `type.googleapis.com/google.rpc.<Name>` type URL, serialized:
//
//   InvalidRequest / InvalidField  INVALID_ARGUMENT    BadRequest (one FieldViolation per field)
//   UnknownModel                   NOT_FOUND           ResourceInfo{"model"},
//                                                      ErrorInfo{reason: "MODEL_NOT_FOUND"}
//   RateLimited                    RESOURCE_EXHAUSTED  QuotaFailure, RetryInfo,
//                                                      ErrorInfo{reason: "RATE_LIMIT_EXCEEDED"}
//   Unauthenticated                UNAUTHENTICATED     ErrorInfo{reason: "API_KEY_INVALID"}
//   TooManyFailedAuthentications   RESOURCE_EXHAUSTED  RetryInfo,
//                                                      ErrorInfo{reason:
//                                                      "TOO_MANY_FAILED_AUTHENTICATIONS"}
//   FromProvider (when UNAVAILABLE) UNAVAILABLE        ErrorInfo{reason: "UPSTREAM_UNAVAILABLE"}
//
// Every ErrorInfo has domain "anyai.v1". At the edges:
//   gRPC:  ToRpcStatus(status) gives the google.rpc.Status to serialize into
//          `grpc-status-details-bin`, with grpc::Status(code, message, rpc.SerializeAsString()).
//   HTTP:  ErrorKindOf(status) (error_kind.h) picks the HTTP status and OpenAI's type and code,
//          reading ErrorInfo for 404 and 502; ErrorField(status) is OpenAI's `param`;
//          GetRetryInfo gives Retry-After.
//
// Messages are safe to show to the caller and to put in JSON: user-supplied text echoed in
// them (a model id) is truncated and escaped to printable ASCII.
//
// Thread-safe: pure functions; RateLimited's memo is per thread (so no lock), and the statuses it
// shares between calls are immutable (absl::Status copies on write).
#ifndef ANYAI_SERVER_GATEWAY_ERRORS_H_
#define ANYAI_SERVER_GATEWAY_ERRORS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "quota/engine.h"

namespace anyai::server {

// Type URLs of the payloads, as google.protobuf.Any names them.
inline constexpr char kBadRequestTypeUrl[] = "type.googleapis.com/google.rpc.BadRequest";
inline constexpr char kQuotaFailureTypeUrl[] = "type.googleapis.com/google.rpc.QuotaFailure";
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";
inline constexpr char kErrorInfoTypeUrl[] = "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr char kResourceInfoTypeUrl[] = "type.googleapis.com/google.rpc.ResourceInfo";

// ErrorInfo.domain of every error of ours.
inline constexpr char kErrorDomain[] = "anyai.v1";
// ErrorInfo.reason values.
inline constexpr char kRateLimitExceededReason[] = "RATE_LIMIT_EXCEEDED";
inline constexpr char kModelNotFoundReason[] = "MODEL_NOT_FOUND";
inline constexpr char kApiKeyInvalidReason[] = "API_KEY_INVALID";
inline constexpr char kUpstreamUnavailableReason[] = "UPSTREAM_UNAVAILABLE";
inline constexpr char kTooManyFailedAuthenticationsReason[] = "TOO_MANY_FAILED_AUTHENTICATIONS";

// One bad field of a request. `field` is a JSON-style path into the request message, with the
// proto/JSON field names: "model", "messages[2].content", "max_tokens".
struct FieldViolation {
  std::string field;
  std::string description;

  friend bool operator==(const FieldViolation&, const FieldViolation&) = default;
};

// INVALID_ARGUMENT. Message: the first violation as "field: description"; payload: BadRequest
// with every violation, in order. An empty list gives the message "invalid request".
absl::Status InvalidRequest(std::vector<FieldViolation> violations);

// InvalidRequest with one violation.
absl::Status InvalidField(std::string field, std::string description);

// NOT_FOUND: the request's `field` (usually "model") names a model that the catalogue or the
// endpoint does not have. Message: `field: the model "x" does not exist`; payloads:
// ResourceInfo{resource_type: "model", resource_name: x} and ErrorInfo{reason:
// "MODEL_NOT_FOUND", metadata {field, model}}.
absl::Status UnknownModel(std::string field, std::string model);

// What a refusal by the quota engine says (SPEC §2, §4): the class and window that refused.
struct RateLimitInfo {
  std::string feature_class;  // e.g. "llm"
  std::string plan;           // e.g. "free"
  // What refused: a request, token or spend window, or the concurrency limit.
  quota::LimitKind kind = quota::LimitKind::kRequests;
  absl::Duration window;       // the refusing window's length, e.g. absl::Minutes(1); zero for
                               // concurrency
  int64_t limit = 0;           // its limit, in its unit (requests, tokens, micro-USD, calls)
  int64_t requested = 0;       // what the call asked of it (its estimate)
  bool never_fits = false;     // the call alone exceeds the limit: no wait helps
  absl::Duration retry_after;  // until the call could be admitted
  // Optional, shown in the message in parentheses, e.g. "key sk-ab…wxyz". Must never be a raw
  // API key: messages reach logs.
  std::string tenant_description;

  friend bool operator==(const RateLimitInfo&, const RateLimitInfo&) = default;
};

// RESOURCE_EXHAUSTED, naming the limit that refused and the real wait (the retry in whole
// seconds, rounded up), with the tenant description, if any, in the parentheses:
//   requests     "Rate limit exceeded for llm: 10 requests per 1m on the free plan (key
//   sk-ab…wxyz);
//                retry after 12s"
//   tokens       "Rate limit exceeded for llm: 20000 tokens per 1m on the free plan (this request
//                needs 1200; key sk-ab…wxyz); retry after 12s"
//   spend        "Rate limit exceeded for closed_llm: $1.00 of spend per 24h on the free plan (this
//                request may cost up to $0.0125); retry after 3600s"
//   concurrency  "Rate limit exceeded for llm: at most 4 calls in flight on the free plan;
//                retry after 1s"
//   never_fits   "Rate limit exceeded for llm: this request needs 30000 tokens but the free plan
//                allows 20000 per 1m: it can never be admitted; lower max_tokens or shorten the
//                prompt" (spend: "may cost up to $0.05 but the free plan allows $0.01 per 24h");
//                no retry hint and no RetryInfo, so no Retry-After either: waiting cannot help.
// Payloads:
//   QuotaFailure{violations [{subject: "feature_class:llm", description: the limit as above,
//                e.g. "10 requests per 1m on the free plan"}]}
//   RetryInfo{retry_delay: retry_after rounded up to whole milliseconds, at least 0} (not when
//             never_fits): a client that waits this long finds room, as with the
//             x-ratelimit-reset-* headers (rate_limit.h, FormatReset)
//   ErrorInfo{reason: "RATE_LIMIT_EXCEEDED", domain: "anyai.v1", metadata {feature_class, plan,
//             limit_kind ("requests", "tokens", "spend", "concurrency"), limit (in its unit:
//             requests, tokens, micro-USD, calls), window_seconds ("60", or "1.5" for a
//             fractional window; not for concurrency), requested (tokens and spend only: the
//             call's estimate), never_fits ("true", only when set)}}
//
// Built once per refusal state (RateLimitKey: every field that reaches the client) and kept in
// a small per-thread memo (render_memo.h) while the state repeats: a 429 flood gets copies of
// one status (a refcount each), which the fronts recognise and render once too
// (grpc_status.h, http_status.h).
absl::Status RateLimited(RateLimitInfo info);

// RateLimited built afresh, never from the memo: what it must equal (tests).
absl::Status RateLimitedUncached(const RateLimitInfo& info);

// What of `info` reaches the client, the key of RateLimited's memo: `info` with the retry
// rounded up to whole milliseconds and at least 0, and with what no form of the refusal shows
// cleared: the retry when it never fits, the window of the concurrency limit, `requested` of a
// request or concurrency limit unless it never fits. Two infos with the same key have the same
// RateLimited, byte for byte; two with different keys, different ones.
RateLimitInfo RateLimitKey(RateLimitInfo info);

// UNAUTHENTICATED with message `why` (e.g. "unknown or revoked API key"); payload ErrorInfo
// {reason: "API_KEY_INVALID"}. `why` must not contain the key.
absl::Status Unauthenticated(std::string why);

// RESOURCE_EXHAUSTED for a request carrying a key from a client address that failed to
// authenticate too often (auth_failure_limit.h): "too many failed authentications from this
// address; retry in 12s" (the wait in whole seconds, rounded up); payloads RetryInfo{retry_delay:
// retry_after} (so HTTP answers 429 with Retry-After) and ErrorInfo{reason:
// "TOO_MANY_FAILED_AUTHENTICATIONS"}.
absl::Status TooManyFailedAuthentications(absl::Duration retry_after);

// A provider's error as the Gateway passes it on. An UNAVAILABLE one gets ErrorInfo{reason:
// "UPSTREAM_UNAVAILABLE"}, so that every front and metric tells a failing upstream (HTTP 502)
// from the gateway's own storage (503); other codes pass unchanged.
absl::Status FromProvider(absl::Status status);

// The detail of type T attached to `status`, or nullopt when there is none (or it does not
// parse).
std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status);
std::optional<google::rpc::QuotaFailure> GetQuotaFailure(const absl::Status& status);
std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status);
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);
std::optional<google::rpc::ResourceInfo> GetResourceInfo(const absl::Status& status);

// The request field an error is about, for OpenAI's `param`: the first BadRequest violation's
// field, or the ErrorInfo metadata "field" (UnknownModel); empty when none.
std::string ErrorField(const absl::Status& status);

// The status as google.rpc.Status: code, message, and every payload whose type URL starts with
// "type.googleapis.com/" as a google.protobuf.Any (type URL and serialized bytes unchanged),
// sorted by type URL so that the encoding is deterministic. OK gives code 0 and nothing else.
google::rpc::Status ToRpcStatus(const absl::Status& status);

// The inverse of ToRpcStatus, for clients and tests: code (UNKNOWN when out of range),
// message and every detail as a payload. Code 0 gives OK (details dropped).
absl::Status FromRpcStatus(const google::rpc::Status& rpc);

// `text` made safe to quote in an error message: at most `max_bytes` of it, with every byte
// that is not printable ASCII C-escaped ("\xc3\xa9"), and "..." appended when truncated.
std::string QuoteForMessage(std::string_view text, size_t max_bytes = 100);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_ERRORS_H_
