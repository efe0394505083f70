// SlidingWindows against an exact sliding-log reference: random arrival patterns over many
// windows, a frozen clock stepped by hand.
#include "quota/sliding_window.h"

#include <algorithm>
#include <random>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace anyai::quota {
namespace {

constexpr int64_t kSecond = 1'000'000;
// A realistic origin (2026-01-01T00:00:00Z) so that bucket indexes are large, as in production.
constexpr int64_t kOrigin = 1'767'225'600 * kSecond;

ClassGeometry Geometry(std::vector<int64_t> window_seconds) {
  ClassGeometry g;
  for (int64_t s : window_seconds) g.window_us.push_back(s * kSecond);
  g.base_us = g.window_us.front();
  for (int64_t w : g.window_us) g.ratio.push_back(w / g.base_us);
  return g;
}

// The exact reference: every admission time, and the number of them in a half-open interval.
class SlidingLog {
 public:
  void Add(int64_t t) { times_.push_back(t); }
  // Admissions in (from, to].
  int64_t CountIn(int64_t from, int64_t to) const {
    return std::upper_bound(times_.begin(), times_.end(), to) -
           std::upper_bound(times_.begin(), times_.end(), from);
  }
  // The earliest time > now at which (now', now'] minus ... : when fewer than `limit` of the
  // admissions made so far lie in (t - window, t].
  int64_t IdealRetryAt(int64_t now, int64_t window, int64_t limit) const {
    const int64_t in_window = CountIn(now - window, now);
    if (in_window < limit) return now;
    // The (in_window - limit + 1)-th oldest admission inside the window must leave.
    auto first = std::upper_bound(times_.begin(), times_.end(), now - window);
    return *(first + (in_window - limit)) + window;
  }

 private:
  std::vector<int64_t> times_;  // non-decreasing
};

struct Scenario {
  std::vector<int64_t> window_seconds;
  std::vector<int64_t> limits;
};

class SlidingWindowPropertyTest : public ::testing::TestWithParam<Scenario> {};

// Runs one random arrival pattern and checks, for every decision:
//  * an admission never makes any interval of length W hold more than L admissions;
//  * a refusal is justified: some window holds L admissions within W + W/60 (one sub-bucket);
//  * the figures (used, retry_at) agree with the log within one sub-bucket.
void RunPattern(const Scenario& sc, std::mt19937_64& gen, int64_t mean_gap_us, int requests) {
  const ClassGeometry g = Geometry(sc.window_seconds);
  SlidingWindows windows(g);
  SlidingLog log;
  int64_t now = kOrigin + absl::Uniform<int64_t>(gen, 0, 100 * kSecond);
  int admitted = 0;
  for (int i = 0; i < requests; ++i) {
    // Mix of bursts (zero gap), short and long gaps.
    const int kind = absl::Uniform(gen, 0, 10);
    if (kind < 3) {
      // burst: same microsecond
    } else if (kind < 9) {
      now += static_cast<int64_t>(absl::Exponential<double>(gen, 1.0 / mean_gap_us));
    } else {
      now += absl::Uniform<int64_t>(gen, 0, g.window_us.back());
    }
    const WindowOutcome o = windows.TryAdmit(now, sc.limits);
    for (int w = 0; w < g.windows(); ++w) {
      const int64_t W = g.window_us[w];
      const int64_t L = sc.limits[w];
      const int64_t slack = W / 60 + 1;
      SCOPED_TRACE(absl::StrCat("request ", i, " window ", W / kSecond, "s"));
      if (o.admitted) {
        ASSERT_LE(log.CountIn(now - W, now) + 1, L) << "over-admission";
        // used counts every admission of the last W, and none older than W + W/60.
        EXPECT_GE(o.windows[w].used, log.CountIn(now - W, now) + 1);
        EXPECT_LE(o.windows[w].used, log.CountIn(now - W - slack, now) + 1);
      } else {
        EXPECT_GE(o.windows[w].used, log.CountIn(now - W, now));
        EXPECT_LE(o.windows[w].used, log.CountIn(now - W - slack, now));
        if (o.windows[w].retry_at_us != 0) {
          const int64_t ideal = log.IdealRetryAt(now, W, L);
          EXPECT_GE(o.windows[w].retry_at_us, ideal);
          EXPECT_LE(o.windows[w].retry_at_us, ideal + slack);
        }
      }
    }
    if (o.admitted) {
      log.Add(now);
      ++admitted;
    } else {
      bool justified = false;
      for (int w = 0; w < g.windows(); ++w) {
        const int64_t W = g.window_us[w];
        if (log.CountIn(now - W - W / 60 - 1, now) >= sc.limits[w]) justified = true;
      }
      ASSERT_TRUE(justified) << "refused at request " << i << " with room in every window";
    }
  }
  EXPECT_GT(admitted, 0);
}

TEST_P(SlidingWindowPropertyTest, NeverOverAdmitsAndRefusesEarlyByAtMostOneSubBucket) {
  // A fresh seed each run, printed on failure so that a failing run can be replayed.
  const uint64_t seed = absl::Uniform<uint64_t>(absl::BitGen());
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 gen(seed);
  const Scenario& sc = GetParam();
  const int64_t shortest = sc.window_seconds.front() * kSecond;
  for (int64_t divisor : {1, 3, 10, 50, 200}) {
    RunPattern(sc, gen, std::max<int64_t>(1, shortest / sc.limits.front() * 2 / divisor), 3000);
  }
}

INSTANTIATE_TEST_SUITE_P(Windows, SlidingWindowPropertyTest,
                         ::testing::Values(Scenario{{1}, {1}}, Scenario{{1}, {5}},
                                           Scenario{{60}, {10}}, Scenario{{1, 5}, {3, 7}},
                                           Scenario{{2, 4, 60}, {10, 12, 50}},
                                           Scenario{{60, 86400}, {10, 2000}},
                                           Scenario{{3600, 86400}, {25, 100}},
                                           Scenario{{1, 3}, {100, 5}}, Scenario{{86400}, {20}}));

TEST(SlidingWindowTest, AdmitsExactlyTheLimitInOneInstant) {
  const ClassGeometry g = Geometry({60, 86400});
  SlidingWindows windows(g);
  const std::vector<int64_t> limits = {10, 2000};
  int admitted = 0;
  for (int i = 0; i < 25; ++i) admitted += windows.TryAdmit(kOrigin, limits).admitted;
  EXPECT_EQ(admitted, 10);
}

TEST(SlidingWindowTest, RefusesTheEleventhRequestInAMinuteAndAdmitsItOneSubBucketAfterTheMinute) {
  const ClassGeometry g = Geometry({60});
  SlidingWindows windows(g);
  const std::vector<int64_t> limits = {10};
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(windows.TryAdmit(kOrigin + i * kSecond, limits).admitted);
  }
  const WindowOutcome refused = windows.TryAdmit(kOrigin + 30 * kSecond, limits);
  EXPECT_FALSE(refused.admitted);
  // The first admission, at the very start of its sub-bucket, is counted until that sub-bucket
  // has left the window: one minute and one sub-bucket (1 s) later, the allowed slack.
  EXPECT_EQ(refused.windows[0].retry_at_us, kOrigin + 61 * kSecond);
  EXPECT_FALSE(windows.TryAdmit(kOrigin + 61 * kSecond - 1, limits).admitted);
  EXPECT_TRUE(windows.TryAdmit(kOrigin + 61 * kSecond, limits).admitted);
}

TEST(SlidingWindowTest, ARefusalConsumesNothingInAnyWindow) {
  const ClassGeometry g = Geometry({1, 5});
  SlidingWindows windows(g);
  const std::vector<int64_t> limits = {2, 100};
  for (int i = 0; i < 50; ++i) windows.TryAdmit(kOrigin, limits);
  const WindowOutcome o = windows.Read(kOrigin, limits);
  EXPECT_EQ(o.windows[0].used, 2);
  EXPECT_EQ(o.windows[1].used, 2);  // the 48 refusals left no trace in the 5 s window
}

TEST(SlidingWindowTest, TimeGoingBackwardsIsTreatedAsTheLatestTimeSeen) {
  const ClassGeometry g = Geometry({60});
  SlidingWindows windows(g);
  const std::vector<int64_t> limits = {1};
  ASSERT_TRUE(windows.TryAdmit(kOrigin + 100 * kSecond, limits).admitted);
  // An earlier time cannot reopen the window.
  EXPECT_FALSE(windows.TryAdmit(kOrigin, limits).admitted);
}

TEST(SlidingWindowTest, RestoreReproducesTheCounts) {
  const ClassGeometry g = Geometry({60, 86400});
  const std::vector<int64_t> limits = {10, 2000};
  SlidingWindows original(g);
  std::vector<std::pair<int64_t, int64_t>> stamps;
  absl::BitGen gen;
  int64_t now = kOrigin;
  for (int i = 0; i < 500; ++i) {
    now += absl::Uniform<int64_t>(gen, 0, 20 * kSecond);
    const WindowOutcome o = original.TryAdmit(now, limits);
    if (o.admitted) stamps.emplace_back(o.stamp, 1);
  }
  SlidingWindows restored(g);
  restored.Restore(stamps);
  for (int64_t later : {int64_t{0}, 30 * kSecond, 3600 * kSecond, 90000 * kSecond}) {
    const WindowOutcome a = original.Read(now + later, limits);
    const WindowOutcome b = restored.Read(now + later, limits);
    for (int w = 0; w < 2; ++w) {
      EXPECT_EQ(a.windows[w].used, b.windows[w].used) << "window " << w << " +" << later;
      EXPECT_EQ(a.windows[w].free_at_us, b.windows[w].free_at_us);
    }
  }
}

}  // namespace
}  // namespace anyai::quota
