// The obvious design the engine is measured against (SPEC §11): one absl::Mutex around an
// absl::flat_hash_map from tenant to per-window rings of 61 sub-bucket counters, with the same
// strict sliding-window rule as the engine. Written for the benchmark only. Thread-safe (one
// global mutex).
#ifndef ANYAI_BENCH_MUTEX_BASELINE_H_
#define ANYAI_BENCH_MUTEX_BASELINE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace anyai::bench {

class MutexSlidingWindow {
 public:
  // window_us[i] with limits[i]; every window_us a multiple of the first (as in the engine).
  MutexSlidingWindow(std::vector<int64_t> window_us, std::vector<int64_t> limits)
      : window_us_(std::move(window_us)), limits_(std::move(limits)) {}

  bool Admit(std::string_view tenant, int64_t now_us) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<State>& state = tenants_[absl::string_view(tenant.data(), tenant.size())];
    if (state == nullptr) state = std::make_unique<State>(window_us_.size());
    std::array<int64_t, 8> bucket;
    for (size_t w = 0; w < window_us_.size(); ++w) {
      bucket[w] = now_us * 60 / window_us_[w];
      if (Count(state->rings[w], bucket[w]) >= limits_[w]) return false;
    }
    for (size_t w = 0; w < window_us_.size(); ++w) {
      Ring& r = state->rings[w];
      const size_t i = bucket[w] % kBuckets;
      if (r.bucket[i] != bucket[w]) {
        r.bucket[i] = bucket[w];
        r.count[i] = 0;
      }
      ++r.count[i];
    }
    return true;
  }

  size_t size() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return tenants_.size();
  }

 private:
  static constexpr int kBuckets = 61;
  struct Ring {
    std::array<int64_t, kBuckets> bucket{};
    std::array<int32_t, kBuckets> count{};
  };
  struct State {
    explicit State(size_t windows) : rings(windows) {}
    std::vector<Ring> rings;
  };
  static int64_t Count(const Ring& r, int64_t b) {
    int64_t n = 0;
    for (int i = 0; i < kBuckets; ++i) {
      if (r.bucket[i] > b - kBuckets && r.bucket[i] <= b) n += r.count[i];
    }
    return n;
  }

  const std::vector<int64_t> window_us_;
  const std::vector<int64_t> limits_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<State>> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anyai::bench

#endif  // ANYAI_BENCH_MUTEX_BASELINE_H_
