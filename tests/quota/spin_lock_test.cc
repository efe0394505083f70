// SpinLock (spin_lock.h): mutual exclusion with more threads than cores, so that holders are
// preempted and waiters go to sleep in the kernel and must be woken.
#include "quota/spin_lock.h"

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace anyai::quota {
namespace {

TEST(SpinLockTest, ExcludesAndWakesWithMoreThreadsThanCores) {
  const int threads = 4 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  constexpr int kRounds = 20000;
  SpinLock lock;
  int64_t counter = 0;  // guarded by `lock` (a plain int: ThreadSanitizer checks the exclusion)
  int64_t inside = 0;
  bool overlapped = false;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        SpinLockHolder hold(&lock);
        if (++inside != 1) overlapped = true;
        ++counter;
        if (i % 1000 == 0) std::this_thread::yield();  // a holder that loses its core
        --inside;
      }
    });
  }
  for (std::thread& t : pool) t.join();
  EXPECT_FALSE(overlapped);
  EXPECT_EQ(counter, int64_t{threads} * kRounds);
}

}  // namespace
}  // namespace anyai::quota
