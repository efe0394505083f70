// Random refusal states (RateLimitInfo) for the tests of the refusal memos: RateLimited's
// (errors.h) and the fronts' (grpc_status.h, http_status.h). Drawn from small sets, so that the
// same state comes back often (memo hits), with retries that differ below a millisecond (the
// same key from different infos) and some that do not.
//
// Thread safety: a RandomRefusals is one thread's.
#ifndef ANYAI_TESTS_SERVER_GATEWAY_RANDOM_REFUSALS_H_
#define ANYAI_TESTS_SERVER_GATEWAY_RANDOM_REFUSALS_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "quota/engine.h"
#include "server/gateway/errors.h"

namespace anyai::server::testing {

class RandomRefusals {
 public:
  explicit RandomRefusals(uint32_t seed) : rng_(seed) {}

  // Each field drawn on its own.
  RateLimitInfo Next() {
    RateLimitInfo info;
    for (int field = 0; field < kFields; ++field) Redraw(field, info);
    return info;
  }

  // How many fields Redraw knows: every field of RateLimitInfo.
  static constexpr int kFields = 9;

  // Field number `field` of `info` drawn again (it may come out the same).
  void Redraw(int field, RateLimitInfo& info) {
    switch (field) {
      case 0:
        info.feature_class = Pick<std::string>({"llm", "closed_llm", "vision", "meta"});
        break;
      case 1:
        info.plan = Pick<std::string>({"free", "pro", "premium"});
        break;
      case 2:
        info.kind =
            Pick<quota::LimitKind>({quota::LimitKind::kRequests, quota::LimitKind::kTokens,
                                    quota::LimitKind::kSpend, quota::LimitKind::kConcurrency});
        break;
      case 3:
        info.window = Pick<absl::Duration>({absl::Minutes(1), absl::Hours(1), absl::Hours(24),
                                            absl::Seconds(90), absl::Milliseconds(1500),
                                            absl::ZeroDuration()});
        break;
      case 4:
        info.limit = Pick<int64_t>({0, 1, 2, 10, 20000, 1'000'000, 12'500});
        break;
      case 5:
        info.requested = Pick<int64_t>({0, 1, 2, 1200, 30000, 12'500});
        break;
      case 6:
        info.never_fits = Pick<bool>({false, false, false, true});
        break;
      case 7: {
        // Whole milliseconds, or some nanoseconds short of one (the same key); a few negative.
        const absl::Duration ms =
            absl::Milliseconds(Pick<int64_t>({-5, 0, 1, 999, 1000, 1001, 11'250, 12'000, 59'999}));
        info.retry_after = ms - absl::Nanoseconds(Pick<int64_t>({0, 0, 1, 999'999, 250'000}));
        break;
      }
      case 8:
        info.tenant_description =
            Pick<std::string>({"", "anonymous", "key sk-ab…wxyz", "key sk-cd…1234"});
        break;
    }
  }

  std::mt19937& rng() { return rng_; }

 private:
  template <typename T>
  T Pick(const std::vector<T>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_)];
  }

  std::mt19937 rng_;
};

}  // namespace anyai::server::testing

#endif  // ANYAI_TESTS_SERVER_GATEWAY_RANDOM_REFUSALS_H_
