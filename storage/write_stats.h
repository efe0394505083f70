// Counters of a store's writes to RocksDB, for the server's metrics (SPEC §7: storage write
// latency and backlog) without tying storage/ to Prometheus. Each store owns one WriteMeter and
// exposes its Snapshot(); the server reads it when scraped and exports `writes`, `calls`
// and `write_errors` as counters, `total_latency` / `writes` as a summary's sum and count, and
// `in_flight` as a gauge (writes started and not yet acknowledged: the backlog).
//
// Thread safety: lock-free; every method may be called from any thread. Each counter is an
// independent relaxed atomic: they are statistics, ordering nothing else, so a snapshot taken
// while writes finish may mix counters from slightly different moments.
#ifndef ANYAI_STORAGE_WRITE_STATS_H_
#define ANYAI_STORAGE_WRITE_STATS_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "absl/time/time.h"

namespace anyai::storage {

struct WriteStats {
  uint64_t writes = 0;           // completed writes, successful or not
  uint64_t write_errors = 0;     // completed writes that failed
  uint64_t calls = 0;            // the callers whose changes completed writes carried (group
                                 // commit: one write may carry many; else one per write)
  int64_t in_flight = 0;         // writes started and not completed
  absl::Duration total_latency;  // summed over completed writes
  absl::Duration last_latency;   // of the most recently completed write
};

class WriteMeter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Brackets one write: `auto started = meter.Start(); ...; meter.Finish(started, s.ok());`.
  TimePoint Start();
  // `calls`: how many callers' changes the write carried.
  void Finish(TimePoint started, bool ok, uint64_t calls = 1);

  WriteStats Snapshot() const;

 private:
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<uint64_t> calls_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> total_latency_ns_{0};
  std::atomic<int64_t> last_latency_ns_{0};
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_WRITE_STATS_H_
