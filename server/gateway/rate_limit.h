// The rate-limit figures a metered call reports to its client, and their one wire form: OpenAI's
// x-ratelimit-* header names and values, which the HTTP front sends as headers and the gRPC
// front as metadata (SPEC §4).
//
//   RateLimitState s = RateLimitOf(decision);
//   for (const RateLimitHeader& h : RateLimitHeaders(s)) add(h.name, h.value);
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_GATEWAY_RATE_LIMIT_H_
#define ANYAI_SERVER_GATEWAY_RATE_LIMIT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "quota/engine.h"

namespace anyai::server {

inline constexpr char kRateLimitLimitHeader[] = "x-ratelimit-limit-requests";
inline constexpr char kRateLimitRemainingHeader[] = "x-ratelimit-remaining-requests";
inline constexpr char kRateLimitResetHeader[] = "x-ratelimit-reset-requests";

inline constexpr char kRateLimitLimitTokensHeader[] = "x-ratelimit-limit-tokens";
inline constexpr char kRateLimitRemainingTokensHeader[] = "x-ratelimit-remaining-tokens";
inline constexpr char kRateLimitResetTokensHeader[] = "x-ratelimit-reset-tokens";

// The limits of a decided call as its client sees them. `limit`, `remaining`, `reset`: the
// tightest request window (for a refused call: 0 remaining, and the wait until a request can be
// admitted). `tokens`: the tightest token window, when the plan limits tokens for the class.
// `limits`: every limit of the class (request, token and spend windows, concurrency), for the
// IETF RateLimit-Policy and RateLimit fields. For a unary call the token and spend figures are
// those after its settlement; for a stream, those at its start (its reservation).
struct RateLimitState {
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;
  std::optional<quota::MeterState> tokens;
  absl::InlinedVector<quota::LimitState, 4> limits;

  friend bool operator==(const RateLimitState&, const RateLimitState&) = default;
};

// The state after a settlement: every token and spend figure moved by what came back
// (`refunded`) and what was charged beyond the reservation (`overage`), within [0, limit].
RateLimitState Settled(RateLimitState state, const quota::Settlement& settlement);

// The state an engine decision reports, admitted or refused.
RateLimitState RateLimitOf(const quota::Decision& decision);

struct RateLimitHeader {
  std::string_view name;
  std::string value;
};

// x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests; then
// x-ratelimit-{limit,remaining,reset}-tokens when `tokens` is set; then, when `limits` is not
// empty, the IETF fields (draft-ietf-httpapi-ratelimit-headers) `ratelimit-policy` and
// `ratelimit`, one list item per limit. Names in lower case (HTTP/2 and gRPC metadata need it).
absl::InlinedVector<RateLimitHeader, 8> RateLimitHeaders(const RateLimitState& state);

// A duration the way OpenAI writes x-ratelimit-reset-requests (Go's duration format): "20ms",
// "1s", "12.3s", "6m0s", "1h0m5s"; rounded up to whole milliseconds, so that a client that waits
// this long finds room.
std::string FormatReset(absl::Duration d);

// Retry-After's value and the "retry after Ns" of a 429's message: whole seconds, rounded up,
// never negative.
int64_t RetryAfterSeconds(absl::Duration delay);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_RATE_LIMIT_H_
