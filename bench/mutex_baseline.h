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

// MutexSlidingWindow extended to costs, for the Reserve + Settle benchmarks (issue 11): per
// tenant one set of request windows and one set of token windows (rings of 61 sub-bucket
// counters each, 64-bit for tokens), under the same single mutex. Reserve() checks that every
// window of both sets has room for the whole cost and then adds it, all under the mutex;
// Settle() takes the mutex again and subtracts the difference from the sub-bucket each window
// counted the reservation in (if that sub-bucket has not been reused since), or adds an
// overage to the current one. A reservation keeps a pointer to its tenant's state, so settling
// does no second lookup (the baseline never evicts). Thread-safe (one global mutex).
class MutexCostWindow {
  struct State;

 public:
  static constexpr int kMaxWindows = 8;

  struct Reservation {
    bool admitted = false;
    int64_t tokens = 0;
    State* state = nullptr;
    std::array<int64_t, kMaxWindows> token_bucket{};
  };

  // Request windows request_window_us[i] with request_limits[i], token windows likewise; within
  // each set every length a multiple of the first (as in the engine).
  MutexCostWindow(std::vector<int64_t> request_window_us, std::vector<int64_t> request_limits,
                  std::vector<int64_t> token_window_us, std::vector<int64_t> token_limits)
      : request_window_us_(std::move(request_window_us)),
        request_limits_(std::move(request_limits)),
        token_window_us_(std::move(token_window_us)),
        token_limits_(std::move(token_limits)) {}

  // One request and `tokens` tokens, all or nothing.
  Reservation Reserve(std::string_view tenant, int64_t tokens, int64_t now_us)
      ABSL_LOCKS_EXCLUDED(mu_) {
    Reservation r;
    absl::MutexLock lock(&mu_);
    std::unique_ptr<State>& state = tenants_[absl::string_view(tenant.data(), tenant.size())];
    if (state == nullptr) {
      state = std::make_unique<State>(request_window_us_.size(), token_window_us_.size());
    }
    std::array<int64_t, kMaxWindows> request_bucket;
    for (size_t w = 0; w < request_window_us_.size(); ++w) {
      request_bucket[w] = now_us * 60 / request_window_us_[w];
      if (Count(state->requests[w], request_bucket[w]) + 1 > request_limits_[w]) return r;
    }
    for (size_t w = 0; w < token_window_us_.size(); ++w) {
      r.token_bucket[w] = now_us * 60 / token_window_us_[w];
      if (Count(state->tokens[w], r.token_bucket[w]) + tokens > token_limits_[w]) return r;
    }
    for (size_t w = 0; w < request_window_us_.size(); ++w) {
      Add(state->requests[w], request_bucket[w], 1);
    }
    for (size_t w = 0; w < token_window_us_.size(); ++w) {
      Add(state->tokens[w], r.token_bucket[w], tokens);
    }
    r.admitted = true;
    r.tokens = tokens;
    r.state = state.get();
    return r;
  }

  // Replaces the reserved tokens with `used_tokens` (the request stays counted).
  void Settle(Reservation& r, int64_t used_tokens, int64_t now_us) ABSL_LOCKS_EXCLUDED(mu_) {
    if (!r.admitted || r.state == nullptr) return;
    const int64_t diff = used_tokens - r.tokens;
    if (diff != 0) {
      absl::MutexLock lock(&mu_);
      State& state = *r.state;
      for (size_t w = 0; w < token_window_us_.size(); ++w) {
        if (diff < 0) {
          TokenRing& ring = state.tokens[w];
          const size_t i = r.token_bucket[w] % kBuckets;
          if (ring.bucket[i] == r.token_bucket[w]) ring.count[i] += diff;
        } else {
          Add(state.tokens[w], now_us * 60 / token_window_us_[w], diff);
        }
      }
    }
    r.state = nullptr;
  }

 private:
  static constexpr int kBuckets = 61;
  template <typename T>
  struct Ring {
    std::array<int64_t, kBuckets> bucket{};
    std::array<T, kBuckets> count{};
  };
  using RequestRing = Ring<int32_t>;
  using TokenRing = Ring<int64_t>;
  struct State {
    State(size_t request_windows, size_t token_windows)
        : requests(request_windows), tokens(token_windows) {}
    std::vector<RequestRing> requests;
    std::vector<TokenRing> tokens;
  };
  template <typename T>
  static int64_t Count(const Ring<T>& r, int64_t b) {
    int64_t n = 0;
    for (int i = 0; i < kBuckets; ++i) {
      if (r.bucket[i] > b - kBuckets && r.bucket[i] <= b) n += r.count[i];
    }
    return n;
  }
  template <typename T>
  static void Add(Ring<T>& r, int64_t b, int64_t k) {
    const size_t i = b % kBuckets;
    if (r.bucket[i] != b) {
      r.bucket[i] = b;
      r.count[i] = 0;
    }
    r.count[i] += static_cast<T>(k);
  }

  const std::vector<int64_t> request_window_us_;
  const std::vector<int64_t> request_limits_;
  const std::vector<int64_t> token_window_us_;
  const std::vector<int64_t> token_limits_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<State>> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anyai::bench

#endif  // ANYAI_BENCH_MUTEX_BASELINE_H_
