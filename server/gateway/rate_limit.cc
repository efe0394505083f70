#include "server/gateway/rate_limit.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace anyai::server {
namespace {

using quota::LimitKind;
using quota::LimitState;

// `remaining` moved by `by`, within [0, limit].
int64_t Moved(int64_t remaining, int64_t by, int64_t limit) {
  return std::clamp<int64_t>(remaining + by, 0, std::max<int64_t>(limit, 0));
}

// The tightest window of `kind` in `limits` (fewest remaining; on a tie the later, as the engine
// picks it), or nullptr when there is none.
const LimitState* Tightest(const absl::InlinedVector<LimitState, 4>& limits, LimitKind kind) {
  const LimitState* tightest = nullptr;
  for (const LimitState& l : limits) {
    if (l.kind == kind && (tightest == nullptr || l.remaining <= tightest->remaining)) {
      tightest = &l;
    }
  }
  return tightest;
}

// A window in its largest whole unit: "1d", "30d", "1h", "1m", "90s", "1500ms", "1000001us".
std::string WindowLabel(absl::Duration window) {
  const int64_t us = absl::ToInt64Microseconds(window);
  struct Unit {
    int64_t us;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{86'400'000'000, "d"}, {3'600'000'000, "h"}, {60'000'000, "m"},
                                    {1'000'000, "s"},      {1'000, "ms"},        {1, "us"}};
  for (const Unit& unit : kUnits) {
    if (us != 0 && us % unit.us == 0) return absl::StrCat(us / unit.us, unit.name);
  }
  return "0s";
}

// Whole seconds, rounded up, at least 0: the draft's w and t (the rounding of Retry-After).
int64_t CeilSeconds(absl::Duration d) { return RetryAfterSeconds(d); }

}  // namespace

std::string LimitName(const LimitState& limit) {
  if (limit.kind == LimitKind::kConcurrency) return LimitKindName(limit.kind);
  return absl::StrCat(LimitKindName(limit.kind), "-", WindowLabel(limit.window));
}

RateLimitState RateLimitOf(const quota::Decision& decision) {
  RateLimitState state{.limit = decision.limit,
                       .remaining = decision.remaining,
                       .reset = decision.reset,
                       .tokens = decision.tokens,
                       .limits = decision.limits};
  if (decision.admitted) return state;
  if (decision.refused_kind == LimitKind::kTokens && state.tokens.has_value()) {
    // The token window that refused, and the wait until the call fits in it.
    for (const LimitState& l : decision.limits) {
      if (l.kind == LimitKind::kTokens && l.window == decision.refused_window) {
        state.tokens =
            quota::MeterState{.limit = l.limit,
                              .remaining = l.remaining,
                              .reset = decision.never_fits ? l.reset : decision.retry_after};
      }
    }
  }
  // A call that can never fit says nothing of other calls: a smaller one may be admitted now, so
  // the request figures stay the engine's. Otherwise, whatever refused the call, no request is
  // admitted before it could be.
  if (!decision.never_fits) {
    state.remaining = 0;
    state.reset = decision.retry_after;
  }
  return state;
}

RateLimitState Settled(RateLimitState state, const quota::Settlement& settlement) {
  const quota::Cost back{.requests = settlement.refunded.requests - settlement.overage.requests,
                         .tokens = settlement.refunded.tokens - settlement.overage.tokens,
                         .micro_usd = settlement.refunded.micro_usd - settlement.overage.micro_usd};
  for (LimitState& l : state.limits) {
    switch (l.kind) {
      case LimitKind::kRequests:
        l.remaining = Moved(l.remaining, back.requests, l.limit);
        break;
      case LimitKind::kTokens:
        l.remaining = Moved(l.remaining, back.tokens, l.limit);
        break;
      case LimitKind::kSpend:
        l.remaining = Moved(l.remaining, back.micro_usd, l.limit);
        break;
      case LimitKind::kConcurrency:
        l.remaining = Moved(l.remaining, 1, l.limit);
        break;
    }
  }
  if (const LimitState* t = Tightest(state.limits, LimitKind::kRequests); t != nullptr) {
    state.limit = t->limit;
    state.remaining = t->remaining;
    state.reset = t->reset;
  } else {
    state.remaining = Moved(state.remaining, back.requests, state.limit);
  }
  if (state.tokens.has_value()) {
    if (const LimitState* t = Tightest(state.limits, LimitKind::kTokens); t != nullptr) {
      *state.tokens =
          quota::MeterState{.limit = t->limit, .remaining = t->remaining, .reset = t->reset};
    } else {
      state.tokens->remaining = Moved(state.tokens->remaining, back.tokens, state.tokens->limit);
    }
  }
  return state;
}

absl::InlinedVector<RateLimitHeader, 8> RateLimitHeaders(const RateLimitState& state) {
  absl::InlinedVector<RateLimitHeader, 8> headers = {
      RateLimitHeader{kRateLimitLimitHeader, absl::StrCat(state.limit)},
      RateLimitHeader{kRateLimitRemainingHeader, absl::StrCat(state.remaining)},
      RateLimitHeader{kRateLimitResetHeader, FormatReset(state.reset)}};
  if (state.tokens.has_value()) {
    headers.push_back({kRateLimitLimitTokensHeader, absl::StrCat(state.tokens->limit)});
    headers.push_back({kRateLimitRemainingTokensHeader, absl::StrCat(state.tokens->remaining)});
    headers.push_back({kRateLimitResetTokensHeader, FormatReset(state.tokens->reset)});
  }
  if (state.limits.empty()) return headers;
  std::string policy, current;
  for (const LimitState& l : state.limits) {
    const char* separator = policy.empty() ? "" : ", ";
    // Names are made of [a-z0-9-]: a Structured Field String needs no escaping.
    const std::string name = absl::StrCat("\"", LimitName(l), "\"");
    if (l.kind == LimitKind::kConcurrency) {
      absl::StrAppend(&policy, separator, name, ";q=", l.limit, ";qu=\"concurrent-requests\"");
      absl::StrAppend(&current, separator, name, ";r=", l.remaining);
    } else {
      absl::StrAppend(&policy, separator, name, ";q=", l.limit, ";w=", CeilSeconds(l.window));
      absl::StrAppend(&current, separator, name, ";r=", l.remaining, ";t=", CeilSeconds(l.reset));
    }
  }
  headers.push_back({kRateLimitPolicyHeader, std::move(policy)});
  headers.push_back({kRateLimitHeader, std::move(current)});
  return headers;
}

std::string FormatUsd(int64_t micro_usd) {
  const bool negative = micro_usd < 0;
  // In unsigned arithmetic, so that even INT64_MIN has a magnitude.
  const uint64_t magnitude =
      negative ? uint64_t{0} - static_cast<uint64_t>(micro_usd) : static_cast<uint64_t>(micro_usd);
  std::string fraction = absl::StrCat(1'000'000 + magnitude % 1'000'000).substr(1);  // 6 digits
  while (fraction.size() > 2 && fraction.back() == '0') fraction.pop_back();
  return absl::StrCat(negative ? "-$" : "$", magnitude / 1'000'000, ".", fraction);
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
