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

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "quota/engine.h"

namespace anyai::server {

inline constexpr char kRateLimitLimitHeader[] = "x-ratelimit-limit-requests";
inline constexpr char kRateLimitRemainingHeader[] = "x-ratelimit-remaining-requests";
inline constexpr char kRateLimitResetHeader[] = "x-ratelimit-reset-requests";

// The tightest window of a decided call: its limit, what remains, and when the next unit frees
// (for a refused call: 0 remaining, and the wait until a request can be admitted).
struct RateLimitState {
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;

  friend bool operator==(const RateLimitState&, const RateLimitState&) = default;
};

// The state an engine decision reports, admitted or refused.
RateLimitState RateLimitOf(const quota::Decision& decision);

struct RateLimitHeader {
  std::string_view name;
  std::string value;
};

// x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests.
std::array<RateLimitHeader, 3> RateLimitHeaders(const RateLimitState& state);

// A duration the way OpenAI writes x-ratelimit-reset-requests (Go's duration format): "20ms",
// "1s", "12.3s", "6m0s", "1h0m5s"; rounded up to whole milliseconds, so that a client that waits
// this long finds room.
std::string FormatReset(absl::Duration d);

// Retry-After's value and the "retry after Ns" of a 429's message: whole seconds, rounded up,
// never negative.
int64_t RetryAfterSeconds(absl::Duration delay);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_RATE_LIMIT_H_
