#include "quota/engine.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "quota/epoch.h"
#include "quota/sliding_window.h"
#include "quota/tenant_table.h"

namespace anyai::quota {
namespace {

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

absl::Duration Until(int64_t at_us, int64_t now_us) {
  return at_us > now_us ? absl::Microseconds(at_us - now_us) : absl::ZeroDuration();
}

uint64_t HashOf(std::string_view tenant) { return absl::Hash<std::string_view>{}(tenant); }

}  // namespace

// Per-class geometry, and per plan and class the limit of each of the class's windows.
struct Engine::Layout {
  std::vector<ClassGeometry> geometry;                     // by class
  std::vector<std::vector<std::vector<int64_t>>> limits;   // [plan][class][window], 0 = none
  std::vector<std::vector<std::vector<int>>> plan_window;  // [plan][class][i] -> window index
};

Engine::Engine(PlanTable plans, EngineOptions options)
    : plans_(std::move(plans)),
      options_(options),
      class_names_(plans_.FeatureClasses()),
      layout_(std::make_unique<Layout>()),
      tenants_(std::make_unique<TenantTable>(options.shards)) {
  const int nc = static_cast<int>(class_names_.size());
  layout_->geometry.resize(nc);
  for (int c = 0; c < nc; ++c) {
    std::vector<int64_t> lengths;
    for (const Plan& p : plans_.plans) {
      for (const Window& w : p.Find(class_names_[c])->windows) {
        lengths.push_back(absl::ToInt64Microseconds(w.length));
      }
    }
    std::sort(lengths.begin(), lengths.end());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
    ClassGeometry& g = layout_->geometry[c];
    g.base_us = lengths.front();
    g.window_us = lengths;
    for (int64_t l : lengths) g.ratio.push_back(l / g.base_us);
  }
  for (const Plan& p : plans_.plans) {
    auto& limits = layout_->limits.emplace_back(nc);
    auto& order = layout_->plan_window.emplace_back(nc);
    for (int c = 0; c < nc; ++c) {
      const ClassGeometry& g = layout_->geometry[c];
      limits[c].assign(g.windows(), 0);
      for (const Window& w : p.Find(class_names_[c])->windows) {
        const auto it =
            std::find(g.window_us.begin(), g.window_us.end(), absl::ToInt64Microseconds(w.length));
        const int index = static_cast<int>(it - g.window_us.begin());
        limits[c][index] = w.max_requests;
        order[c].push_back(index);
      }
    }
  }
}

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(PlanTable plans, EngineOptions options) {
  if (absl::Status s = ValidatePlanTable(plans); !s.ok()) return s;
  for (const std::string& c : plans.FeatureClasses()) {
    std::vector<absl::Duration> lengths;
    for (const Plan& p : plans.plans) {
      for (const Window& w : p.Find(c)->windows) {
        if (std::find(lengths.begin(), lengths.end(), w.length) == lengths.end()) {
          lengths.push_back(w.length);
        }
      }
    }
    if (lengths.size() > kMaxWindowsPerClass) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class \"", c, "\": more than ", kMaxWindowsPerClass, " distinct windows across plans"));
    }
  }
  if (options.idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must be positive");
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

absl::Duration Engine::SubBucketWidth(ClassId id) const {
  return absl::Microseconds(layout_->geometry[id.index].base_us) / 60;
}

absl::StatusOr<Tenant*> Engine::Resident(std::string_view tenant, int64_t now_us) {
  const uint64_t hash = HashOf(tenant);
  Tenant* t = tenants_->Find(tenant, hash);
  // Missed: an evicted copy some thread may still be counting into comes back; only when there
  // is none can a load from storage be complete (tenant_table.h).
  if (t == nullptr) t = tenants_->FindOrRevive(tenant, hash);
  if (t == nullptr) {
    auto fresh = std::make_unique<Tenant>(hash, tenant, class_count());
    if (options_.loader != nullptr) {
      absl::StatusOr<std::vector<BucketCount>> rows = options_.loader->Load(tenant);
      if (!rows.ok()) return rows.status();
      absl::flat_hash_map<int, std::vector<std::pair<int64_t, int64_t>>> by_class;
      for (const BucketCount& row : *rows) {
        if (row.feature_class.index < 0 || row.feature_class.index >= class_count()) continue;
        by_class[row.feature_class.index].emplace_back(row.bucket, row.count);
      }
      for (auto& [c, stamps] : by_class) {
        auto windows = std::make_unique<SlidingWindows>(layout_->geometry[c]);
        windows->Restore(stamps);
        fresh->classes[c].store(windows.release(), std::memory_order_relaxed);
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

SlidingWindows& Engine::WindowsOf(Tenant& tenant, int feature_class) {
  std::atomic<SlidingWindows*>& slot = tenant.classes[feature_class];
  SlidingWindows* w = slot.load(std::memory_order_acquire);
  if (w != nullptr) return *w;
  auto fresh = std::make_unique<SlidingWindows>(layout_->geometry[feature_class]);
  if (slot.compare_exchange_strong(w, fresh.get(), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    return *fresh.release();
  }
  return *w;  // another thread published first; ours was never shared
}

absl::StatusOr<Decision> Engine::Admit(std::string_view tenant, PlanId plan, ClassId feature_class,
                                       absl::Time now) {
  if (plan.index < 0 || plan.index >= static_cast<int>(plans_.plans.size()) ||
      feature_class.index < 0 || feature_class.index >= class_count()) {
    return absl::InvalidArgumentError("unknown plan or feature class id");
  }
  const int64_t now_us = ToMicros(now);
  WindowOutcome outcome;  // filled by TryAdmit
  {
    // The guard also covers the sink: until an admission is recorded, the tenant it was counted
    // in cannot be freed, so an eviction meanwhile brings that tenant back rather than
    // restoring a copy that misses the count (tenant_table.h).
    EpochGuard guard;
    absl::StatusOr<Tenant*> t = Resident(tenant, now_us);
    if (!t.ok()) return t.status();
    outcome = WindowsOf(**t, feature_class.index)
                  .TryAdmit(now_us, layout_->limits[plan.index][feature_class.index]);
    if (outcome.admitted && options_.sink != nullptr) {
      absl::Status s = options_.sink->Record(
          Admission{.tenant = tenant, .feature_class = feature_class, .bucket = outcome.stamp});
      if (!s.ok()) return s;
    }
  }
  const ClassGeometry& g = layout_->geometry[feature_class.index];
  const std::vector<int64_t>& limits = layout_->limits[plan.index][feature_class.index];
  Decision d;
  d.admitted = outcome.admitted;
  int tightest = -1;
  for (int w = 0; w < g.windows(); ++w) {
    if (limits[w] == 0) continue;
    const int64_t remaining = std::max<int64_t>(0, limits[w] - outcome.windows[w].used);
    // Fewest remaining; on a tie the longer window, whose reset is the one that matters.
    if (tightest < 0 || remaining <= std::max<int64_t>(0, d.remaining)) {
      tightest = w;
      d.limit = limits[w];
      d.remaining = remaining;
      d.reset = Until(outcome.windows[w].free_at_us, now_us);
    }
  }
  if (!outcome.admitted) {
    int64_t retry_at = 0;
    for (int w = 0; w < g.windows(); ++w) {
      if (outcome.windows[w].retry_at_us > retry_at) {
        retry_at = outcome.windows[w].retry_at_us;
        d.refused_window = absl::Microseconds(g.window_us[w]);
        d.limit = limits[w];
        d.remaining = 0;
        d.reset = Until(outcome.windows[w].free_at_us, now_us);
      }
    }
    d.refused_class = feature_class;
    d.retry_after = Until(retry_at, now_us);
    return d;
  }
  return d;
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
  absl::StatusOr<Tenant*> t = Resident(tenant, now_us);
  if (!t.ok()) return t.status();
  for (const ClassLimits& cl : p.classes) {
    const int c = FindClass(cl.feature_class)->index;
    const std::vector<int64_t>& limits = layout_->limits[plan.index][c];
    WindowOutcome outcome{};
    if (SlidingWindows* w = (*t)->classes[c].load(std::memory_order_acquire)) {
      outcome = w->Read(now_us, limits);
    }
    ClassUsage& usage = snapshot.classes.emplace_back();
    usage.feature_class = cl.feature_class;
    for (int index : layout_->plan_window[plan.index][c]) {
      const WindowFigures& f = outcome.windows[index];
      usage.windows.push_back(
          WindowUsage{.window = absl::Microseconds(layout_->geometry[c].window_us[index]),
                      .used = f.used,
                      .limit = limits[index],
                      .remaining = std::max<int64_t>(0, limits[index] - f.used),
                      .reset = Until(f.free_at_us, now_us)});
    }
  }
  return snapshot;
}

size_t Engine::EvictIdle(absl::Time now) {
  const int64_t now_us = ToMicros(now);
  const int64_t idle_us = absl::ToInt64Microseconds(options_.idle_timeout);
  size_t evicted;
  {
    EpochGuard guard;
    evicted = tenants_->EvictIf([&](Tenant& t) {
      if (now_us - t.last_used_us.load(std::memory_order_relaxed) < idle_us) return false;
      if (options_.loader != nullptr) return true;
      // Without a loader the tenant's counts would be forgotten: keep it until they expire.
      for (int c = 0; c < class_count(); ++c) {
        SlidingWindows* w = t.classes[c].load(std::memory_order_acquire);
        if (w == nullptr) continue;
        const WindowOutcome o = w->Read(now_us, layout_->limits[0][c]);
        for (int i = 0; i < layout_->geometry[c].windows(); ++i) {
          if (o.windows[i].used > 0) return false;
        }
      }
      return true;
    });
  }
  tenants_->Reclaim();
  return evicted;
}

size_t Engine::resident_tenants() const { return tenants_->size(); }

}  // namespace anyai::quota
