// One tenant's counters for one feature class (internal to quota/): the sliding windows of each
// meter the class has, the calls in flight, and the units reserved by calls not yet settled.
//
// Thread safety: every member is lock-free and may be used from any number of threads. The
// windows are created with the object and never replaced.
#ifndef ANYAI_QUOTA_METERS_H_
#define ANYAI_QUOTA_METERS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "quota/plan.h"
#include "quota/sliding_window.h"

namespace anyai::quota {

struct Meters {
  // geometry[m] is the class's geometry for meter m; a meter without windows (no plan gives the
  // class a window of it) gets no counter: its units are not counted at all.
  explicit Meters(const std::array<ClassGeometry, kMeterCount>& geometry)
      : requests(geometry[0]),
        tokens(geometry[1].windows() > 0 ? std::make_unique<WideSlidingWindows>(geometry[1])
                                         : nullptr),
        spend(geometry[2].windows() > 0 ? std::make_unique<WideSlidingWindows>(geometry[2])
                                        : nullptr) {}

  SlidingWindows requests;
  const std::unique_ptr<WideSlidingWindows> tokens;
  const std::unique_ptr<WideSlidingWindows> spend;
  // Reservations not yet settled or released.
  std::atomic<int64_t> in_flight{0};
  // Units those reservations hold, by meter (for reports: "reserved").
  std::array<std::atomic<int64_t>, kMeterCount> reserved{};
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_METERS_H_
