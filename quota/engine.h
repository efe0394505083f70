// The quota engine: admits or refuses one request of a tenant, on its plan, for a feature
// class, at a given time, against every sliding window the plan gives that class (SPEC §2).
// Embeddable in any C++ program: it depends on Abseil only and reads no clock of its own.
//
//   auto engine = anyai::quota::Engine::Create(anyai::quota::DefaultPlanTable(), {});
//   auto plan = (*engine)->FindPlan("free");
//   auto llm = (*engine)->FindClass("llm");
//   absl::StatusOr<Decision> d = (*engine)->Admit("ip:203.0.113.7", *plan, *llm, absl::Now());
//   if (d.ok() && !d->admitted) { /* 429, retry after d->retry_after */ }
//
// Thread safety: every method may be called concurrently from any number of threads. Admit()
// is lock-free for a resident tenant: one lock-free hash lookup and a compare-and-swap on the
// tenant's packed counter (see sliding_window.h for the invariant and memory orderings). The
// first use of a tenant (and eviction) takes a per-shard mutex; there is no global lock.
#ifndef ANYAI_QUOTA_ENGINE_H_
#define ANYAI_QUOTA_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "quota/plan.h"

namespace anyai::quota {

class TenantTable;
class SlidingWindows;
struct Tenant;

// Indexes resolved once (Engine::FindPlan / FindClass), so that the hot path compares no
// strings.
struct PlanId {
  int index = -1;
};
struct ClassId {
  int index = -1;
};

// One admission, as seen by a UsageSink. `bucket` is the class's sub-bucket index: the
// admission happened in [bucket * w / 60, (bucket + 1) * w / 60) microseconds since the Unix
// epoch, where w is the class's shortest window (Engine::SubBucketWidth).
struct Admission {
  std::string_view tenant;
  ClassId feature_class;
  int64_t bucket = 0;
  int64_t cost = 1;
};

// How many admissions a tenant had in one sub-bucket of one class: what a UsageLoader returns
// to restore a tenant.
struct BucketCount {
  ClassId feature_class;
  int64_t bucket = 0;
  int64_t count = 0;
};

// Observes every admission, after it is counted and before Admit() returns. Called from the
// admitting thread; must be thread-safe. An error makes Admit() return that error (the caller
// then fails closed or open by its own policy); the admission stays counted in memory.
class UsageSink {
 public:
  virtual ~UsageSink() = default;
  virtual absl::Status Record(const Admission& admission) = 0;
};

// Restores a tenant the engine does not hold in memory (first use, or after eviction). Called
// at most once per tenant residency, outside any engine lock; must be thread-safe. Buckets
// older than the longest window may be returned; they are ignored.
class UsageLoader {
 public:
  virtual ~UsageLoader() = default;
  virtual absl::StatusOr<std::vector<BucketCount>> Load(std::string_view tenant) = 0;
};

struct EngineOptions {
  // Not owned; may be null. Both must outlive the engine.
  UsageSink* sink = nullptr;
  UsageLoader* loader = nullptr;
  // EvictIdle() drops tenants unused for this long. Without a loader a tenant is evicted only
  // once none of its windows holds a count, so eviction never forgets a live admission.
  absl::Duration idle_timeout = absl::Minutes(10);
  // Number of independent shards of the tenant table (rounded up to a power of two).
  int shards = 64;
};

// The outcome of Admit(). The figures describe the tightest window of the class: the one
// with the fewest requests remaining (after this request, if admitted).
struct Decision {
  bool admitted = false;
  int64_t limit = 0;
  int64_t remaining = 0;
  // Time until the oldest unit counted in that window frees (zero if none is counted).
  absl::Duration reset;
  // Set when refused: the class and window that refused (the one that frees last when several
  // are full) and how long until a request can be admitted, ignoring other traffic.
  ClassId refused_class;
  absl::Duration refused_window;
  absl::Duration retry_after;
};

// Usage of one window, as /check reports it.
struct WindowUsage {
  absl::Duration window;
  int64_t used = 0;
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;  // until the oldest counted unit frees; zero if none
};

struct ClassUsage {
  std::string feature_class;
  std::vector<WindowUsage> windows;  // in the plan's order
};

struct UsageSnapshot {
  std::string plan;
  std::vector<ClassUsage> classes;  // in the plan's order
};

class Engine {
 public:
  // Fails with the validation error if `plans` is invalid (see ValidatePlanTable).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(PlanTable plans, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  absl::StatusOr<PlanId> FindPlan(std::string_view name) const;
  absl::StatusOr<ClassId> FindClass(std::string_view name) const;
  const PlanTable& plans() const { return plans_; }
  const Plan& plan(PlanId id) const { return plans_.plans[id.index]; }
  const std::string& class_name(ClassId id) const { return class_names_[id.index]; }
  int class_count() const { return static_cast<int>(class_names_.size()); }
  // The width of one sub-bucket of the class's shortest window (its length / 60).
  absl::Duration SubBucketWidth(ClassId id) const;

  // Admits (counts) or refuses one request, all-or-nothing across the class's windows.
  // `now` must come from one clock for all calls; a time earlier than one already seen for
  // the tenant is treated as that later time. Errors: invalid ids, or the loader's or sink's
  // error. A refusal is not an error.
  absl::StatusOr<Decision> Admit(std::string_view tenant, PlanId plan, ClassId feature_class,
                                 absl::Time now);

  // Every class and window of the tenant's plan. Restores the tenant if needed; counts nothing.
  absl::StatusOr<UsageSnapshot> Usage(std::string_view tenant, PlanId plan, absl::Time now);

  // Drops idle tenants (see EngineOptions::idle_timeout) and frees memory retired earlier.
  // Returns how many tenants were evicted. Call it periodically from one background thread.
  size_t EvictIdle(absl::Time now);
  size_t resident_tenants() const;

 private:
  struct Layout;

  Engine(PlanTable plans, EngineOptions options);
  // The resident tenant, restored through the loader on first use. Inside an EpochGuard.
  absl::StatusOr<Tenant*> Resident(std::string_view tenant, int64_t now_us);
  SlidingWindows& WindowsOf(Tenant& tenant, int feature_class);

  PlanTable plans_;
  EngineOptions options_;
  std::vector<std::string> class_names_;
  std::unique_ptr<Layout> layout_;
  std::unique_ptr<TenantTable> tenants_;
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_ENGINE_H_
