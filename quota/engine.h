// The quota engine: admits or refuses one call of a tenant, on its plan, for a feature class,
// at a given time, against every limit the plan gives that class (SPEC §2): sliding windows of
// requests, tokens and spend (micro-USD), and calls in flight. Embeddable in any C++ program:
// it depends on Abseil only and reads no clock of its own.
//
//   auto engine = anyai::quota::Engine::Create(anyai::quota::DefaultPlanTable(), {});
//   auto plan = (*engine)->FindPlan("free");
//   auto llm = (*engine)->FindClass("llm");
//   // A call that costs one request: counted, or refused.
//   absl::StatusOr<Decision> d = (*engine)->Admit("ip:203.0.113.7", *plan, *llm, absl::Now());
//   if (d.ok() && !d->admitted) { /* 429, retry after d->retry_after */ }
//   // A call whose cost is known only at its end: reserve the estimate, then settle.
//   absl::StatusOr<Reservation> r = (*engine)->Reserve(
//       "ip:203.0.113.7", *plan, *llm, {.requests = 1, .tokens = 900}, absl::Now());
//   if (r.ok() && r->admitted()) {
//     (*engine)->Settle(*r, {.requests = 1, .tokens = 312}, absl::Now());  // 588 come back
//   }
//
// Invariant (strictness, per meter and window): the units charged by admissions in any
// interval of length W never exceed the window's limit L, where a settlement's refund counts
// as never charged (it goes back into the sub-bucket it was reserved in) and only overage —
// units a call used beyond its reservation, charged at its end whatever the limits — can go
// past L. A call is admitted only if every window of every meter of its class has room for its
// whole cost and a concurrency slot is free; otherwise it holds nothing. The check is one
// atomic step: Reserve() checks and takes the slot and every window of every meter of the
// class under the lock of the tenant's counters for that class, so a call holds all of them or
// none. Only a sink error undoes an admission (after the lock was given back): that can make
// a concurrent call refuse early (as if the undone call had been admitted and refunded at
// once), never let one past a limit. Early refusal is otherwise at most one sub-bucket (W/60).
//
// Thread safety: every method may be called concurrently from any number of threads. Admit()
// and Reserve() take no table lock for a resident tenant: one lock-free hash lookup (inside an
// epoch guard) and one short critical section under the spin lock of that tenant's counters
// for the class (meters.h: one word on the counters' own cache line; calls of other tenants
// or classes never share it). Settle() takes that lock too, and no engine-wide lock (its sink
// may). The first use of a tenant (and eviction) takes a per-shard mutex; there is no global
// lock. Memory: a tenant and the counters of the class it first used share one allocation
// (hash slot -> tenant block), with each window's history in 4-bit counts that widen only when
// a count outgrows them (sliding_window.h).
//
// Resident tenants (EngineOptions::max_resident_tenants = N > 0): a tenant that is not in
// memory and would make it hold N or more first evicts others, least recently used first,
// approximately: each shard of the tenant table keeps a clock hand, and of the next 8 tenants
// from the hand that may go, the one used longest ago goes (`last_used` is kept to within a
// second). Resident tenants keep the path above; only a first use pays, with a search
// that looks at no more than 1024 tenants and starts in the new tenant's own shard. Eviction is
// exact as EvictIdle's is: with a loader the evicted tenant's usage is in storage (every admission
// is recorded before its EpochGuard ends) and is loaded again on its next use; a copy some thread
// may still be counting into is brought back instead. Never evicted: a tenant an open
// reservation pins and, without a loader, a tenant whose windows still hold a count (forgetting
// it would break the invariant above). Bound: resident_tenants() <= N + T - 1, where T is the
// number of threads bringing a tenant into memory at that moment (the check and the insert are
// not one step), as long as the search finds a tenant that may go. When it finds none (nearly
// every tenant it looks at is pinned: a call in flight for each), a new tenant is still served
// with a loader and the table goes over N, by about the number of pinned tenants; each later
// first use tries again, so the table comes back under N as those calls end. Without a loader
// the new tenant is refused instead, RESOURCE_EXHAUSTED, counting nothing (it would otherwise
// have to forget another tenant's counts or exceed N without bound). Evicted tenants are freed
// by later evictions in their shard (or by EvictIdle()) once no reader can hold them: a few per
// shard wait at any time (more while a thread stays inside a decision, e.g. in a sink write that
// stalls, since no epoch can pass it).
#ifndef ANYAI_QUOTA_ENGINE_H_
#define ANYAI_QUOTA_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "quota/plan.h"

namespace anyai::quota {

class Engine;
class TenantTable;
struct Meters;
struct MeterOutcomes;
struct Tenant;

// Indexes resolved once (Engine::FindPlan / FindClass), so that the hot path compares no
// strings.
struct PlanId {
  int index = -1;
};
struct ClassId {
  int index = -1;
};

// One change to a tenant's usage, as seen by a UsageSink: `cost` units of `meter` added to
// (or, when negative, given back from) one sub-bucket of one class. `bucket` is the meter's
// sub-bucket index: the change belongs to [bucket * w / 60, (bucket + 1) * w / 60)
// microseconds since the Unix epoch, where w is the shortest window of that meter of the class
// (Engine::SubBucketWidth). A reservation adds its estimate; a settlement adds the difference
// (negative: a refund into the sub-bucket where it was reserved; positive: an overage in the
// sub-bucket of the settlement).
struct Admission {
  std::string_view tenant;
  ClassId feature_class;
  int64_t bucket = 0;
  int64_t cost = 1;
  Meter meter = Meter::kRequests;
};

// How much a tenant had charged in one sub-bucket of one meter of one class: what a
// UsageLoader returns to restore a tenant (the sum of every Admission recorded for it).
struct BucketCount {
  ClassId feature_class;
  int64_t bucket = 0;
  int64_t count = 0;
  Meter meter = Meter::kRequests;
};

// Observes every change to usage, after it is made in memory and before the call that made it
// returns: every admission (all its meters in one call), every settlement. Called from the
// deciding thread; must be thread-safe. An error from an admission undoes it in memory and
// makes Reserve()/Admit() return that error; an error from a settlement leaves it settled in
// memory and Settle() returns it: the stored usage then lacks that settlement — a lost refund
// over-counts, a lost overage under-counts by the overage once the tenant is restored from
// storage (after an eviction or a restart).
class UsageSink {
 public:
  virtual ~UsageSink() = default;
  // `changes` is never empty; write it all or nothing.
  virtual absl::Status Record(absl::Span<const Admission> changes) = 0;
};

// Restores a tenant the engine does not hold in memory (first use, or after eviction). Called
// at most once per tenant residency, outside any engine lock; must be thread-safe. Buckets
// older than the longest window may be returned; they are ignored, as are counts <= 0.
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
  // The most tenants held in memory; 0: no limit. At the cap, a tenant's first use (or its
  // return after eviction) first evicts the least recently used of a few candidates with no
  // open reservation (see "Resident tenants" above). Must not be negative.
  int64_t max_resident_tenants = 0;
  // Number of independent shards of the tenant table (rounded up to a power of two).
  int shards = 64;
};

// What a call costs in each meter: its estimate when reserved, what it used when settled.
struct Cost {
  int64_t requests = 1;
  int64_t tokens = 0;
  int64_t micro_usd = 0;

  int64_t of(Meter meter) const;
  int64_t& of(Meter meter);
  friend bool operator==(const Cost&, const Cost&) = default;
};

// What a limit refused, or what a reported figure is about.
enum class LimitKind { kRequests, kTokens, kSpend, kConcurrency };
LimitKind KindOf(Meter meter);
// "requests", "tokens", "spend", "concurrency": the names reports, metrics and errors use.
const char* LimitKindName(LimitKind kind);

// One limit at a decision: a window of a meter, or the concurrency limit (window zero).
struct LimitState {
  LimitKind kind = LimitKind::kRequests;
  absl::Duration window;
  int64_t limit = 0;
  int64_t remaining = 0;  // after this call, if admitted
  absl::Duration reset;   // until the oldest counted unit frees; zero if none (or concurrency)

  friend bool operator==(const LimitState&, const LimitState&) = default;
};

// The tightest window of one meter: the one with the fewest units remaining.
struct MeterState {
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;

  friend bool operator==(const MeterState&, const MeterState&) = default;
};

// The outcome of a decision. `limit`, `remaining` and `reset` describe the tightest request
// window of the class: the one with the fewest requests remaining (after this request, if
// admitted); `tokens` and `spend` the same for those meters when the plan limits them.
// (A decision overwrites every field of a reused Decision: a new field must be reset in
// Engine::Decide too.)
struct Decision {
  bool admitted = false;
  int64_t limit = 0;
  int64_t remaining = 0;
  // Time until the oldest unit counted in that window frees (zero if none is counted).
  absl::Duration reset;
  std::optional<MeterState> tokens;
  std::optional<MeterState> spend;
  // Calls of the class the tenant has in flight (this one included, if admitted), and the
  // plan's limit on them (0: none).
  int64_t in_flight = 0;
  int64_t max_concurrent = 0;
  // Every limit of the class under the plan: request, token and spend windows in the plan's
  // order, then the concurrency limit if there is one.
  absl::InlinedVector<LimitState, 4> limits;
  // Set when refused: the class, the limit that refused (the one that frees last when several
  // are full), its window (zero for concurrency) and limit, what the call asked of it, and how
  // long until the call could be admitted, ignoring other traffic. `never_fits` when the cost
  // alone exceeds that limit: no wait helps (retry_after is then zero).
  ClassId refused_class;
  LimitKind refused_kind = LimitKind::kRequests;
  absl::Duration refused_window;
  int64_t refused_limit = 0;
  int64_t requested = 0;
  absl::Duration retry_after;
  bool never_fits = false;
};

// An admitted call's hold on its tenant's limits: its reserved cost in every meter, counted in
// the sub-buckets of the moment it was admitted, and one in-flight slot of its class. Settle()
// it when the call ends; a reservation destroyed (or Release()d) unsettled frees its slot and
// keeps its whole estimate charged. Returned refused, it holds nothing.
//
// Thread safety: a Reservation is one call's; use it from one thread at a time. Moving it
// moves the hold. It must not outlive its Engine.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation();

  const Decision& decision() const { return decision_; }
  bool admitted() const { return decision_.admitted; }
  // True until settled or released (never for a refused one).
  bool open() const { return tenant_ != nullptr; }
  const Cost& reserved() const { return reserved_; }

 private:
  friend class Engine;

  Engine* engine_ = nullptr;
  Tenant* tenant_ = nullptr;  // pinned while open: never evicted or freed under us
  PlanId plan_;
  ClassId class_;
  Cost reserved_{.requests = 0};
  int64_t stamps_[kMeterCount] = {};  // where each meter's cost was counted
  Decision decision_;
};

// What a settlement changed: units given back to the reservation's sub-buckets, and units
// charged beyond the reservation (the call used more than was reserved: counted now, past the
// limits if need be, so that the next call waits).
struct Settlement {
  Cost refunded{.requests = 0};
  Cost overage{.requests = 0};
};

// Usage of one window, as /check reports it.
struct WindowUsage {
  absl::Duration window;
  int64_t used = 0;      // charged: settled calls, and the reservations of calls in flight
  int64_t reserved = 0;  // of which still reserved by calls in flight
  int64_t limit = 0;
  int64_t remaining = 0;
  absl::Duration reset;  // until the oldest counted unit frees; zero if none
};

struct ClassUsage {
  std::string feature_class;
  std::vector<WindowUsage> windows;        // requests, in the plan's order
  std::vector<WindowUsage> token_windows;  // in the plan's order; empty when not limited
  std::vector<WindowUsage> spend_windows;  // micro-USD
  int64_t in_flight = 0;
  int64_t max_concurrent = 0;  // 0: no limit
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
  // The width of one sub-bucket of the meter's shortest window of the class (its length / 60);
  // zero when no plan gives the class a window of that meter.
  absl::Duration SubBucketWidth(ClassId id, Meter meter = Meter::kRequests) const;
  // The longest window of the meter any plan gives the class; zero when none.
  absl::Duration LongestWindow(ClassId id, Meter meter = Meter::kRequests) const;
  // Whether any plan gives the class a window of the meter (kRequests: always). Only such
  // meters are counted.
  bool HasWindows(ClassId id, Meter meter) const;

  // Reserves `estimate` (each meter's units; requests is usually 1) and one in-flight slot, or
  // refuses, all-or-nothing across every limit of the class (see the invariant above). A
  // refused Reservation holds nothing. Meters the plan does not limit are still counted, so
  // that usage is reported, and never refuse. `now` must come from one clock for all calls; a
  // time earlier than one already seen for the tenant is treated as that later time. Errors:
  // invalid ids or a negative estimate (INVALID_ARGUMENT), or the loader's or sink's error
  // (then nothing is held). A refusal is not an error.
  absl::StatusOr<Reservation> Reserve(std::string_view tenant, PlanId plan, ClassId feature_class,
                                      const Cost& estimate, absl::Time now);
  // The same, into `out`, for a caller that keeps one Reservation per call site: `out` is first
  // released if still open, *before* the new decision (so its slot is free for it; assigning
  // the StatusOr version's result instead decides first and releases after), then holds the new
  // reservation, or a refusal, or (on an error) nothing, its decision() then left as it was.
  // Saves moving the Reservation, with its Decision, out of a StatusOr.
  absl::Status Reserve(std::string_view tenant, PlanId plan, ClassId feature_class,
                       const Cost& estimate, absl::Time now, Reservation& out);
  // Replaces the reservation with what the call used and frees its in-flight slot: units below
  // the estimate return to the sub-buckets they were reserved in (strictness holds), units above
  // it are charged now as overage. Settling with zero of everything refunds the whole call.
  // FAILED_PRECONDITION when `reservation` is not open (refused, already settled or released);
  // INVALID_ARGUMENT for a negative `used`; the sink's error (settled in memory all the same).
  absl::StatusOr<Settlement> Settle(Reservation& reservation, const Cost& used, absl::Time now);
  // Frees the in-flight slot and keeps the whole estimate charged. Idempotent; what the
  // Reservation's destructor does when it was never settled.
  void Release(Reservation& reservation);

  // Admits (counts) or refuses one request, all-or-nothing across the class's limits: Reserve()
  // of one request, settled at once (the in-flight slot is taken and freed). Errors as Reserve.
  absl::StatusOr<Decision> Admit(std::string_view tenant, PlanId plan, ClassId feature_class,
                                 absl::Time now);
  // The same, into `out`, which may be reused from one call to the next (its `limits` keep their
  // storage): on OK every field of `out` is this decision's, none left from an earlier one; on
  // an error its contents are unspecified. Saves copying the Decision into a StatusOr, a tenth
  // of a hot decision's time.
  absl::Status Admit(std::string_view tenant, PlanId plan, ClassId feature_class, absl::Time now,
                     Decision& out);

  // Every class and window of the tenant's plan. Restores the tenant if needed; counts nothing.
  absl::StatusOr<UsageSnapshot> Usage(std::string_view tenant, PlanId plan, absl::Time now);

  // Drops idle tenants (see EngineOptions::idle_timeout) and frees memory retired earlier. A
  // tenant with a call in flight is never dropped.
  // Returns how many tenants were evicted. Call it periodically from one background thread.
  size_t EvictIdle(absl::Time now);
  // Tenants in memory (evicted ones awaiting their memory's reclamation not counted).
  size_t resident_tenants() const;

 private:
  struct Layout;

  Engine(PlanTable plans, EngineOptions options);
  // The resident tenant, restored through the loader on first use, with the Meters of
  // `feature_class` (-1: none) in its own block when it is new. Inside an EpochGuard.
  absl::StatusOr<Tenant*> Resident(std::string_view tenant, int64_t now_us, int feature_class);
  Meters& MetersOf(Tenant& tenant, int feature_class);
  // Whether a tenant may leave memory now: no open reservation and, without a loader, no count
  // in any window (EvictIdle adds its idle test).
  bool Evictable(Tenant& tenant, int64_t now_us) const;
  // Evicts to keep the cap before a tenant of this hash comes into memory; false when the cap
  // is set and nothing could go.
  bool MakeRoom(uint64_t hash, int64_t now_us);
  // Reserve() (`hold` set: the reservation keeps the slot and pins the tenant) or Admit() (null:
  // a slot taken and freed), its figures into `decision`.
  absl::Status Decide(std::string_view tenant, PlanId plan, ClassId feature_class,
                      const Cost& estimate, absl::Time now, Reservation* hold, Decision& decision);
  // The decision's figures from what each meter's windows said.
  void Describe(int plan, int feature_class, const MeterOutcomes& outcome, int64_t in_flight,
                int64_t now_us, Decision& d) const;

  PlanTable plans_;
  EngineOptions options_;
  std::vector<std::string> class_names_;
  std::unique_ptr<Layout> layout_;
  std::unique_ptr<TenantTable> tenants_;
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_ENGINE_H_
