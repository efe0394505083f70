#include "quota/engine.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "quota/epoch.h"
#include "quota/meters.h"
#include "quota/sliding_window.h"
#include "quota/spin_lock.h"
#include "quota/tenant_table.h"

namespace anyai::quota {
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

absl::Duration Until(int64_t at_us, int64_t now_us) {
  return at_us > now_us ? absl::Microseconds(at_us - now_us) : absl::ZeroDuration();
}

// Abseil's own string hash (Debian's Abseil would hash a std::string_view through std::hash,
// a slower function for short ids).
uint64_t HashOf(std::string_view tenant) {
  return absl::Hash<absl::string_view>{}(absl::string_view(tenant.data(), tenant.size()));
}

int Index(Meter m) { return static_cast<int>(m); }

// How long a call refused for want of a concurrency slot is told to wait: calls end at any
// time, so there is no exact figure; a second is what a client should back off by.
constexpr absl::Duration kConcurrencyRetry = absl::Seconds(1);

}  // namespace

int64_t Cost::of(Meter meter) const {
  switch (meter) {
    case Meter::kRequests:
      return requests;
    case Meter::kTokens:
      return tokens;
    case Meter::kSpend:
      return micro_usd;
  }
  return 0;
}

int64_t& Cost::of(Meter meter) {
  switch (meter) {
    case Meter::kTokens:
      return tokens;
    case Meter::kSpend:
      return micro_usd;
    case Meter::kRequests:
      break;
  }
  return requests;
}

LimitKind KindOf(Meter meter) {
  switch (meter) {
    case Meter::kTokens:
      return LimitKind::kTokens;
    case Meter::kSpend:
      return LimitKind::kSpend;
    case Meter::kRequests:
      break;
  }
  return LimitKind::kRequests;
}

const char* LimitKindName(LimitKind kind) {
  switch (kind) {
    case LimitKind::kTokens:
      return "tokens";
    case LimitKind::kSpend:
      return "spend";
    case LimitKind::kConcurrency:
      return "concurrency";
    case LimitKind::kRequests:
      break;
  }
  return "requests";
}

// What each meter's counter said at a decision; `tried` is false for a meter the class does
// not count.
struct MeterOutcomes {
  WindowOutcome meter[kMeterCount];
  bool tried[kMeterCount] = {false, false, false};
};

// What a plan gives a class, flat, so that a decision reads it from one place.
struct ClassPlan {
  struct MeterPlan {
    int64_t limits[kMaxWindowsPerClass] = {};    // [window], 0 = none
    absl::Duration window[kMaxWindowsPerClass];  // [window], its length
    int order[kMaxWindowsPerClass] = {};         // the plan's windows, in its order
    int ordered = 0;                             // how many
  };
  MeterPlan meters[kMeterCount];
  int64_t max_concurrent = 0;  // 0 = none
  int limit_count = 0;         // entries of Decision::limits: every ordered window, concurrency
};

// Per class and meter the geometry and the Meters block's layout, and per plan and class what
// the plan gives it.
struct Engine::Layout {
  std::vector<std::array<ClassGeometry, kMeterCount>> geometry;  // [class][meter]
  std::vector<MetersLayout> meters;                              // [class]
  std::vector<ClassPlan> plans;                                  // [plan * classes + class]
  int classes = 0;

  const ClassPlan& at(int plan, int feature_class) const {
    return plans[plan * classes + feature_class];
  }
  absl::Span<const int64_t> limits(int plan, int feature_class, int meter) const {
    return absl::MakeConstSpan(at(plan, feature_class).meters[meter].limits,
                               geometry[feature_class][meter].windows());
  }
};

Reservation::Reservation(Reservation&& other) noexcept { *this = std::move(other); }

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this == &other) return *this;
  if (open()) engine_->Release(*this);
  engine_ = other.engine_;
  tenant_ = std::exchange(other.tenant_, nullptr);
  plan_ = other.plan_;
  class_ = other.class_;
  reserved_ = other.reserved_;
  std::copy(std::begin(other.stamps_), std::end(other.stamps_), std::begin(stamps_));
  decision_ = std::move(other.decision_);
  return *this;
}

Reservation::~Reservation() {
  if (open()) engine_->Release(*this);
}

Engine::Engine(PlanTable plans, EngineOptions options)
    : plans_(std::move(plans)),
      options_(options),
      class_names_(plans_.FeatureClasses()),
      layout_(std::make_unique<Layout>()),
      tenants_(std::make_unique<TenantTable>(options.shards)) {
  const int nc = static_cast<int>(class_names_.size());
  layout_->classes = nc;
  layout_->geometry.resize(nc);
  for (int c = 0; c < nc; ++c) {
    for (Meter meter : kMeters) {
      std::vector<int64_t> lengths;
      for (const Plan& p : plans_.plans) {
        for (const Window& w : p.Find(class_names_[c])->WindowsOf(meter)) {
          lengths.push_back(absl::ToInt64Microseconds(w.length));
        }
      }
      std::sort(lengths.begin(), lengths.end());
      lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
      ClassGeometry& g = layout_->geometry[c][Index(meter)];
      if (lengths.empty()) continue;
      g.base_us = lengths.front();
      g.window_us = lengths;
      for (int64_t l : lengths) g.ratio.push_back(l / g.base_us);
      g.Prepare();
    }
    layout_->meters.push_back(MetersLayout::For(layout_->geometry[c]));
  }
  for (const Plan& p : plans_.plans) {
    for (int c = 0; c < nc; ++c) {
      ClassPlan& cp = layout_->plans.emplace_back();
      const ClassLimits& cl = *p.Find(class_names_[c]);
      cp.max_concurrent = cl.max_concurrent;
      cp.limit_count = cl.max_concurrent > 0 ? 1 : 0;
      for (Meter meter : kMeters) {
        const int m = Index(meter);
        const ClassGeometry& g = layout_->geometry[c][m];
        ClassPlan::MeterPlan& mp = cp.meters[m];
        for (int w = 0; w < g.windows(); ++w) mp.window[w] = absl::Microseconds(g.window_us[w]);
        for (const Window& w : cl.WindowsOf(meter)) {
          const auto it = std::find(g.window_us.begin(), g.window_us.end(),
                                    absl::ToInt64Microseconds(w.length));
          const int index = static_cast<int>(it - g.window_us.begin());
          mp.limits[index] = w.limit;
          mp.order[mp.ordered++] = index;
          ++cp.limit_count;
        }
      }
    }
  }
}

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(PlanTable plans, EngineOptions options) {
  if (absl::Status s = ValidatePlanTable(plans); !s.ok()) return s;
  for (const std::string& c : plans.FeatureClasses()) {
    for (Meter meter : kMeters) {
      std::vector<absl::Duration> lengths;
      for (const Plan& p : plans.plans) {
        for (const Window& w : p.Find(c)->WindowsOf(meter)) {
          if (std::find(lengths.begin(), lengths.end(), w.length) == lengths.end()) {
            lengths.push_back(w.length);
          }
        }
      }
      if (lengths.size() > kMaxWindowsPerClass) {
        return absl::InvalidArgumentError(absl::StrCat("class \"", c, "\": more than ",
                                                       kMaxWindowsPerClass, " distinct ",
                                                       MeterName(meter), " windows across plans"));
      }
    }
  }
  if (options.idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must be positive");
  }
  if (options.max_resident_tenants < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_resident_tenants must be 0 (no limit) or "
                     "positive, got ",
                     options.max_resident_tenants));
  }
  return std::unique_ptr<Engine>(new Engine(std::move(plans), options));
}

absl::StatusOr<PlanId> Engine::FindPlan(std::string_view name) const {
  for (size_t i = 0; i < plans_.plans.size(); ++i) {
    if (plans_.plans[i].name == name) return PlanId{static_cast<int>(i)};
  }
  return absl::NotFoundError(absl::StrCat("no plan named \"", std::string(name), "\""));
}

absl::StatusOr<ClassId> Engine::FindClass(std::string_view name) const {
  for (size_t i = 0; i < class_names_.size(); ++i) {
    if (class_names_[i] == name) return ClassId{static_cast<int>(i)};
  }
  return absl::NotFoundError(absl::StrCat("no feature class named \"", std::string(name), "\""));
}

absl::Duration Engine::SubBucketWidth(ClassId id, Meter meter) const {
  return absl::Microseconds(layout_->geometry[id.index][Index(meter)].base_us) / 60;
}

absl::Duration Engine::LongestWindow(ClassId id, Meter meter) const {
  const ClassGeometry& g = layout_->geometry[id.index][Index(meter)];
  return g.window_us.empty() ? absl::ZeroDuration() : absl::Microseconds(g.window_us.back());
}

bool Engine::HasWindows(ClassId id, Meter meter) const {
  return layout_->geometry[id.index][Index(meter)].windows() > 0;
}

absl::StatusOr<Tenant*> Engine::Resident(std::string_view tenant, int64_t now_us,
                                         int feature_class) {
  const uint64_t hash = HashOf(tenant);
  Tenant* t = tenants_->Find(tenant, hash);
  // Missed: an evicted copy some thread may still be counting into comes back; only when there
  // is none can a load from storage be complete (tenant_table.h).
  if (t == nullptr) {
    const bool room = MakeRoom(hash, now_us);
    t = tenants_->FindOrRevive(tenant, hash);
    if (t == nullptr && !room && options_.loader == nullptr) {
      return absl::ResourceExhaustedError(
          "too many tenants in memory, and every one still counts usage that cannot be "
          "forgotten; retry later");
    }
  }
  if (t == nullptr) {
    std::unique_ptr<Tenant> fresh =
        Tenant::Create(hash, tenant, feature_class,
                       feature_class >= 0 ? &layout_->meters[feature_class] : nullptr);
    if (options_.loader != nullptr) {
      absl::StatusOr<std::vector<BucketCount>> rows = options_.loader->Load(tenant);
      if (!rows.ok()) return rows.status();
      // [class][meter] -> (stamp, count)
      absl::flat_hash_map<std::pair<int, int>, std::vector<std::pair<int64_t, int64_t>>> series;
      for (const BucketCount& row : *rows) {
        const int m = Index(row.meter);
        if (row.feature_class.index < 0 || row.feature_class.index >= class_count() || m < 0 ||
            m >= kMeterCount || layout_->geometry[row.feature_class.index][m].windows() == 0) {
          continue;
        }
        series[{row.feature_class.index, m}].emplace_back(row.bucket, row.count);
      }
      for (auto& [key, stamps] : series) {
        const auto [c, m] = key;
        // Not yet shared: no other thread can take the lock, nor see the counts.
        MetersOf(*fresh, c).meter(m)->Restore(layout_->geometry[c][m], stamps);
      }
    }
    fresh->last_used_us.store(now_us, std::memory_order_relaxed);
    t = tenants_->Insert(std::move(fresh));
  }
  // Touch at most once a second: a store per decision would bounce the line between cores.
  if (now_us - t->last_used_us.load(std::memory_order_relaxed) > 1'000'000) {
    t->last_used_us.store(now_us, std::memory_order_relaxed);
  }
  return t;
}

Meters& Engine::MetersOf(Tenant& tenant, int feature_class) {
  if (Meters* m = tenant.Find(feature_class)) return *m;
  return tenant.AddMeters(feature_class, layout_->meters[feature_class]);
}

void Engine::Describe(int plan, int feature_class, const MeterOutcomes& outcome, int64_t in_flight,
                      int64_t now_us, Decision& d) const {
  const ClassPlan& cp = layout_->at(plan, feature_class);
  // Sized once and filled in place (growing it entry by entry, or copying temporaries in,
  // showed up in profiles).
  d.limits.resize(cp.limit_count);
  LimitState* l = d.limits.data();
  for (Meter meter : kMeters) {
    const int m = Index(meter);
    if (!outcome.tried[m]) continue;
    const WindowOutcome& o = outcome.meter[m];
    const ClassPlan::MeterPlan& mp = cp.meters[m];
    if (mp.ordered == 0) continue;
    // The tightest so far, kept in locals: reading it back from the entry just written (a
    // 16-byte load over two narrower stores) stalled on store-to-load forwarding in profiles.
    MeterState state;
    for (int i = 0; i < mp.ordered; ++i, ++l) {
      const int w = mp.order[i];
      const int64_t remaining = std::max<int64_t>(0, mp.limits[w] - o.windows[w].used);
      const absl::Duration reset = Until(o.windows[w].free_at_us, now_us);
      *l = LimitState{.kind = KindOf(meter),
                      .window = mp.window[w],
                      .limit = mp.limits[w],
                      .remaining = remaining,
                      .reset = reset};
      // Fewest remaining; on a tie the later in the plan's order (the longer window, as plans
      // list them), whose reset is the one that matters.
      if (i == 0 || remaining <= state.remaining) {
        state = MeterState{.limit = mp.limits[w], .remaining = remaining, .reset = reset};
      }
    }
    if (meter == Meter::kRequests) {
      d.limit = state.limit;
      d.remaining = state.remaining;
      d.reset = state.reset;
    } else if (meter == Meter::kTokens) {
      d.tokens = state;
    } else {
      d.spend = state;
    }
  }
  d.in_flight = in_flight;
  d.max_concurrent = cp.max_concurrent;
  if (d.max_concurrent > 0) {
    *l = LimitState{.kind = LimitKind::kConcurrency,
                    .window = absl::ZeroDuration(),
                    .limit = d.max_concurrent,
                    .remaining = std::max<int64_t>(0, d.max_concurrent - in_flight),
                    .reset = absl::ZeroDuration()};
  }
}

absl::StatusOr<Reservation> Engine::Reserve(std::string_view tenant, PlanId plan,
                                            ClassId feature_class, const Cost& estimate,
                                            absl::Time now) {
  Reservation r;
  if (absl::Status s = Reserve(tenant, plan, feature_class, estimate, now, r); !s.ok()) return s;
  return r;
}

absl::Status Engine::Reserve(std::string_view tenant, PlanId plan, ClassId feature_class,
                             const Cost& estimate, absl::Time now, Reservation& out) {
  if (out.open()) out.engine_->Release(out);
  // What a refused (or failed) reservation reports: nothing held. Decide fills the rest when
  // it admits.
  out.engine_ = nullptr;
  out.plan_ = {};
  out.class_ = {};
  out.reserved_ = Cost{.requests = 0};
  std::fill(std::begin(out.stamps_), std::end(out.stamps_), 0);
  return Decide(tenant, plan, feature_class, estimate, now, &out, out.decision_);
}

absl::StatusOr<Decision> Engine::Admit(std::string_view tenant, PlanId plan, ClassId feature_class,
                                       absl::Time now) {
  // Default-initialized, not value-initialized (`StatusOr(in_place)` would zero all of it
  // first, a third of a hot decision's time).
  Decision d;
  if (absl::Status s = Admit(tenant, plan, feature_class, now, d); !s.ok()) return s;
  return d;
}

absl::Status Engine::Admit(std::string_view tenant, PlanId plan, ClassId feature_class,
                           absl::Time now, Decision& out) {
  return Decide(tenant, plan, feature_class, Cost{}, now, nullptr, out);
}

absl::Status Engine::Decide(std::string_view tenant, PlanId plan, ClassId feature_class,
                            const Cost& estimate, absl::Time now, Reservation* hold, Decision& d) {
  if (plan.index < 0 || plan.index >= static_cast<int>(plans_.plans.size()) ||
      feature_class.index < 0 || feature_class.index >= class_count()) {
    return absl::InvalidArgumentError("unknown plan or feature class id");
  }
  // Admit's cost (one request) is valid by construction.
  for (Meter meter : kMeters) {
    if (hold == nullptr) break;
    const int64_t k = estimate.of(meter);
    const int64_t most = meter == Meter::kRequests ? kMaxRequestsPerWindow : kMaxCostPerWindow;
    if (k < 0 || k > most) {
      return absl::InvalidArgumentError(
          absl::StrCat("a cost of ", k, " ", MeterName(meter), " is outside [0, ", most, "]"));
    }
  }
  const int c = feature_class.index;
  const int64_t now_us = ToMicros(now);
  const ClassPlan& cp = layout_->at(plan.index, c);
  const std::array<ClassGeometry, kMeterCount>& geometry = layout_->geometry[c];
  const int64_t max_concurrent = cp.max_concurrent;
  const int64_t cost[kMeterCount] = {estimate.requests, estimate.tokens, estimate.micro_usd};
  MeterOutcomes outcome;
  int64_t in_flight = 0;
  LimitKind refused_by = LimitKind::kRequests;
  bool refused = false;
  {
    // The guard also covers the sink: until an admission is recorded, the tenant it was counted
    // in cannot be freed, so an eviction meanwhile brings that tenant back rather than
    // restoring a copy that misses the count (tenant_table.h).
    EpochGuard guard;
    absl::StatusOr<Tenant*> t = Resident(tenant, now_us, c);
    if (!t.ok()) return t.status();
    Meters& meters = MetersOf(**t, c);
    int64_t stamps[kMeterCount] = {};
    Cost taken{.requests = 0};
    {
      // Every limit of the class at once: the slot and every window of every meter are checked
      // and taken under the class's lock, so a call either holds all of them or none.
      SpinLockHolder lock(&meters.lock);
      in_flight = meters.in_flight;
      if (max_concurrent > 0 && in_flight >= max_concurrent) {
        refused = true;
        refused_by = LimitKind::kConcurrency;
      }
      for (Meter meter : kMeters) {
        const int m = Index(meter);
        MeterWindows* w = meters.meter(m);
        if (w == nullptr) continue;  // the class does not count this meter
        stamps[m] = w->Advance(geometry[m], now_us);
        if (!refused && !w->Fits(layout_->limits(plan.index, c, m), cost[m])) {
          refused = true;
          refused_by = KindOf(meter);
        }
      }
      for (Meter meter : kMeters) {
        const int m = Index(meter);
        MeterWindows* w = meters.meter(m);
        if (w == nullptr) continue;
        const int64_t k = cost[m];
        if (!refused) {
          w->Take(geometry[m], k, outcome.meter[m]);
          taken.of(meter) = k;
          if (hold != nullptr) w->reserved += k;
        } else {
          // Figures only, for the refusal's report (with when each window has room).
          w->Figures(geometry[m], layout_->limits(plan.index, c, m), k, /*refused=*/true,
                     outcome.meter[m]);
        }
        outcome.tried[m] = true;
      }
      if (!refused) {
        ++in_flight;  // Admit: a slot taken and freed at once
        if (hold != nullptr) meters.in_flight = static_cast<int32_t>(in_flight);
      }
    }
    if (!refused) {
      if (options_.sink != nullptr) {
        Admission changes[kMeterCount];
        int n = 0;
        for (Meter meter : kMeters) {
          if (taken.of(meter) == 0) continue;
          changes[n++] = Admission{.tenant = tenant,
                                   .feature_class = feature_class,
                                   .bucket = stamps[Index(meter)],
                                   .cost = taken.of(meter),
                                   .meter = meter};
        }
        if (n > 0) {
          if (absl::Status s = options_.sink->Record(absl::MakeConstSpan(changes, n)); !s.ok()) {
            // Not recorded, so not charged: nothing was admitted.
            SpinLockHolder lock(&meters.lock);
            for (Meter meter : kMeters) {
              const int m = Index(meter);
              MeterWindows* w = meters.meter(m);
              if (w == nullptr) continue;
              w->Subtract(geometry[m], stamps[m], taken.of(meter));
              if (hold != nullptr) w->reserved -= taken.of(meter);
            }
            if (hold != nullptr) --meters.in_flight;
            return s;
          }
        }
      }
      if (hold != nullptr) {
        (*t)->pins.fetch_add(1, std::memory_order_acq_rel);
        Reservation& r = *hold;
        r.engine_ = this;
        r.tenant_ = *t;
        r.plan_ = plan;
        r.class_ = feature_class;
        r.reserved_ = taken;
        std::copy(std::begin(stamps), std::end(stamps), std::begin(r.stamps_));
      }
    }
  }
  // `d` may be a reused one (Admit(..., Decision&)): every field but those Describe sets is
  // reset here.
  d.admitted = !refused;
  d.limit = 0;
  d.remaining = 0;
  d.reset = absl::ZeroDuration();
  d.tokens.reset();
  d.spend.reset();
  d.refused_class = ClassId{};
  d.refused_kind = LimitKind::kRequests;
  d.refused_window = absl::ZeroDuration();
  d.refused_limit = 0;
  d.requested = 0;
  d.retry_after = absl::ZeroDuration();
  d.never_fits = false;
  Describe(plan.index, c, outcome, in_flight, now_us, d);
  if (refused) {
    d.refused_class = feature_class;
    d.refused_kind = refused_by;
    // The wait is the longest of every limit that cannot take the call now, the refusing
    // meter's and those of the meters after it: waiting only for the first would be refused
    // again by the next. A window the call can never fit wins.
    int64_t retry_at = 0;
    for (Meter meter : kMeters) {
      const int m = Index(meter);
      if (!outcome.tried[m]) continue;
      const ClassGeometry& g = geometry[m];
      const ClassPlan::MeterPlan& mp = cp.meters[m];
      const WindowOutcome& o = outcome.meter[m];
      for (int w = 0; w < g.windows(); ++w) {
        const int64_t at = o.windows[w].retry_at_us;
        if (at <= retry_at || d.never_fits) continue;
        retry_at = at;
        d.never_fits = at == kNever;
        if (refused_by == LimitKind::kConcurrency) continue;  // concurrency stays the name
        d.refused_kind = KindOf(meter);
        d.refused_window = absl::Microseconds(g.window_us[w]);
        d.refused_limit = mp.limits[w];
        d.requested = estimate.of(meter);
        if (meter == Meter::kRequests) {
          d.limit = mp.limits[w];
          d.remaining = 0;
          d.reset = Until(o.windows[w].free_at_us, now_us);
        }
      }
    }
    if (refused_by == LimitKind::kConcurrency) {
      d.refused_limit = max_concurrent;
      d.requested = 1;
      d.never_fits = false;
      d.retry_after = std::max(kConcurrencyRetry,
                               retry_at == kNever ? kConcurrencyRetry : Until(retry_at, now_us));
      return absl::OkStatus();
    }
    d.retry_after = d.never_fits ? absl::ZeroDuration() : Until(retry_at, now_us);
  }
  return absl::OkStatus();
}

absl::StatusOr<Settlement> Engine::Settle(Reservation& reservation, const Cost& used,
                                          absl::Time now) {
  if (!reservation.open()) {
    return absl::FailedPreconditionError("the reservation is not open: refused or already settled");
  }
  for (Meter meter : kMeters) {
    if (used.of(meter) < 0 || used.of(meter) > kMaxCostPerWindow) {
      return absl::InvalidArgumentError(
          absl::StrCat("a usage of ", used.of(meter), " ", MeterName(meter), " is out of range"));
    }
  }
  const int c = reservation.class_.index;
  const int64_t now_us = ToMicros(now);
  const std::array<ClassGeometry, kMeterCount>& geometry = layout_->geometry[c];
  Meters& meters = *reservation.tenant_->Find(c);
  Settlement out;
  Admission changes[kMeterCount];
  int n = 0;
  {
    SpinLockHolder lock(&meters.lock);
    for (Meter meter : kMeters) {
      const int m = Index(meter);
      MeterWindows* w = meters.meter(m);
      if (w == nullptr) continue;  // not counted
      const int64_t reserved = reservation.reserved_.of(meter);
      const int64_t u = used.of(meter);
      if (u < reserved) {
        w->Subtract(geometry[m], reservation.stamps_[m], reserved - u);
        out.refunded.of(meter) = reserved - u;
        changes[n++] = Admission{.tenant = reservation.tenant_->id,
                                 .feature_class = reservation.class_,
                                 .bucket = reservation.stamps_[m],
                                 .cost = u - reserved,
                                 .meter = meter};
      } else if (u > reserved) {
        const int64_t stamp = w->Advance(geometry[m], now_us);
        w->Add(geometry[m], u - reserved);
        out.overage.of(meter) = u - reserved;
        changes[n++] = Admission{.tenant = reservation.tenant_->id,
                                 .feature_class = reservation.class_,
                                 .bucket = stamp,
                                 .cost = u - reserved,
                                 .meter = meter};
      }
    }
  }
  absl::Status recorded = absl::OkStatus();
  // Recorded while the tenant is still pinned: an overage must reach storage before an
  // eviction could restore a copy without it.
  if (n > 0 && options_.sink != nullptr) {
    recorded = options_.sink->Record(absl::MakeConstSpan(changes, n));
  }
  Release(reservation);
  if (!recorded.ok()) return recorded;
  return out;
}

void Engine::Release(Reservation& reservation) {
  Tenant* t = reservation.tenant_;
  if (t == nullptr) return;
  Meters& meters = *t->Find(reservation.class_.index);
  {
    SpinLockHolder lock(&meters.lock);
    for (Meter meter : kMeters) {
      if (MeterWindows* w = meters.meter(Index(meter)))
        w->reserved -= reservation.reserved_.of(meter);
    }
    --meters.in_flight;
  }
  reservation.tenant_ = nullptr;
  t->pins.fetch_sub(1, std::memory_order_acq_rel);
}

absl::StatusOr<UsageSnapshot> Engine::Usage(std::string_view tenant, PlanId plan, absl::Time now) {
  if (plan.index < 0 || plan.index >= static_cast<int>(plans_.plans.size())) {
    return absl::InvalidArgumentError("unknown plan id");
  }
  const int64_t now_us = ToMicros(now);
  const Plan& p = plans_.plans[plan.index];
  UsageSnapshot snapshot;
  snapshot.plan = p.name;
  EpochGuard guard;
  absl::StatusOr<Tenant*> t = Resident(tenant, now_us, /*feature_class=*/-1);
  if (!t.ok()) return t.status();
  for (const ClassLimits& cl : p.classes) {
    const int c = FindClass(cl.feature_class)->index;
    const ClassPlan& cp = layout_->at(plan.index, c);
    Meters* meters = (*t)->Find(c);
    ClassUsage& usage = snapshot.classes.emplace_back();
    usage.feature_class = cl.feature_class;
    usage.max_concurrent = cp.max_concurrent;
    WindowOutcome outcomes[kMeterCount] = {};
    int64_t reserved[kMeterCount] = {};
    if (meters != nullptr) {
      SpinLockHolder lock(&meters->lock);
      usage.in_flight = meters->in_flight;
      for (int m = 0; m < kMeterCount; ++m) {
        MeterWindows* w = meters->meter(m);
        if (w == nullptr) continue;
        w->Advance(layout_->geometry[c][m], now_us);
        w->Figures(layout_->geometry[c][m], layout_->limits(plan.index, c, m), 1,
                   /*refused=*/false, outcomes[m]);
        reserved[m] = w->reserved;
      }
    }
    for (Meter meter : kMeters) {
      const int m = Index(meter);
      const ClassPlan::MeterPlan& mp = cp.meters[m];
      std::vector<WindowUsage>& out = meter == Meter::kRequests ? usage.windows
                                      : meter == Meter::kTokens ? usage.token_windows
                                                                : usage.spend_windows;
      for (int i = 0; i < mp.ordered; ++i) {
        const int index = mp.order[i];
        const WindowFigures& f = outcomes[m].windows[index];
        out.push_back(
            WindowUsage{.window = absl::Microseconds(layout_->geometry[c][m].window_us[index]),
                        .used = f.used,
                        .reserved = std::clamp<int64_t>(reserved[m], 0, f.used),
                        .limit = mp.limits[index],
                        .remaining = std::max<int64_t>(0, mp.limits[index] - f.used),
                        .reset = Until(f.free_at_us, now_us)});
      }
    }
  }
  return snapshot;
}

bool Engine::Evictable(Tenant& t, int64_t now_us) const {
  if (t.pins.load(std::memory_order_acquire) > 0) return false;  // a call in flight
  if (options_.loader != nullptr) return true;
  // Without a loader the tenant's counts would be forgotten: keep it until they expire.
  for (int c = 0; c < class_count(); ++c) {
    Meters* meters = t.Find(c);
    if (meters == nullptr) continue;
    SpinLockHolder lock(&meters->lock);
    for (int m = 0; m < kMeterCount; ++m) {
      MeterWindows* w = meters->meter(m);
      if (w == nullptr) continue;
      w->Advance(layout_->geometry[c][m], now_us);
      if (!w->Empty()) return false;
    }
  }
  return true;
}

bool Engine::MakeRoom(uint64_t hash, int64_t now_us) {
  // Tenants looked at, at most, for one first use: a bounded cost when nothing may go.
  constexpr size_t kSearchBudget = 1024;
  const int64_t cap = options_.max_resident_tenants;
  if (cap <= 0 || tenants_->size() < static_cast<size_t>(cap)) return true;
  return tenants_->MakeRoom(static_cast<size_t>(cap), hash, kSearchBudget,
                            [&](Tenant& t) { return Evictable(t, now_us); });
}

size_t Engine::EvictIdle(absl::Time now) {
  const int64_t now_us = ToMicros(now);
  const int64_t idle_us = absl::ToInt64Microseconds(options_.idle_timeout);
  size_t evicted;
  {
    EpochGuard guard;
    evicted = tenants_->EvictIf([&](Tenant& t) {
      if (now_us - t.last_used_us.load(std::memory_order_relaxed) < idle_us) return false;
      return Evictable(t, now_us);
    });
  }
  tenants_->Reclaim();
  return evicted;
}

size_t Engine::resident_tenants() const { return tenants_->size(); }

}  // namespace anyai::quota
