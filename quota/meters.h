// One tenant's counters for one feature class (internal to quota/): the sliding windows of each
// meter the class has (sliding_window.h), the calls in flight, and the units reserved by calls
// not yet settled, all in one block laid out by the class's MetersLayout, behind one lock.
//
// Thread safety: `lock` guards everything in the block (in_flight and every MeterWindows);
// the layout (which meters exist, where) never changes after Init().
#ifndef ANYAI_QUOTA_METERS_H_
#define ANYAI_QUOTA_METERS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/thread_annotations.h"
#include "quota/plan.h"
#include "quota/sliding_window.h"
#include "quota/spin_lock.h"

namespace anyai::quota {

// Where each meter of a class sits in its Meters block; computed once per class.
struct MetersLayout {
  // Byte offset of meter m's MeterWindows from the block's start; 0 when the class has no
  // window of that meter (its units are then not counted at all).
  std::array<uint16_t, kMeterCount> offset{};
  std::array<uint8_t, kMeterCount> windows{};  // of each meter
  size_t bytes = 0;                            // the whole block, a multiple of 8

  static MetersLayout For(const std::array<ClassGeometry, kMeterCount>& geometry);
};

struct Meters {
  // Formats a block of layout.bytes bytes (8-aligned) at `at`.
  static Meters* Init(void* at, const MetersLayout& layout);
  // Frees what the windows allocated (the block itself is the caller's).
  void Destroy();

  // Meter m's windows, or null when the class does not count it. Guarded by `lock`.
  MeterWindows* meter(int m) {
    return offset[m] == 0 ? nullptr
                          : std::launder(reinterpret_cast<MeterWindows*>(
                                reinterpret_cast<char*>(this) + offset[m]));
  }

  SpinLock lock;
  // Reservations not yet settled or released.
  int32_t in_flight ABSL_GUARDED_BY(lock) = 0;
  std::array<uint16_t, kMeterCount> offset{};
  // Followed by the MeterWindows of each counted meter.
};

inline MetersLayout MetersLayout::For(const std::array<ClassGeometry, kMeterCount>& geometry) {
  static_assert(sizeof(Meters) % 8 == 0);
  MetersLayout layout;
  size_t at = sizeof(Meters);
  for (int m = 0; m < kMeterCount; ++m) {
    if (geometry[m].windows() == 0) continue;
    layout.offset[m] = static_cast<uint16_t>(at);
    layout.windows[m] = static_cast<uint8_t>(geometry[m].windows());
    at += MeterWindows::Bytes(geometry[m].windows());
  }
  layout.bytes = at;
  return layout;
}

inline Meters* Meters::Init(void* at, const MetersLayout& layout) {
  auto* meters = new (at) Meters;
  meters->offset = layout.offset;
  for (int m = 0; m < kMeterCount; ++m) {
    if (layout.offset[m] == 0) continue;
    MeterWindows::Init(static_cast<char*>(at) + layout.offset[m], layout.windows[m]);
  }
  return meters;
}

inline void Meters::Destroy() {
  for (int m = 0; m < kMeterCount; ++m) {
    if (MeterWindows* w = meter(m)) w->Destroy();
  }
}

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_METERS_H_
