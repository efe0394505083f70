#include "server/metrics/metrics.h"

#include <dirent.h>
#include <prometheus/collectable.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace anyai::server {
namespace {

const char* TransportName(Transport t) { return t == Transport::kGrpc ? "grpc" : "http"; }

// Request latency: 100 µs to 30 s (chat over an upstream takes seconds).
prometheus::Histogram::BucketBoundaries RequestBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
}

// Admit() latency, storage write included: 1 µs to 100 ms.
prometheus::Histogram::BucketBoundaries DecisionBuckets() {
  return {0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001,
          0.00025,  0.0005,    0.001,    0.0025,  0.005,    0.01,    0.1};
}

// "1m", "1h", "24h": the window label, from the window's length.
std::string WindowLabel(absl::Duration d) {
  if (d % absl::Hours(1) == absl::ZeroDuration()) return absl::StrCat(d / absl::Hours(1), "h");
  if (d % absl::Minutes(1) == absl::ZeroDuration()) return absl::StrCat(d / absl::Minutes(1), "m");
  return absl::StrCat(absl::ToDoubleSeconds(d), "s");
}

// The `limit` label of a refusal: what kind of limit refused.
prometheus::ClientMetric Value(double v, prometheus::MetricType type,
                               std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

struct ProcessStats {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
};

ProcessStats ReadProcessStats() {
  ProcessStats p;
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the command (which may contain spaces) start after the last ')'.
  const size_t close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; rest >> s;) f.push_back(s);
    // f[0] is field 3 (state): utime 14, stime 15, starttime 22, vsize 23, rss 24.
    if (f.size() > 21) {
      p.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      p.virtual_bytes = std::stod(f[20]);
      p.resident_bytes = std::stod(f[21]) * page;
      std::ifstream uptime_stat("/proc/stat");
      for (std::string l; std::getline(uptime_stat, l);) {
        if (l.rfind("btime ", 0) == 0) {
          p.start_time_seconds = std::stod(l.substr(6)) + std::stod(f[19]) / ticks;
        }
      }
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') p.open_fds += 1;
    }
    closedir(d);
    p.open_fds -= 1;  // the directory stream itself
  }
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) p.max_fds = static_cast<double>(limit.rlim_cur);
  return p;
}

}  // namespace

// The figures read at scrape time.
class Metrics::ScrapeCollector : public prometheus::Collectable {
 public:
  explicit ScrapeCollector(MetricsSources sources) : sources_(std::move(sources)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    if (sources_.engine != nullptr) {
      auto f = Family("anyai_tenants_resident",
                      "Tenants (API keys and anonymous IPs) whose quota state is in memory.",
                      MetricType::Gauge);
      f.metric.push_back(
          Value(static_cast<double>(sources_.engine->resident_tenants()), MetricType::Gauge));
      out.push_back(std::move(f));
    }
    if (!sources_.storage.empty()) {
      auto writes = Family("anyai_storage_writes_total",
                           "RocksDB writes acknowledged or failed, by store.", MetricType::Counter);
      auto calls = Family("anyai_storage_write_calls_total",
                          "Calls whose changes RocksDB writes carried, by store (group commit: "
                          "over anyai_storage_writes_total, calls per write).",
                          MetricType::Counter);
      auto errors = Family("anyai_storage_write_errors_total",
                           "RocksDB writes that failed, by store.", MetricType::Counter);
      auto backlog =
          Family("anyai_storage_writes_in_flight",
                 "Calls waiting for their RocksDB write to be acknowledged (the backlog), by "
                 "store.",
                 MetricType::Gauge);
      auto latency =
          Family("anyai_storage_write_seconds",
                 "Time from the start of a RocksDB write to its acknowledgement, by store.",
                 MetricType::Summary);
      for (const auto& [name, read] : sources_.storage) {
        const storage::WriteStats s = read();
        std::vector<prometheus::ClientMetric::Label> labels = {{"store", name}};
        writes.metric.push_back(Value(static_cast<double>(s.writes), MetricType::Counter, labels));
        calls.metric.push_back(Value(static_cast<double>(s.calls), MetricType::Counter, labels));
        errors.metric.push_back(
            Value(static_cast<double>(s.write_errors), MetricType::Counter, labels));
        backlog.metric.push_back(
            Value(static_cast<double>(s.in_flight), MetricType::Gauge, labels));
        prometheus::ClientMetric m;
        m.label = labels;
        m.summary.sample_count = s.writes;
        m.summary.sample_sum = absl::ToDoubleSeconds(s.total_latency);
        latency.metric.push_back(std::move(m));
      }
      out.push_back(std::move(writes));
      out.push_back(std::move(calls));
      out.push_back(std::move(errors));
      out.push_back(std::move(backlog));
      out.push_back(std::move(latency));
    }
    const ProcessStats p = ReadProcessStats();
    auto add = [&](const char* name, const char* help, MetricType type, double v) {
      auto f = Family(name, help, type);
      f.metric.push_back(Value(v, type));
      out.push_back(std::move(f));
    };
    add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
        MetricType::Counter, p.cpu_seconds);
    add("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
        p.resident_bytes);
    add("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
        p.virtual_bytes);
    add("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, p.open_fds);
    add("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
        p.max_fds);
    add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge, p.start_time_seconds);
    auto build =
        Family("anyai_build_info", "Always 1; the labels say which build of anyai-server this is.",
               MetricType::Gauge);
    build.metric.push_back(
        Value(1, MetricType::Gauge, {{"version", ANYAI_VERSION}, {"compiler", __VERSION__}}));
    out.push_back(std::move(build));
    return out;
  }

 private:
  const MetricsSources sources_;
};

Metrics::~Metrics() = default;

std::unique_ptr<Metrics> Metrics::Create(const quota::Engine& engine, MetricsSources sources) {
  std::unique_ptr<Metrics> m(new Metrics);
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->engine_ = &engine;
  auto& requests = prometheus::BuildCounter()
                       .Name("anyai_requests_total")
                       .Help(
                           "Requests answered, by endpoint, transport (grpc, http) and HTTP "
                           "status code (gRPC codes mapped to their HTTP equivalents).")
                       .Register(*m->registry_);
  auto& seconds = prometheus::BuildHistogram()
                      .Name("anyai_request_duration_seconds")
                      .Help(
                          "Time from a request's arrival to its answer, by endpoint and "
                          "transport (streams: to their last chunk).")
                      .Register(*m->registry_);
  for (int e = 0; e < kEndpointCount; ++e) {
    for (Transport t : {Transport::kGrpc, Transport::kHttp}) {
      const std::string endpoint = EndpointName(static_cast<Endpoint>(e));
      for (int code : kCodes) {
        m->requests_.push_back(&requests.Add({{"endpoint", endpoint},
                                              {"transport", TransportName(t)},
                                              {"code", absl::StrCat(code)}}));
      }
      m->requests_.push_back(&requests.Add(
          {{"endpoint", endpoint}, {"transport", TransportName(t)}, {"code", "other"}}));
      m->request_seconds_.push_back(&seconds.Add(
          {{"endpoint", endpoint}, {"transport", TransportName(t)}}, RequestBuckets()));
    }
  }
  auto& decisions =
      prometheus::BuildCounter()
          .Name("anyai_quota_decisions_total")
          .Help(
              "Quota engine decisions, by feature class, plan and outcome (admitted, or "
              "refused with the limit that refused: its kind, requests, tokens, spend or "
              "concurrency, and its window, empty for concurrency).")
          .Register(*m->registry_);
  const quota::PlanTable& plans = engine.plans();
  for (size_t p = 0; p < plans.plans.size(); ++p) {
    auto& by_class = m->decisions_.emplace_back();
    auto& limits = m->limits_.emplace_back();
    for (int c = 0; c < engine.class_count(); ++c) {
      const std::string& cls = engine.class_name(quota::ClassId{c});
      const quota::ClassLimits& class_limits = *plans.plans[p].Find(cls);
      auto& counters = by_class.emplace_back();
      auto& refusing = limits.emplace_back();
      counters.push_back(&decisions.Add({{"feature_class", cls},
                                         {"plan", plans.plans[p].name},
                                         {"outcome", "admitted"},
                                         {"limit", ""},
                                         {"window", ""}}));
      auto refused_by = [&](quota::LimitKind kind, absl::Duration window) {
        counters.push_back(&decisions.Add(
            {{"feature_class", cls},
             {"plan", plans.plans[p].name},
             {"outcome", "refused"},
             {"limit", quota::LimitKindName(kind)},
             {"window", kind == quota::LimitKind::kConcurrency ? "" : WindowLabel(window)}}));
        refusing.push_back({kind, absl::ToInt64Microseconds(window)});
      };
      for (quota::Meter meter : quota::kMeters) {
        for (const quota::Window& w : class_limits.WindowsOf(meter)) {
          refused_by(quota::KindOf(meter), w.length);
        }
      }
      if (class_limits.max_concurrent > 0) {
        refused_by(quota::LimitKind::kConcurrency, absl::ZeroDuration());
      }
    }
  }
  m->DeclareSettlements(engine);
  m->decision_seconds_ =
      &prometheus::BuildHistogram()
           .Name("anyai_quota_admit_duration_seconds")
           .Help(
               "Time of one quota engine Admit(), including the durable write of an "
               "admission to storage. Every decision is observed: two clock reads and the "
               "metric updates cost under 3% of a persisted Admit (bench/RESULTS.md).")
           .Register(*m->registry_)
           .Add({}, DecisionBuckets());
  auto& upstream = prometheus::BuildCounter()
                       .Name("anyai_upstream_requests_total")
                       .Help(
                           "Calls to providers (upstream backends), by provider and outcome "
                           "(ok, error).")
                       .Register(*m->registry_);
  auto& upstream_seconds = prometheus::BuildHistogram()
                               .Name("anyai_upstream_request_duration_seconds")
                               .Help(
                                   "Time of one call to a provider, by provider (streams: "
                                   "to their last chunk).")
                               .Register(*m->registry_);
  for (const std::string& name : sources.providers) {
    m->upstream_[name] = Upstream{&upstream.Add({{"provider", name}, {"outcome", "ok"}}),
                                  &upstream.Add({{"provider", name}, {"outcome", "error"}}),
                                  &upstream_seconds.Add({{"provider", name}}, RequestBuckets())};
  }
  sources.engine = &engine;
  m->scrape_ = std::make_shared<ScrapeCollector>(std::move(sources));
  return m;
}

void Metrics::DeclareSettlements(const quota::Engine& engine) {
  using CounterFamily = prometheus::Family<prometheus::Counter>;
  // reserved, settled, refunded, overage: the order of SettledCost.
  CounterFamily* const tokens[] = {
      &prometheus::BuildCounter()
           .Name("anyai_tokens_reserved_total")
           .Help("Tokens reserved when metered calls were admitted (the prompt's tokens plus "
                 "max_tokens, or the plan's default reserve), by feature class and plan. Only "
                 "classes that some plan gives a token window count tokens; elsewhere zero.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_tokens_settled_total")
           .Help("Tokens metered calls used, charged when they ended (the provider's usage; a "
                 "call that failed before any output uses none unless failures are charged), by "
                 "feature class and plan.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_tokens_refunded_total")
           .Help("Tokens reserved and not used, given back when calls ended (into the "
                 "sub-buckets they were reserved in), by feature class and plan.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_tokens_overage_total")
           .Help("Tokens used beyond calls' reservations, charged when they ended (past the "
                 "limits if need be: the next call waits), by feature class and plan.")
           .Register(*registry_),
  };
  CounterFamily* const spend[] = {
      &prometheus::BuildCounter()
           .Name("anyai_spend_micro_usd_reserved_total")
           .Help("Spend reserved when metered calls were admitted, in micro-USD (the reserved "
                 "tokens at the model's prices), by feature class and plan. Only classes that "
                 "some plan gives a spend window count spend; elsewhere zero.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_spend_micro_usd_settled_total")
           .Help("Spend of what metered calls used, in micro-USD, charged when they ended, by "
                 "feature class and plan.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_spend_micro_usd_refunded_total")
           .Help("Spend reserved and not used, in micro-USD, given back when calls ended, by "
                 "feature class and plan.")
           .Register(*registry_),
      &prometheus::BuildCounter()
           .Name("anyai_spend_micro_usd_overage_total")
           .Help("Spend beyond calls' reservations, in micro-USD, charged when they ended, by "
                 "feature class and plan.")
           .Register(*registry_),
  };
  auto& in_flight = prometheus::BuildGauge()
                        .Name("anyai_calls_in_flight")
                        .Help(
                            "Metered calls admitted and not yet settled, by feature class and "
                            "plan (meta calls, /models and /check, are released at once and "
                            "not counted).")
                        .Register(*registry_);
  const absl::StatusOr<quota::ClassId> meta = engine.FindClass(quota::kMeta);
  meta_class_ = meta.ok() ? meta->index : -1;
  const quota::PlanTable& plans = engine.plans();
  for (const quota::Plan& plan : plans.plans) {
    auto& by_class = settlements_.emplace_back();
    for (int c = 0; c < engine.class_count(); ++c) {
      Settlements& s = by_class.emplace_back(Settlements{});
      if (c == meta_class_) continue;
      const prometheus::Labels labels = {{"feature_class", engine.class_name(quota::ClassId{c})},
                                         {"plan", plan.name}};
      s.tokens = {&tokens[0]->Add(labels), &tokens[1]->Add(labels), &tokens[2]->Add(labels),
                  &tokens[3]->Add(labels)};
      s.spend = {&spend[0]->Add(labels), &spend[1]->Add(labels), &spend[2]->Add(labels),
                 &spend[3]->Add(labels)};
      s.in_flight = &in_flight.Add(labels);
    }
  }
}

bool Metrics::Known(quota::PlanId plan, quota::ClassId feature_class) const {
  return plan.index >= 0 && plan.index < static_cast<int>(decisions_.size()) &&
         feature_class.index >= 0 &&
         feature_class.index < static_cast<int>(decisions_[plan.index].size());
}

void Metrics::SettledCost::Add(int64_t reserved_units, int64_t used_units, int64_t refunded_units,
                               int64_t overage_units) const {
  // Zeros skipped: most calls have no overage, and many classes count no spend.
  auto add = [](prometheus::Counter* c, int64_t units) {
    if (units > 0) c->Increment(static_cast<double>(units));
  };
  add(reserved, reserved_units);
  add(settled, used_units);
  add(refunded, refunded_units);
  add(overage, overage_units);
}

void Metrics::ObserveRequest(Endpoint endpoint, Transport transport, int http_status,
                             absl::Duration latency) {
  const int row = static_cast<int>(endpoint) * 2 + (transport == Transport::kHttp ? 1 : 0);
  size_t code = kCodes.size();
  for (size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i] == http_status) code = i;
  }
  requests_[row * (kCodes.size() + 1) + code]->Increment();
  request_seconds_[row]->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::ObserveDecision(quota::PlanId plan, const quota::Decision& decision,
                              quota::ClassId feature_class, absl::Duration latency) {
  decision_seconds_->Observe(absl::ToDoubleSeconds(latency));
  if (!Known(plan, feature_class)) return;
  const auto& counters = decisions_[plan.index][feature_class.index];
  if (decision.admitted) {
    counters[0]->Increment();
    // Released by ObserveSettlement; meta calls are never settled, so never counted.
    if (feature_class.index != meta_class_) {
      settlements_[plan.index][feature_class.index].in_flight->Increment();
    }
    return;
  }
  const auto& limits = limits_[plan.index][feature_class.index];
  const int64_t window_us = decision.refused_kind == quota::LimitKind::kConcurrency
                                ? 0
                                : absl::ToInt64Microseconds(decision.refused_window);
  for (size_t i = 0; i < limits.size(); ++i) {
    if (limits[i].kind == decision.refused_kind && limits[i].window_us == window_us) {
      counters[1 + i]->Increment();
      return;
    }
  }
}

void Metrics::ObserveSettlement(quota::PlanId plan, quota::ClassId feature_class,
                                const quota::Cost& reserved, const quota::Cost& used,
                                const quota::Settlement& settlement) {
  if (!Known(plan, feature_class) || feature_class.index == meta_class_) return;
  const Settlements& s = settlements_[plan.index][feature_class.index];
  s.tokens.Add(reserved.tokens, used.tokens, settlement.refunded.tokens, settlement.overage.tokens);
  s.spend.Add(reserved.micro_usd, used.micro_usd, settlement.refunded.micro_usd,
              settlement.overage.micro_usd);
  s.in_flight->Decrement();
}

void Metrics::ObserveUpstream(const std::string& provider, bool ok, absl::Duration latency) {
  auto it = upstream_.find(provider);
  if (it == upstream_.end()) return;
  (ok ? it->second.ok : it->second.error)->Increment();
  it->second.seconds->Observe(absl::ToDoubleSeconds(latency));
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& f : scrape_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace anyai::server
