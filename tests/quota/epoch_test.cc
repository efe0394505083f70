// Epoch-based reclamation (epoch.h): a writer swaps and frees objects as fast as the epoch lets
// it while readers use them inside guards. A freed object is marked dead before it is deleted,
// so a reader that still holds one sees the mark (and AddressSanitizer sees the use after free).
// Readers hold their guard for a varying time, and some sleep inside it.
#include "quota/epoch.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace anyai::quota {
namespace {

constexpr uint64_t kAlive = 0xA11CEA11CEA11CEull;
constexpr uint64_t kDead = 0xDEADDEADDEADDEADull;

struct Node {
  std::atomic<uint64_t> mark{kAlive};
};

TEST(EpochTest, NothingAReaderHoldsIsFreed) {
  // Which way readers enter on this machine (the membarrier one on Linux, unless sanitized for
  // threads): the test covers that one.
  ::testing::Test::RecordProperty("readers_fence_free", EpochReadersFenceFree() ? "yes" : "no");
  std::atomic<Node*> current{new Node};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> dead_seen{0}, reads{0};
  const int readers = 2 * static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 0; t < readers; ++t) {
    pool.emplace_back([&, t] {
      uint64_t spin = static_cast<uint64_t>(t) + 1;
      int64_t local_reads = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        EpochGuard guard;
        const Node* n = current.load(std::memory_order_acquire);
        // Hold it a varying while (0..255 re-reads), checking it is still alive each time.
        spin = spin * 6364136223846793005ull + 1442695040888963407ull;
        const int holds = static_cast<int>(spin >> 56);
        for (int i = 0; i <= holds; ++i) {
          if (n->mark.load(std::memory_order_relaxed) != kAlive) {
            dead_seen.fetch_add(1, std::memory_order_relaxed);
            break;
          }
          // Now and then a reader sleeps inside the guard, as a preempted one would: the
          // writer goes on meanwhile, and must not free what the sleeper holds.
          if (i == holds / 2 && (spin >> 40 & 31) == 0) {
            std::this_thread::sleep_for(std::chrono::microseconds(50));
          }
        }
        ++local_reads;
      }
      reads.fetch_add(local_reads, std::memory_order_relaxed);
    });
  }
  struct Retired {
    uint64_t epoch;
    Node* node;
  };
  std::deque<Retired> retired;
  int64_t freed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    Node* fresh = new Node;
    // Unlinked with a seq_cst operation, then retired with the epoch read after it (epoch.h).
    Node* old = current.exchange(fresh, std::memory_order_seq_cst);
    retired.push_back({CurrentEpoch(), old});
    TryAdvanceEpoch();
    while (!retired.empty() && SafeToFree(retired.front().epoch)) {
      retired.front().node->mark.store(kDead, std::memory_order_relaxed);
      delete retired.front().node;
      retired.pop_front();
      ++freed;
    }
  }
  stop.store(true);
  for (std::thread& t : pool) t.join();
  EXPECT_EQ(dead_seen.load(), 0) << "a reader saw an object freed under its guard";
  // The test means something only if the epoch moved and objects were freed while read.
  EXPECT_GT(freed, 1000);
  EXPECT_GT(reads.load(), 1000);
  for (const Retired& r : retired) delete r.node;
  delete current.load();
}

TEST(EpochTest, TheEpochAdvancesOnlyPastReadersThatHaveSeenIt) {
  TryAdvanceEpoch();
  const uint64_t before = CurrentEpoch();
  {
    EpochGuard guard;  // announces `before`
    TryAdvanceEpoch();
    EXPECT_EQ(CurrentEpoch(), before + 1);
    TryAdvanceEpoch();  // this thread still announces `before`
    EXPECT_EQ(CurrentEpoch(), before + 1);
    EXPECT_FALSE(SafeToFree(before));
  }
  TryAdvanceEpoch();
  EXPECT_EQ(CurrentEpoch(), before + 2);
  EXPECT_TRUE(SafeToFree(before));
}

}  // namespace
}  // namespace anyai::quota
