// server/gateway/render_memo.h, and RateLimited's memo over it (errors.h): what a memo gives is
// what a fresh rendering gives, for many random refusal states; states the client can tell
// apart never share a rendering; and statuses from one thread's memo are safe on others.
#include "server/gateway/render_memo.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/errors.h"
#include "tests/server/gateway/random_refusals.h"

namespace anyai::server {
namespace {

using ::anyai::server::testing::RandomRefusals;

// The bytes a client gets of a status: code, message and details, as gRPC sends them.
std::string WireBytes(const absl::Status& status) {
  return ToRpcStatus(status).SerializeAsString();
}

bool SameRepresentation(const absl::Status& a, const absl::Status& b) {
  return a.message().data() == b.message().data();
}

TEST(RenderMemoTest, RendersAKeyOnceWhileItStaysInItsSlot) {
  RenderMemo<int, std::string, 4> memo;
  int renders = 0;
  const auto render = [&renders](const int& k) {
    ++renders;
    return std::to_string(k);
  };
  EXPECT_EQ(memo.Get(7, 7, render), "7");
  EXPECT_EQ(memo.Get(7, 7, render), "7");
  EXPECT_EQ(renders, 1);
  EXPECT_EQ(memo.Get(8, 8, render), "8");  // another slot
  EXPECT_EQ(memo.Get(7, 7, render), "7");
  EXPECT_EQ(renders, 2);
  EXPECT_EQ(memo.misses(), 2);
}

TEST(RenderMemoTest, AKeyInTheSameSlotReplacesTheOld) {
  RenderMemo<int, std::string, 4> memo;
  const auto render = [](const int& k) { return std::to_string(k); };
  EXPECT_EQ(memo.Get(1, 5, render), "1");
  EXPECT_EQ(memo.Get(2, 5, render), "2");  // same slot, another key: never "1"
  EXPECT_EQ(memo.Get(1, 5, render), "1");
  EXPECT_EQ(memo.misses(), 3);
}

TEST(StatusRenderingsTest, FindsCopiesOfAStatusButNotEqualOnesBuiltApart) {
  StatusRenderings<std::string, 4> memo;
  const auto render = [](const absl::Status& s) { return std::string(s.message()); };
  const absl::Status a = absl::ResourceExhaustedError("refused");
  const absl::Status copy = a;
  EXPECT_EQ(memo.Get(a, render), "refused");
  EXPECT_EQ(memo.Get(copy, render), "refused");
  EXPECT_EQ(memo.misses(), 1);
  const absl::Status apart = absl::ResourceExhaustedError("refused");
  ASSERT_EQ(apart, a);
  EXPECT_EQ(memo.Get(apart, render), "refused");
  EXPECT_EQ(memo.misses(), 2);
}

TEST(StatusRenderingsTest, AStatusWithoutAMessageIsRenderedEachTime) {
  StatusRenderings<std::string, 4> memo;
  const auto render = [](const absl::Status& s) { return absl::StatusCodeToString(s.code()); };
  EXPECT_EQ(memo.Get(absl::Status(absl::StatusCode::kResourceExhausted, ""), render),
            "RESOURCE_EXHAUSTED");
  EXPECT_EQ(memo.Get(absl::Status(absl::StatusCode::kNotFound, ""), render), "NOT_FOUND");
  EXPECT_EQ(memo.Get(absl::OkStatus(), render), "OK");
  EXPECT_EQ(memo.misses(), 0);
}

TEST(StatusRenderingsTest, ManyStatusesAtOnceEachGetTheirOwn) {
  StatusRenderings<std::string, 4> memo;
  const auto render = [](const absl::Status& s) { return std::string(s.message()); };
  std::vector<absl::Status> statuses;
  for (int i = 0; i < 100; ++i) {
    statuses.push_back(absl::ResourceExhaustedError(std::to_string(i)));
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(memo.Get(statuses[i], render), std::to_string(i));
  }
}

TEST(RateLimitedMemoTest, EqualsAFreshRenderingForManyRandomStates) {
  RandomRefusals random(1);
  int shared = 0;
  for (int i = 0; i < 20000; ++i) {
    const RateLimitInfo info = random.Next();
    const absl::Status memoized = RateLimited(info);
    const absl::Status fresh = RateLimitedUncached(info);
    ASSERT_EQ(memoized, fresh) << i;
    ASSERT_EQ(WireBytes(memoized), WireBytes(fresh)) << i;
    const absl::Status again = RateLimited(info);
    EXPECT_TRUE(SameRepresentation(again, memoized)) << i;
    if (SameRepresentation(RateLimited(random.Next()), again)) ++shared;
  }
  // Another random state shares a status only when it has the same key: rarely.
  EXPECT_LT(shared, 200);
}

TEST(RateLimitedMemoTest, StatesTheClientCanTellApartNeverShareARendering) {
  RandomRefusals random(2);
  int told_apart = 0, same_key = 0;
  for (int i = 0; i < 4000; ++i) {
    const RateLimitInfo base = random.Next();
    for (int field = 0; field < RandomRefusals::kFields; ++field) {
      RateLimitInfo variant = base;
      random.Redraw(field, variant);
      // The base in the memo first, then the variant: a key that left this field out would
      // find the base's status for it.
      ASSERT_EQ(RateLimited(base), RateLimitedUncached(base));
      const absl::Status memoized = RateLimited(variant);
      const absl::Status fresh = RateLimitedUncached(variant);
      ASSERT_EQ(memoized, fresh) << "field " << field;
      if (RateLimitKey(variant) == RateLimitKey(base)) {
        // What the key drops, no client sees.
        EXPECT_EQ(WireBytes(fresh), WireBytes(RateLimitedUncached(base))) << "field " << field;
        ++same_key;
      } else {
        EXPECT_NE(WireBytes(fresh), WireBytes(RateLimitedUncached(base))) << "field " << field;
        EXPECT_FALSE(SameRepresentation(memoized, RateLimited(base))) << "field " << field;
        ++told_apart;
      }
    }
  }
  EXPECT_GT(told_apart, 1000);
  EXPECT_GT(same_key, 1000);
}

TEST(RateLimitedMemoTest, RoundsTheRetryUpToWholeMillisecondsAndKeepsThemExact) {
  RateLimitInfo info;
  info.feature_class = "llm";
  info.plan = "free";
  info.window = absl::Minutes(1);
  info.limit = 10;
  info.retry_after = absl::Milliseconds(11'250) - absl::Nanoseconds(1);
  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(RateLimited(info));
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 11);
  EXPECT_EQ(retry->retry_delay().nanos(), 250'000'000);
  info.retry_after = absl::Milliseconds(11'250) + absl::Nanoseconds(1);
  retry = GetRetryInfo(RateLimited(info));
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().nanos(), 251'000'000);
}

// Statuses made by one thread's memo are used, copied and dropped on others while their maker
// evicts and replaces them (run under TSan: tsan builds).
TEST(RateLimitedMemoTest, StatusesFromOneThreadsMemoAreSafeOnOthers) {
  constexpr int kThreads = 4, kRounds = 3000;
  // std::mutex, not absl::Mutex: Debian's Abseil is not built for TSan, which then cannot see
  // its lock.
  std::mutex mu;
  std::vector<absl::Status> handed(64);  // guarded by mu
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      RandomRefusals random(100 + t);
      for (int i = 0; i < kRounds; ++i) {
        const RateLimitInfo info = random.Next();
        absl::Status mine = RateLimited(info);
        if (mine != RateLimitedUncached(info)) mismatches.fetch_add(1, std::memory_order_relaxed);
        absl::Status theirs;
        {
          std::lock_guard<std::mutex> lock(mu);
          std::swap(handed[random.rng()() % handed.size()], mine);
          theirs = handed[random.rng()() % handed.size()];
        }
        // Read the other thread's status: its message and payloads.
        if (!theirs.ok() && WireBytes(theirs).empty()) {
          mismatches.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace anyai::server
