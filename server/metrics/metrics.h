// Every Prometheus metric of the gateway, declared in one place (SPEC §7, STYLE "Metrics"):
// one Metrics object on one prometheus::Registry, handed to the components that count. Label
// values are bounded and created at start (endpoints, transports, status codes, the plan
// table's classes, plans and windows, the configured providers): the hot path increments a
// pointer it already holds. Nothing is labelled per key, IP or model.
//
// Tokens and spend follow each metered call from its reservation to its settlement (reserved,
// settled, refunded, overage), and a gauge holds the calls in flight, all by class and plan.
// The gauge is kept from the observer calls alone: +1 on an admitted decision, -1 on its
// settlement. It is exact because the Gateway settles every admitted call exactly once
// (observer.h), except the meta class's (/models, /check), which are released at once and never
// settled: meta is left out of the settlement series and the gauge. One path is not reported:
// a settlement whose storage record failed (Gateway::Finish returns before observing it) leaves
// its call counted in flight and its tokens and spend unsettled here.
//
// What is read rather than counted (resident tenants, storage writes, process CPU, memory and
// file descriptors) is gathered when scraped, through the sources given to Create().
//
// Thread safety: thread-safe; every method may be called from any thread.
#ifndef ANYAI_SERVER_METRICS_METRICS_H_
#define ANYAI_SERVER_METRICS_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "quota/engine.h"
#include "server/gateway/endpoint.h"
#include "server/gateway/observer.h"
#include "storage/write_stats.h"

namespace anyai::server {

enum class Transport { kGrpc, kHttp };

// Where the scrape-time figures come from; any may be left empty.
struct MetricsSources {
  const quota::Engine* engine = nullptr;  // tenants resident
  // Named write statistics, e.g. {"usage", ...}, {"keys", ...}.
  std::vector<std::pair<std::string, std::function<storage::WriteStats()>>> storage;
  std::vector<std::string> providers;  // provider names, for the upstream label
};

class Metrics final : public GatewayObserver {
 public:
  static std::unique_ptr<Metrics> Create(const quota::Engine& engine, MetricsSources sources);
  ~Metrics() override;

  // One finished request. `http_status` is the HTTP status, or for gRPC the HTTP equivalent
  // of its status (server/gateway/error_kind.h), so that one `code` label serves both transports.
  void ObserveRequest(Endpoint endpoint, Transport transport, int http_status,
                      absl::Duration latency);
  // One decision of the engine (admit or refuse) and how long Admit() took, storage included.
  // A refusal counts against the limit that refused (its kind and window); an admission of a
  // class other than meta counts one call in flight until its settlement.
  void ObserveDecision(quota::PlanId plan, const quota::Decision& decision,
                       quota::ClassId feature_class, absl::Duration latency) override;
  // One admitted call's end: its reserved and used tokens and spend, what the engine refunded
  // and charged as overage, and one call fewer in flight. Ignored for the meta class.
  void ObserveSettlement(quota::PlanId plan, quota::ClassId feature_class,
                         const quota::Cost& reserved, const quota::Cost& used,
                         const quota::Settlement& settlement) override;
  // One call to a provider.
  void ObserveUpstream(const std::string& provider, bool ok, absl::Duration latency);

  // The text exposition format (version 0.0.4) of everything.
  std::string Render() const;

 private:
  class ScrapeCollector;
  Metrics() = default;
  // The settlement series and the in-flight gauge, for every plan and class but meta.
  void DeclareSettlements(const quota::Engine& engine);
  // Whether the ids name a plan and class of the table the series were made for.
  bool Known(quota::PlanId plan, quota::ClassId feature_class) const;

  // Status codes that get their own series; others count as "other".
  static constexpr std::array<int, 17> kCodes = {200, 400, 401, 403, 404, 405, 408, 409, 413,
                                                 429, 431, 499, 500, 501, 502, 503, 504};

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ScrapeCollector> scrape_;
  const quota::Engine* engine_ = nullptr;
  // [endpoint][transport][code index, kCodes.size() = other]
  std::vector<prometheus::Counter*> requests_;
  std::vector<prometheus::Histogram*> request_seconds_;  // [endpoint][transport]
  // What refused: a kind of limit and its window (zero for concurrency).
  struct RefusingLimit {
    quota::LimitKind kind;
    int64_t window_us;
  };
  // [plan][class]: admitted, then one refusal counter per limit of the class (request, token and
  // spend windows, concurrency), in the order of limits_.
  std::vector<std::vector<std::vector<prometheus::Counter*>>> decisions_;
  std::vector<std::vector<std::vector<RefusingLimit>>> limits_;  // [plan][class][limit]
  // One meter's figures over settlements.
  struct SettledCost {
    prometheus::Counter* reserved = nullptr;
    prometheus::Counter* settled = nullptr;
    prometheus::Counter* refunded = nullptr;
    prometheus::Counter* overage = nullptr;
    void Add(int64_t reserved_units, int64_t used_units, int64_t refunded_units,
             int64_t overage_units) const;
  };
  struct Settlements {
    SettledCost tokens;
    SettledCost spend;
    prometheus::Gauge* in_flight = nullptr;
  };
  // [plan][class]; the meta class's entry is all null (never counted).
  std::vector<std::vector<Settlements>> settlements_;
  int meta_class_ = -1;  // the meta class's index, -1 when the plans have none
  prometheus::Histogram* decision_seconds_ = nullptr;
  struct Upstream {
    prometheus::Counter* ok;
    prometheus::Counter* error;
    prometheus::Histogram* seconds;
  };
  absl::flat_hash_map<std::string, Upstream> upstream_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_METRICS_METRICS_H_
