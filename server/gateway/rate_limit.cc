#include "server/gateway/rate_limit.h"

#include "absl/strings/str_cat.h"

namespace anyai::server {

RateLimitState RateLimitOf(const quota::Decision& decision) {
  if (decision.admitted) {
    return {.limit = decision.limit, .remaining = decision.remaining, .reset = decision.reset};
  }
  return {.limit = decision.limit, .remaining = 0, .reset = decision.retry_after};
}

std::array<RateLimitHeader, 3> RateLimitHeaders(const RateLimitState& state) {
  return {RateLimitHeader{kRateLimitLimitHeader, absl::StrCat(state.limit)},
          RateLimitHeader{kRateLimitRemainingHeader, absl::StrCat(state.remaining)},
          RateLimitHeader{kRateLimitResetHeader, FormatReset(state.reset)}};
}

std::string FormatReset(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return "0s";
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  if (ms < 1000) return absl::StrCat(ms, "ms");
  // Go's time.Duration format, which OpenAI's headers use: "1h2m3.5s", "6m0s", "1s".
  const int64_t hours = ms / 3'600'000, minutes = ms / 60'000 % 60, seconds = ms / 1000 % 60;
  std::string out;
  if (hours > 0) absl::StrAppend(&out, hours, "h");
  if (hours > 0 || minutes > 0) absl::StrAppend(&out, minutes, "m");
  absl::StrAppend(&out, seconds);
  if (int64_t frac = ms % 1000; frac > 0) {
    std::string digits = absl::StrCat(1000 + frac).substr(1);  // three digits, zero-padded
    digits.erase(digits.find_last_not_of('0') + 1);
    absl::StrAppend(&out, ".", digits);
  }
  out.push_back('s');
  return out;
}

int64_t RetryAfterSeconds(absl::Duration delay) {
  if (delay <= absl::ZeroDuration()) return 0;
  return absl::ToInt64Seconds(absl::Ceil(delay, absl::Seconds(1)));
}

}  // namespace anyai::server
