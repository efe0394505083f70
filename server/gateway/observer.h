// What the Gateway reports about the calls it decides, for whoever counts them (the Prometheus
// metrics in server/metrics/ implement it). A small interface so that the call path does not
// know the metrics backend, as Envoy's filters see a Stats::Scope and not the stats sink.
//
// Thread safety: implementations are thread-safe; the Gateway calls them from every request
// thread.
#ifndef ANYAI_SERVER_GATEWAY_OBSERVER_H_
#define ANYAI_SERVER_GATEWAY_OBSERVER_H_

#include "absl/time/time.h"
#include "quota/engine.h"

namespace anyai::server {

class GatewayObserver {
 public:
  virtual ~GatewayObserver() = default;

  // One decision of the engine (admitted or refused) and how long Admit() took, storage
  // included.
  virtual void ObserveDecision(quota::PlanId plan, const quota::Decision& decision,
                               quota::ClassId feature_class, absl::Duration latency) = 0;

  // One settlement: an admitted call ended having reserved `reserved` and used `used`; the
  // engine gave back settlement.refunded and charged settlement.overage. Every admitted,
  // metered call is settled exactly once, on every path.
  virtual void ObserveSettlement(quota::PlanId plan, quota::ClassId feature_class,
                                 const quota::Cost& reserved, const quota::Cost& used,
                                 const quota::Settlement& settlement) {
    (void)plan, (void)feature_class, (void)reserved, (void)used, (void)settlement;
  }
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_OBSERVER_H_
