#include "quota/plan.h"

#include <algorithm>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace anyai::quota {

const char* MeterName(Meter meter) {
  switch (meter) {
    case Meter::kTokens:
      return "tokens";
    case Meter::kSpend:
      return "micro_usd";
    case Meter::kRequests:
      break;
  }
  return "requests";
}

const std::vector<Window>& ClassLimits::WindowsOf(Meter meter) const {
  switch (meter) {
    case Meter::kTokens:
      return token_windows;
    case Meter::kSpend:
      return spend_windows;
    case Meter::kRequests:
      break;
  }
  return windows;
}

const ClassLimits* Plan::Find(std::string_view feature_class) const {
  for (const ClassLimits& c : classes) {
    if (c.feature_class == feature_class) return &c;
  }
  return nullptr;
}

const Plan* PlanTable::Find(std::string_view plan) const {
  for (const Plan& p : plans) {
    if (p.name == plan) return &p;
  }
  return nullptr;
}

std::vector<std::string> PlanTable::FeatureClasses() const {
  std::vector<std::string> out;
  for (const Plan& p : plans) {
    for (const ClassLimits& c : p.classes) {
      if (std::find(out.begin(), out.end(), c.feature_class) == out.end()) {
        out.push_back(c.feature_class);
      }
    }
  }
  return out;
}

namespace {

// The config field that names a meter's limit, for error messages.
const char* LimitField(Meter meter) {
  switch (meter) {
    case Meter::kTokens:
      return "max_tokens";
    case Meter::kSpend:
      return "max_micro_usd";
    case Meter::kRequests:
      break;
  }
  return "max_requests";
}

const char* WindowsField(Meter meter) {
  switch (meter) {
    case Meter::kTokens:
      return "token window";
    case Meter::kSpend:
      return "spend window";
    case Meter::kRequests:
      break;
  }
  return "window";
}

}  // namespace

absl::Status ValidatePlanTable(const PlanTable& table) {
  if (table.plans.empty()) return absl::InvalidArgumentError("plans: at least one plan is needed");
  absl::flat_hash_set<std::string> plan_names;
  // Per class and meter, across plans: the shortest window.
  absl::flat_hash_map<std::pair<std::string, int>, absl::Duration> shortest;
  for (const Plan& plan : table.plans) {
    const std::string where = absl::StrCat("plan \"", plan.name, "\"");
    if (plan.name.empty()) return absl::InvalidArgumentError("plans: a plan has an empty name");
    if (!plan_names.insert(plan.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": defined twice"));
    }
    if (plan.max_message_chars < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": max_message_chars is negative"));
    }
    if (plan.default_token_reserve < 0 || plan.default_token_reserve > kMaxCostPerWindow) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": default_token_reserve ",
                                                     plan.default_token_reserve, " is outside [0, ",
                                                     kMaxCostPerWindow, "]"));
    }
    absl::flat_hash_set<std::string> class_names;
    for (const ClassLimits& limits : plan.classes) {
      const std::string cwhere = absl::StrCat(where, ", class \"", limits.feature_class, "\"");
      if (limits.feature_class.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": a class has an empty name"));
      }
      if (!class_names.insert(limits.feature_class).second) {
        return absl::InvalidArgumentError(absl::StrCat(cwhere, ": listed twice"));
      }
      if (limits.windows.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(cwhere, ": no windows"));
      }
      if (limits.max_concurrent < 0 || limits.max_concurrent > kMaxConcurrent) {
        return absl::InvalidArgumentError(absl::StrCat(cwhere, ": max_concurrent ",
                                                       limits.max_concurrent, " is outside [0, ",
                                                       kMaxConcurrent, "]"));
      }
      for (Meter meter : kMeters) {
        const int64_t most = meter == Meter::kRequests ? kMaxRequestsPerWindow : kMaxCostPerWindow;
        absl::flat_hash_set<int64_t> lengths;
        for (const Window& w : limits.WindowsOf(meter)) {
          const std::string wwhere =
              absl::StrCat(cwhere, ", ", WindowsField(meter), " ", absl::FormatDuration(w.length));
          if (w.length < kMinWindow) {
            return absl::InvalidArgumentError(absl::StrCat(wwhere, ": a window must be at least ",
                                                           absl::FormatDuration(kMinWindow)));
          }
          if (w.length > kMaxWindow) {
            return absl::InvalidArgumentError(absl::StrCat(wwhere,
                                                           ": a window must be at most 31 days (",
                                                           absl::FormatDuration(kMaxWindow), ")"));
          }
          if (w.length % absl::Microseconds(1) != absl::ZeroDuration()) {
            return absl::InvalidArgumentError(
                absl::StrCat(wwhere, ": not a whole number of microseconds"));
          }
          if (w.limit < 1 || w.limit > most) {
            return absl::InvalidArgumentError(absl::StrCat(wwhere, ": ", LimitField(meter), " ",
                                                           w.limit, " is outside [1, ", most, "]"));
          }
          if (!lengths.insert(absl::ToInt64Microseconds(w.length)).second) {
            return absl::InvalidArgumentError(absl::StrCat(wwhere, ": window defined twice"));
          }
          auto [it, inserted] = shortest.try_emplace(
              std::make_pair(limits.feature_class, static_cast<int>(meter)), w.length);
          if (!inserted) it->second = std::min(it->second, w.length);
        }
      }
    }
  }
  const std::vector<std::string> all_classes = table.FeatureClasses();
  for (const Plan& plan : table.plans) {
    for (const std::string& c : all_classes) {
      if (plan.Find(c) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "plan \"", plan.name, "\": class \"", c, "\" is metered by another plan but not here"));
      }
    }
    for (const ClassLimits& limits : plan.classes) {
      for (Meter meter : kMeters) {
        for (const Window& w : limits.WindowsOf(meter)) {
          const int64_t base = absl::ToInt64Microseconds(
              shortest[std::make_pair(limits.feature_class, static_cast<int>(meter))]);
          const int64_t len = absl::ToInt64Microseconds(w.length);
          if (len % base != 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                "plan \"", plan.name, "\", class \"", limits.feature_class, "\", ",
                WindowsField(meter), " ", absl::FormatDuration(w.length),
                ": must be a whole multiple of the class's shortest ", WindowsField(meter), " ",
                absl::FormatDuration(absl::Microseconds(base))));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

namespace {

Window PerMinute(int64_t n) { return {absl::Minutes(1), n}; }
Window PerHour(int64_t n) { return {absl::Hours(1), n}; }
Window PerDay(int64_t n) { return {absl::Hours(24), n}; }

}  // namespace

PlanTable DefaultPlanTable() {
  PlanTable table;
  table.plans.push_back(Plan{.name = kFreePlan,
                             .max_message_chars = 1000,
                             .classes = {
                                 {kLlm, {PerMinute(10), PerDay(2000)}},
                                 {kClosedLlm, {PerHour(25), PerDay(100)}},
                                 {kImageGeneration, {PerMinute(120), PerDay(750)}},
                                 {kGlobalAsk, {PerMinute(120), PerDay(750)}},
                                 {kImagine, {PerDay(20)}},
                                 {kVision, {PerHour(25), PerDay(100)}},
                                 {kMeta, {PerMinute(600)}},
                             }});
  table.plans.push_back(Plan{.name = kPremiumPlan,
                             .max_message_chars = 5000,
                             .classes = {
                                 {kLlm, {PerMinute(30), PerDay(5000)}},
                                 {kClosedLlm, {PerHour(50), PerDay(300)}},
                                 {kImageGeneration, {PerMinute(120), PerDay(750)}},
                                 {kGlobalAsk, {PerMinute(120), PerDay(750)}},
                                 {kImagine, {PerDay(20)}},
                                 {kVision, {PerHour(25), PerDay(100)}},
                                 {kMeta, {PerMinute(600)}},
                             }});
  return table;
}

}  // namespace anyai::quota
