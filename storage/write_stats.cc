#include "storage/write_stats.h"

namespace anyai::storage {

WriteMeter::TimePoint WriteMeter::Start() {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  return std::chrono::steady_clock::now();
}

void WriteMeter::Finish(TimePoint started, bool ok, uint64_t calls) {
  const int64_t latency_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now() - started)
                                 .count();
  total_latency_ns_.fetch_add(latency_ns, std::memory_order_relaxed);
  last_latency_ns_.store(latency_ns, std::memory_order_relaxed);
  if (!ok) write_errors_.fetch_add(1, std::memory_order_relaxed);
  writes_.fetch_add(1, std::memory_order_relaxed);
  calls_.fetch_add(calls, std::memory_order_relaxed);
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
}

WriteStats WriteMeter::Snapshot() const {
  WriteStats stats;
  stats.writes = writes_.load(std::memory_order_relaxed);
  stats.write_errors = write_errors_.load(std::memory_order_relaxed);
  stats.calls = calls_.load(std::memory_order_relaxed);
  stats.in_flight = in_flight_.load(std::memory_order_relaxed);
  stats.total_latency = absl::Nanoseconds(total_latency_ns_.load(std::memory_order_relaxed));
  stats.last_latency = absl::Nanoseconds(last_latency_ns_.load(std::memory_order_relaxed));
  return stats;
}

}  // namespace anyai::storage
