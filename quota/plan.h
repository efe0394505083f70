// Plans as data: which feature classes a plan meters, with which sliding windows of requests,
// tokens and spend, how many calls of a class a tenant may have in flight, and the longest
// message a plan accepts. The built-in table is the seed's (SPEC §2), every cell; a
// config file may replace it. A PlanTable is plain data: copy it, compare it, validate it once
// with ValidatePlanTable() before handing it to the engine. Immutable once built, so it may be
// read from any number of threads.
#ifndef ANYAI_QUOTA_PLAN_H_
#define ANYAI_QUOTA_PLAN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace anyai::quota {

// Names of the built-in feature classes (SPEC §2). Plans may define others.
inline constexpr char kLlm[] = "llm";
inline constexpr char kClosedLlm[] = "closed_llm";
inline constexpr char kImageGeneration[] = "image_generation";
inline constexpr char kGlobalAsk[] = "globalask";
inline constexpr char kImagine[] = "imagine";
inline constexpr char kVision[] = "vision";
// The anti-abuse limit for /models and /check, which the seed's table does not meter.
inline constexpr char kMeta[] = "meta";

inline constexpr char kFreePlan[] = "free";
inline constexpr char kPremiumPlan[] = "premium";

// What a window counts. The values are stable: storage keeps them.
enum class Meter : int {
  kRequests = 0,  // calls admitted
  kTokens = 1,    // prompt + completion tokens
  kSpend = 2,     // micro-USD, at the model's prices
};
inline constexpr int kMeterCount = 3;
inline constexpr Meter kMeters[kMeterCount] = {Meter::kRequests, Meter::kTokens, Meter::kSpend};
// "requests", "tokens", "micro_usd": the names reports and error messages use.
const char* MeterName(Meter meter);

// At most `limit` units of its meter charged in any interval of length `length`.
struct Window {
  absl::Duration length;
  int64_t limit = 0;

  friend bool operator==(const Window&, const Window&) = default;
};

// The limits one plan applies to one feature class. A call of the class is admitted only if
// every window of every meter has room for its cost and a slot is free under max_concurrent.
struct ClassLimits {
  std::string feature_class;
  std::vector<Window> windows;             // requests
  std::vector<Window> token_windows = {};  // tokens; empty: tokens are not limited
  std::vector<Window> spend_windows = {};  // micro-USD; empty: spend is not limited
  int64_t max_concurrent = 0;              // calls in flight per tenant; 0: no limit

  // The windows of `meter`.
  const std::vector<Window>& WindowsOf(Meter meter) const;

  friend bool operator==(const ClassLimits&, const ClassLimits&) = default;
};

struct Plan {
  std::string name;
  // Longest user-supplied text (message content, prompt), in Unicode code points.
  int64_t max_message_chars = 0;
  // Completion tokens reserved for a chat request that gives no max_tokens.
  int64_t default_token_reserve = 0;
  std::vector<ClassLimits> classes;

  // The limits for `feature_class`, or nullptr when the plan does not list it.
  const ClassLimits* Find(std::string_view feature_class) const;

  friend bool operator==(const Plan&, const Plan&) = default;
};

struct PlanTable {
  std::vector<Plan> plans;

  const Plan* Find(std::string_view plan) const;
  // Every feature class named by any plan, in first-seen order.
  std::vector<std::string> FeatureClasses() const;

  friend bool operator==(const PlanTable&, const PlanTable&) = default;
};

// Limits of the engine's packed counters (see sliding_window.h for why).
inline constexpr int64_t kMaxRequestsPerWindow = (int64_t{1} << 23) - 1;
// Token and spend windows count up to 2^61: a limit up to 2^50 leaves room for overage.
inline constexpr int64_t kMaxCostPerWindow = int64_t{1} << 50;
inline constexpr int64_t kMaxConcurrent = int64_t{1} << 20;
inline constexpr absl::Duration kMinWindow = absl::Seconds(1);
inline constexpr absl::Duration kMaxWindow = absl::Hours(24 * 31);

// Refuses, naming the plan, class and window: an empty table or plan name; duplicate plans or
// classes; a class without any window; duplicate window lengths within a meter; a window
// outside [kMinWindow, kMaxWindow] or not a whole number of microseconds; a request limit
// outside [1, kMaxRequestsPerWindow], a token or spend limit outside [1, kMaxCostPerWindow];
// max_concurrent outside [0, kMaxConcurrent]; a negative max_message_chars or
// default_token_reserve; a plan missing a class another plan meters; and, per class and meter
// across all plans, a window whose length is not a whole multiple of the shortest window of
// that meter, which is what lets one counter serve every window of a meter.
absl::Status ValidatePlanTable(const PlanTable& table);

// The seed's free and premium plans, cell by cell, plus the `meta` anti-abuse class
// (600/min for both plans).
PlanTable DefaultPlanTable();

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_PLAN_H_
