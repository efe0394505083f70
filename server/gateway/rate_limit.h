// The rate-limit figures a metered call reports to its client, and their one wire form, which
// the HTTP front sends as headers and the gRPC front as metadata (SPEC §2, §4):
//
//   x-ratelimit-limit-requests: 10          OpenAI's names and formats, for the tightest
//   x-ratelimit-remaining-requests: 9       request window; the -tokens trio the same for the
//   x-ratelimit-reset-requests: 6s          tightest token window, when the class has one
//   x-ratelimit-limit-tokens: 20000
//   x-ratelimit-remaining-tokens: 18800
//   x-ratelimit-reset-tokens: 59.5s
//   ratelimit-policy: "requests-1m";q=10;w=60, "tokens-1m";q=20000;w=60,
//                     "concurrency";q=2;qu="concurrent-requests"
//   ratelimit: "requests-1m";r=9;t=6, "tokens-1m";r=18800;t=60, "concurrency";r=2
//
// The last two are the IETF fields of draft-ietf-httpapi-ratelimit-headers (-10), each a
// Structured Field List (RFC 8941) with one item per limit of the class, in the plan's order:
// request windows, token windows, spend windows, then the concurrency limit. An item is a
// String naming the limit, stable across responses: "<kind>-<window>" with kind "requests",
// "tokens" or "spend" and the window in its largest whole unit ("1m", "1h", "1d", "30d", "90s",
// "1500ms"), or "concurrency". In RateLimit-Policy, q is the limit in the kind's unit
// (requests, tokens, micro-USD, calls) and w the window in whole seconds, rounded up (the draft
// has no sub-second windows); in RateLimit, r is what remains and t the whole seconds, rounded
// up, until the oldest counted unit frees (0 when none is counted). Concurrency has no w and
// no t, and qu="concurrent-requests" (the draft's unit for it); requests use the draft's
// default unit, so they have no qu. Tokens and micro-USD are not units the draft registers, so
// those items carry no qu either: their names say the unit.
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

// The IETF fields (draft-ietf-httpapi-ratelimit-headers), in lower case as HTTP/2 and gRPC
// metadata need.
inline constexpr char kRateLimitPolicyHeader[] = "ratelimit-policy";
inline constexpr char kRateLimitHeader[] = "ratelimit";

// The limits of a decided call as its client sees them. `limit`, `remaining`, `reset`: the
// tightest request window (for a refused call, whatever refused it: 0 remaining, and the wait
// until the call can be admitted; but for one that can never fit, the window as it is, since a
// smaller call may be admitted at once). `tokens`: the tightest token window, when the plan
// limits tokens for the class (for a call refused by a token window: that window, with the wait
// until the call fits, or its own reset when it never fits). `limits`: every limit of the class
// (request, token and spend windows, concurrency) as the engine reported them, for the IETF
// RateLimit-Policy and RateLimit fields. For a unary call the figures are those after its
// settlement (Settled); for a stream, those at its start (its reservation).
struct RateLimitState {
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;
  std::optional<quota::MeterState> tokens = std::nullopt;
  absl::InlinedVector<quota::LimitState, 4> limits = {};

  friend bool operator==(const RateLimitState&, const RateLimitState&) = default;
};

// The state after the call's settlement: every remaining figure of a request, token or spend
// window moved by what came back (`refunded`) less what was charged beyond the reservation
// (`overage`), in that meter's unit, within [0, limit]; the concurrency limit's remaining one
// higher (the settlement freed the call's slot), within [0, limit]. `limit`/`remaining`/`reset`
// and `tokens` are then the tightest windows again (fewest remaining; on a tie the later in the
// plan's order, as the engine picks them) when `limits` has that meter's windows, else moved
// alone. Resets are unchanged.
RateLimitState Settled(RateLimitState state, const quota::Settlement& settlement);

// The state an engine decision reports, admitted or refused.
RateLimitState RateLimitOf(const quota::Decision& decision);

struct RateLimitHeader {
  std::string_view name;
  std::string value;
};

// x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests; then
// x-ratelimit-{limit,remaining,reset}-tokens when `tokens` is set; then, when `limits` is not
// empty, `ratelimit-policy` and `ratelimit`, one list item per limit (see the top of this
// file). Names in lower case (HTTP/2 and gRPC metadata need it).
absl::InlinedVector<RateLimitHeader, 8> RateLimitHeaders(const RateLimitState& state);

// A duration the way OpenAI writes x-ratelimit-reset-requests (Go's duration format): "20ms",
// "1s", "12.3s", "6m0s", "1h0m5s"; rounded up to whole milliseconds, so that a client that waits
// this long finds room.
std::string FormatReset(absl::Duration d);

// The name of a limit in the IETF fields: "requests-1m", "tokens-1d", "spend-30d",
// "concurrency" (see the top of this file).
std::string LimitName(const quota::LimitState& limit);

// An amount of micro-USD as US dollars, with cents and as many more digits as it needs:
// "$0.00", "$1.50", "$0.0125", "$12.000001".
std::string FormatUsd(int64_t micro_usd);

// Retry-After's value and the "retry after Ns" of a 429's message: whole seconds, rounded up,
// never negative.
int64_t RetryAfterSeconds(absl::Duration delay);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_RATE_LIMIT_H_
