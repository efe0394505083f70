// SlidingWindows (one meter's windows, sliding_window.h) against an exact reference model of
// the buckets: random admissions, give-backs and overage charges of costs from 1 to 2^40 (so
// that the history widens through every count width, 4 bits to 64), clocks that stand still,
// creep, jump by less than a window or by many, and go back. After every step each window's
// used units, oldest-unit time and retry time must equal the model's exactly.
#include <algorithm>
#include <cstdint>
#include <map>
#include <ostream>
#include <random>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quota/sliding_window.h"

namespace anyai::quota {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kOrigin = 1'767'225'600 * kSecond;  // 2026-01-01T00:00:00Z

ClassGeometry Geometry(const std::vector<int64_t>& window_seconds) {
  ClassGeometry g;
  for (int64_t s : window_seconds) g.window_us.push_back(s * kSecond);
  g.base_us = g.window_us.front();
  for (int64_t w : g.window_us) g.ratio.push_back(w / g.base_us);
  return g;
}

// Per window, bucket -> units: what the windows must count.
class Model {
 public:
  explicit Model(const ClassGeometry& g) : g_(g), buckets_(g.windows()) {}

  void Advance(int64_t now_us) { stamp_ = std::max(stamp_, g_.StampAt(now_us)); }
  int64_t stamp() const { return stamp_; }
  int64_t Newest(int w) const { return stamp_ / g_.ratio[w]; }
  int64_t Used(int w) const {
    int64_t total = 0;
    for (const auto& [b, n] : buckets_[w]) {
      if (b >= Newest(w) - 60 && b <= Newest(w)) total += n;
    }
    return total;
  }
  bool Fits(const std::vector<int64_t>& limits, int64_t cost) const {
    for (int w = 0; w < g_.windows(); ++w) {
      if (limits[w] > 0 && Used(w) + cost > limits[w]) return false;
    }
    return true;
  }
  void Add(int64_t amount) {
    for (int w = 0; w < g_.windows(); ++w) buckets_[w][Newest(w)] += amount;
  }
  void Subtract(int64_t stamp, int64_t amount) {
    if (stamp > stamp_) return;
    for (int w = 0; w < g_.windows(); ++w) {
      const int64_t j = stamp / g_.ratio[w];
      if (j < Newest(w) - 60) continue;
      int64_t& n = buckets_[w][j];
      n -= std::min(n, amount);
    }
  }
  int64_t FreeAt(int w) const {
    for (int64_t b = Newest(w) - 60; b <= Newest(w); ++b) {
      auto it = buckets_[w].find(b);
      if (it != buckets_[w].end() && it->second > 0) {
        return g_.StampStartUs((b + kBucketsPerWindow) * g_.ratio[w]);
      }
    }
    return 0;
  }
  int64_t RetryAt(int w, int64_t limit, int64_t cost) const {
    const int64_t used = Used(w);
    if (limit <= 0 || used + cost <= limit) return 0;
    if (cost > limit) return kNever;
    int64_t left = used;
    for (int64_t b = Newest(w) - 60; b <= Newest(w); ++b) {
      auto it = buckets_[w].find(b);
      if (it != buckets_[w].end()) left -= it->second;
      if (left + cost <= limit) return g_.StampStartUs((b + kBucketsPerWindow) * g_.ratio[w]);
    }
    return 0;
  }

 private:
  const ClassGeometry& g_;
  int64_t stamp_ = 0;
  std::vector<std::map<int64_t, int64_t>> buckets_;
};

struct Case {
  std::vector<int64_t> window_seconds;
  friend void PrintTo(const Case& c, std::ostream* os) {
    *os << "windows of";
    for (int64_t s : c.window_seconds) *os << " " << s << "s";
  }
};

class MeterWindowsTest : public ::testing::TestWithParam<Case> {};

TEST_P(MeterWindowsTest, EveryFigureMatchesAnExactModelOfTheBuckets) {
  const uint64_t seed = absl::Uniform<uint64_t>(absl::BitGen());
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 gen(seed);
  const ClassGeometry g = Geometry(GetParam().window_seconds);
  const int n = g.windows();
  for (int round = 0; round < 20; ++round) {
    SlidingWindows windows(g);
    Model model(g);
    // Costs of one scale per round, so that counts grow into one width after another.
    // Half of them small (the 4- and 8-bit widths and their edges), half anywhere up to 2^40.
    const int64_t scale =
        int64_t{1} << (round % 2 == 0 ? absl::Uniform(gen, 0, 4) : absl::Uniform(gen, 0, 41));
    std::vector<int64_t> limits(n);
    for (int w = 0; w < n; ++w) {
      limits[w] = absl::Bernoulli(gen, 0.2) ? 0 : scale * absl::Uniform<int64_t>(gen, 1, 400);
    }
    std::vector<int64_t> stamps;  // where units were counted, for give-backs
    int64_t now = kOrigin + absl::Uniform<int64_t>(gen, 0, g.window_us.back());
    for (int step = 0; step < 600; ++step) {
      SCOPED_TRACE(absl::StrCat("round ", round, " step ", step));
      switch (absl::Uniform(gen, 0, 8)) {
        case 0:
          break;  // the same instant
        case 1:
          now -= absl::Uniform<int64_t>(gen, 0, g.base_us);  // back: treated as the latest
          break;
        case 2:
          now += absl::Uniform<int64_t>(gen, 0, 70 * g.window_us.back());  // far
          break;
        case 3:
          now += absl::Uniform<int64_t>(gen, 0, g.window_us.back());
          break;
        default:
          now += absl::Uniform<int64_t>(gen, 0, g.base_us / 20 + 1);  // a fraction of one
          break;
      }
      const int64_t cost = absl::Uniform<int64_t>(gen, 0, 3 * scale + 1);
      const int op = absl::Uniform(gen, 0, 10);
      if (op < 6) {
        model.Advance(now);
        const bool fits = model.Fits(limits, cost);
        const WindowOutcome o = windows.TryAdmit(now, limits, cost);
        ASSERT_EQ(o.admitted, fits);
        ASSERT_EQ(o.stamp, model.stamp());
        if (fits) {
          model.Add(cost);
          stamps.push_back(o.stamp);
        }
        for (int w = 0; w < n; ++w) {
          ASSERT_EQ(o.windows[w].used, model.Used(w)) << "window " << w;
          ASSERT_EQ(o.windows[w].free_at_us, model.FreeAt(w)) << "window " << w;
          ASSERT_EQ(o.windows[w].retry_at_us, fits ? 0 : model.RetryAt(w, limits[w], cost))
              << "window " << w;
        }
      } else if (op < 8 && !stamps.empty()) {
        const int64_t stamp = stamps[absl::Uniform<size_t>(gen, 0, stamps.size())];
        windows.GiveBack(stamp, cost);
        model.Subtract(stamp, cost);
      } else {
        model.Advance(now);
        ASSERT_EQ(windows.Charge(now, cost), model.stamp());
        model.Add(cost);
        stamps.push_back(model.stamp());
      }
      model.Advance(now);
      const WindowOutcome r = windows.Read(now, limits, cost);
      for (int w = 0; w < n; ++w) {
        ASSERT_EQ(r.windows[w].used, model.Used(w)) << "window " << w;
        ASSERT_EQ(r.windows[w].free_at_us, model.FreeAt(w)) << "window " << w;
        ASSERT_EQ(r.windows[w].retry_at_us, model.RetryAt(w, limits[w], cost)) << "window " << w;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Geometries, MeterWindowsTest,
                         ::testing::Values(Case{{1}}, Case{{60}}, Case{{1, 5}}, Case{{60, 86400}},
                                           Case{{2, 4, 60}},
                                           Case{{1, 3, 9, 27, 81, 243, 729, 2187}}));

// A restored object counts what the restored rows say, in every width.
TEST(MeterWindowsTest, RestoreCountsEveryRowInItsBucket) {
  const ClassGeometry g = Geometry({60, 86400});
  for (int64_t count : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{300}, int64_t{70000},
                        int64_t{5'000'000'000}}) {
    SlidingWindows restored(g);
    const int64_t last = g.StampAt(kOrigin);
    restored.Restore({{last - 100, count}, {last - 30, count}, {last, count}, {last - 200000, 9}});
    const WindowOutcome o = restored.Read(kOrigin, {0, 0});
    EXPECT_EQ(o.windows[0].used, 2 * count) << count;  // the minute holds the last 60 stamps
    EXPECT_EQ(o.windows[1].used, 3 * count) << count;  // the day all but the oldest row
    EXPECT_EQ(o.stamp, last);
  }
}

}  // namespace
}  // namespace anyai::quota
