// Plans as data: which feature classes a plan meters, with which sliding windows, and the
// longest message a plan accepts. The built-in table is the seed's (SPEC §2), every cell; a
// config file may replace it. A PlanTable is plain data: copy it, compare it, validate it once
// with ValidatePlanTable() before handing it to the engine. Immutable once built, so it may be
// read from any number of threads.
#ifndef ANYAI_QUOTA_PLAN_H_
#define ANYAI_QUOTA_PLAN_H_

#include <cstdint>
#include <string>
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

// At most `max_requests` admissions in any interval of length `length`.
struct Window {
  absl::Duration length;
  int64_t max_requests = 0;

  friend bool operator==(const Window&, const Window&) = default;
};

// The windows one plan applies to one feature class. A request of the class is admitted only
// if every window has room.
struct ClassLimits {
  std::string feature_class;
  std::vector<Window> windows;

  friend bool operator==(const ClassLimits&, const ClassLimits&) = default;
};

struct Plan {
  std::string name;
  // Longest user-supplied text (message content, prompt), in Unicode code points.
  int64_t max_message_chars = 0;
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
inline constexpr absl::Duration kMinWindow = absl::Seconds(1);

// Refuses, naming the plan, class and window: an empty table or plan name; duplicate plans,
// classes or window lengths; a window shorter than kMinWindow or not a whole number of
// microseconds; a limit outside [1, kMaxRequestsPerWindow]; a negative max_message_chars; a
// plan missing a class another plan meters; and, per class across all plans, a window whose
// length is not a whole multiple of the class's shortest window, which is what lets one
// counter serve every window of a class.
absl::Status ValidatePlanTable(const PlanTable& table);

// The seed's free and premium plans, cell by cell, plus the `meta` anti-abuse class
// (600/min for both plans).
PlanTable DefaultPlanTable();

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_PLAN_H_
