// A UsageSink and UsageLoader backed by a map: what the storage layer does, in memory, for the
// engine's tests. Every change is summed into its (tenant, class, meter, bucket) row; Load()
// returns a tenant's rows. `set_fail` makes Record fail (UNAVAILABLE); `set_write_delay` makes
// every Record sleep first (as a disk under load does), which widens the window between
// counting and recording.
//
// Thread safety: thread-safe (one mutex).
#ifndef ANYAI_TESTS_QUOTA_MEMORY_USAGE_H_
#define ANYAI_TESTS_QUOTA_MEMORY_USAGE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "quota/engine.h"

namespace anyai::quota {

class MemoryUsage : public UsageSink, public UsageLoader {
 public:
  absl::Status Record(absl::Span<const Admission> changes) override {
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_) return absl::UnavailableError("disk on fire");
    for (const Admission& a : changes) {
      rows_[std::string(a.tenant)][{a.feature_class.index, static_cast<int>(a.meter), a.bucket}] +=
          a.cost;
      ++records_;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<BucketCount>> Load(std::string_view tenant) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++loads_;
    std::vector<BucketCount> out;
    for (const auto& [key, count] : rows_[std::string(tenant)]) {
      const auto [feature_class, meter, bucket] = key;
      out.push_back({ClassId{feature_class}, bucket, count, static_cast<Meter>(meter)});
    }
    return out;
  }
  // The sum of every row of `tenant` for one class and meter.
  int64_t Total(std::string_view tenant, ClassId feature_class, Meter meter) {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t total = 0;
    for (const auto& [key, count] : rows_[std::string(tenant)]) {
      if (std::get<0>(key) == feature_class.index && std::get<1>(key) == static_cast<int>(meter)) {
        total += count;
      }
    }
    return total;
  }
  void set_fail(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = fail;
  }
  void set_write_delay(std::chrono::microseconds delay) { delay_ = delay; }
  int loads() {
    std::lock_guard<std::mutex> lock(mu_);
    return loads_;
  }
  int64_t records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::map<std::tuple<int, int, int64_t>, int64_t>> rows_;
  bool fail_ = false;
  int loads_ = 0;
  int64_t records_ = 0;
  std::chrono::microseconds delay_{0};
};

}  // namespace anyai::quota

#endif  // ANYAI_TESTS_QUOTA_MEMORY_USAGE_H_
