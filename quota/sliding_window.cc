#include "quota/sliding_window.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"

namespace anyai::quota {
namespace {

constexpr int64_t kMaxOfWidth[] = {15, 255, 65535, int64_t{0xffffffff}, MeterWindows::kMaxCount};

size_t RoundUp8(size_t n) { return (n + 7) / 8 * 8; }

// Bytes of a history of `cells` counts at width code `width`.
size_t HistoryBytes(int cells, int width) {
  return RoundUp8(width == 0 ? (static_cast<size_t>(cells) + 1) / 2
                             : static_cast<size_t>(cells) << (width - 1));
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return std::min(a + b, MeterWindows::kMaxCount);  // both at most kMaxCount: no overflow
}

}  // namespace

int64_t ClassGeometry::StampAt(int64_t t_us) const {
  if (t_us <= 0) return 0;
  // 60 t fits in 64 bits until the year 6800; W_0 >= 1 s keeps the stamp within 40 bits.
  return std::min<int64_t>(t_us * 60 / base_us, MeterWindows::kMaxStamp);
}

int64_t ClassGeometry::StampStartUs(int64_t s) const {
  // ceil(s * W_0 / 60) without a 128-bit product: (s / 60) W_0 + ceil((s % 60) W_0 / 60).
  // Unsigned (s >= 0): the divisions by 60 become a few instructions fewer.
  const uint64_t u = static_cast<uint64_t>(s);
  const uint64_t w0 = static_cast<uint64_t>(base_us);
  return static_cast<int64_t>((u / 60) * w0 + ((u % 60) * w0 + 59) / 60);
}

void ClassGeometry::Prepare() {
  reciprocal.assign(ratio.size(), 0);
  for (size_t w = 1; w < ratio.size(); ++w) {
    reciprocal[w] = ~uint64_t{0} / static_cast<uint64_t>(ratio[w]) + 1;
  }
}

size_t MeterWindows::Bytes(int windows) {
  return sizeof(MeterWindows) + sizeof(int64_t) * windows +
         HistoryBytes(windows * kBucketsPerWindow, 0);
}

MeterWindows* MeterWindows::Init(void* at, int windows) {
  static_assert(sizeof(MeterWindows) % 8 == 0);
  auto* m = new (at) MeterWindows;
  m->n_ = static_cast<uint8_t>(windows);
  std::fill_n(m->oldest_, kMaxWindowsPerClass, kNoOldest);
  std::fill_n(m->sums(), windows, 0);
  std::memset(m->inline_history(), 0, HistoryBytes(windows * kBucketsPerWindow, 0));
  return m;
}

void MeterWindows::Destroy() {
  delete[] reinterpret_cast<uint64_t*>(heap_);
  heap_ = nullptr;
}

// Inlined: on the hot path (Take) a call to each showed up in profiles.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline int64_t MeterWindows::Get(int i) const {
  const uint8_t* h = history();
  switch (width_) {
    case 0:
      return (h[i >> 1] >> ((i & 1) * 4)) & 15;
    case 1:
      return h[i];
    case 2:
      return reinterpret_cast<const uint16_t*>(h)[i];
    case 3:
      return reinterpret_cast<const uint32_t*>(h)[i];
    default:
      return reinterpret_cast<const int64_t*>(h)[i];
  }
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void MeterWindows::Set(int i, int64_t v) {
  if (ABSL_PREDICT_FALSE(v > kMaxOfWidth[width_])) Widen(v);
  uint8_t* h = history();
  switch (width_) {
    case 0: {
      const int shift = (i & 1) * 4;
      h[i >> 1] = static_cast<uint8_t>((h[i >> 1] & ~(15 << shift)) | (v << shift));
      return;
    }
    case 1:
      h[i] = static_cast<uint8_t>(v);
      return;
    case 2:
      reinterpret_cast<uint16_t*>(h)[i] = static_cast<uint16_t>(v);
      return;
    case 3:
      reinterpret_cast<uint32_t*>(h)[i] = static_cast<uint32_t>(v);
      return;
    default:
      reinterpret_cast<int64_t*>(h)[i] = v;
      return;
  }
}

void MeterWindows::Widen(int64_t v) {
  int width = width_;
  while (kMaxOfWidth[width] < v) ++width;
  const int cells = n_ * kBucketsPerWindow;
  auto* fresh = new uint64_t[HistoryBytes(cells, width) / 8];
  auto* bytes = reinterpret_cast<uint8_t*>(fresh);
  for (int i = 0; i < cells; ++i) {
    const int64_t c = Get(i);
    switch (width) {
      case 1:
        bytes[i] = static_cast<uint8_t>(c);
        break;
      case 2:
        reinterpret_cast<uint16_t*>(bytes)[i] = static_cast<uint16_t>(c);
        break;
      case 3:
        reinterpret_cast<uint32_t*>(bytes)[i] = static_cast<uint32_t>(c);
        break;
      default:
        reinterpret_cast<int64_t*>(bytes)[i] = c;
        break;
    }
  }
  delete[] reinterpret_cast<uint64_t*>(heap_);
  heap_ = bytes;
  width_ = static_cast<uint8_t>(width);
}

void MeterWindows::FindOldest(int w, int64_t b, int from) {
  oldest_[w] = kNoOldest;
  if (sums()[w] == 0) return;
  for (int age = from; age >= 0; --age) {
    const int64_t j = b - age;
    if (j < 0) continue;
    if (Get(Pos(w, j)) != 0) {
      oldest_[w] = static_cast<uint8_t>(age);
      return;
    }
  }
}

void MeterWindows::Clear(int w) {
  uint8_t* h = history();
  int first = w * kBucketsPerWindow;
  int end = first + kBucketsPerWindow;
  if (width_ == 0) {
    // Whole bytes at once; a nibble shared with a neighbouring window on its own.
    if (first & 1) Set(first++, 0);
    if (end & 1) Set(--end, 0);
    std::memset(h + first / 2, 0, (end - first) / 2);
  } else {
    std::memset(h + (static_cast<size_t>(first) << (width_ - 1)), 0,
                static_cast<size_t>(kBucketsPerWindow) << (width_ - 1));
  }
  sums()[w] = 0;
  oldest_[w] = kNoOldest;
}

void MeterWindows::Restore(const ClassGeometry& g,
                           absl::Span<const std::pair<int64_t, int64_t>> stamp_counts) {
  int64_t last = -1;
  for (const auto& [stamp, count] : stamp_counts) {
    if (count > 0 && stamp >= 0) last = std::max(last, stamp);
  }
  if (last < 0) return;
  last = std::min(last, kMaxStamp);
  stamp_ = last;
  for (const auto& [stamp, count] : stamp_counts) {
    if (count <= 0 || stamp < 0) continue;
    const int64_t k = std::min(count, kMaxCount);
    for (int w = 0; w < n_; ++w) {
      const int64_t m = g.ratio[w];
      const int64_t j = std::min(stamp, kMaxStamp) / m;
      if (j < last / m - (kBucketsPerWindow - 1)) continue;  // already out of the window
      const int i = Pos(w, j);
      Set(i, SaturatingAdd(Get(i), k));
      sums()[w] = SaturatingAdd(sums()[w], k);
    }
  }
  for (int w = 0; w < n_; ++w) FindOldest(w, last / g.ratio[w], kBucketsPerWindow - 1);
}

int64_t MeterWindows::Advance(const ClassGeometry& g, int64_t now_us) {
  // Most decisions fall in the current stamp: tell by one multiplication, not a division.
  // now < StampStartUs(s + 1) = ceil((s + 1) W_0 / 60) iff 60 now < (s + 1) W_0 (now an
  // integer); 128 bits, so that neither side can overflow.
  if (__int128{now_us} * 60 < __int128{stamp_ + 1} * g.base_us) return stamp_;
  const int64_t s = g.StampAt(now_us);
  if (s <= stamp_) return stamp_;
  int64_t* sum = sums();
  for (int w = 0; w < n_; ++w) {
    const int64_t from = g.Bucket(w, stamp_);
    const int64_t to = g.Bucket(w, s);
    const int64_t moved = to - from;
    if (moved == 0) continue;
    if (sum[w] == 0) continue;  // nothing counted: every position is zero already
    if (moved >= kBucketsPerWindow) {
      Clear(w);
      continue;
    }
    const bool saturated = sum[w] >= kMaxCount;
    // Bucket j takes the position of bucket j - 61, which leaves the window.
    for (int64_t j = from + 1; j <= to; ++j) {
      const int i = Pos(w, j);
      const int64_t v = Get(i);
      if (v == 0) continue;
      Set(i, 0);
      if (!saturated) sum[w] -= v;
    }
    if (saturated) {
      int64_t total = 0;
      for (int k = 0; k < kBucketsPerWindow; ++k) {
        total = SaturatingAdd(total, Get(w * kBucketsPerWindow + k));
      }
      sum[w] = total;
    }
    const int64_t age = oldest_[w] == kNoOldest ? kNoOldest : oldest_[w] + moved;
    if (age < kBucketsPerWindow) {
      oldest_[w] = static_cast<uint8_t>(age);
    } else {
      FindOldest(w, to, kBucketsPerWindow - 1);
    }
  }
  stamp_ = s;
  return s;
}

void MeterWindows::Take(const ClassGeometry& g, int64_t amount, WindowOutcome& out) {
  int64_t* sum = sums();
  out.stamp = stamp_;
  for (int w = 0; w < n_; ++w) {
    const int64_t b = g.Bucket(w, stamp_);
    if (amount > 0) {
      const int i = Pos(w, b);
      Set(i, SaturatingAdd(Get(i), amount));
      sum[w] = SaturatingAdd(sum[w], amount);
      if (oldest_[w] == kNoOldest) oldest_[w] = 0;
    }
    WindowFigures& f = out.windows[w];
    f = WindowFigures{.used = sum[w], .free_at_us = 0, .retry_at_us = 0};
    if (sum[w] > 0 && oldest_[w] != kNoOldest) {
      f.free_at_us = g.StampStartUs((b - oldest_[w] + kBucketsPerWindow) * g.ratio[w]);
    }
  }
}

bool MeterWindows::Fits(absl::Span<const int64_t> limits, int64_t cost) const {
  const int64_t* sum = sums();
  for (int w = 0; w < n_; ++w) {
    if (limits[w] > 0 && sum[w] + cost > limits[w]) return false;
  }
  return true;
}

void MeterWindows::Add(const ClassGeometry& g, int64_t amount) {
  if (amount <= 0) return;
  int64_t* sum = sums();
  for (int w = 0; w < n_; ++w) {
    const int64_t b = g.Bucket(w, stamp_);
    const int i = Pos(w, b);
    Set(i, SaturatingAdd(Get(i), amount));
    sum[w] = SaturatingAdd(sum[w], amount);
    if (oldest_[w] == kNoOldest) oldest_[w] = 0;
  }
}

void MeterWindows::Subtract(const ClassGeometry& g, int64_t stamp, int64_t amount) {
  if (amount <= 0 || stamp < 0 || stamp > stamp_) return;
  int64_t* sum = sums();
  for (int w = 0; w < n_; ++w) {
    const int64_t b = g.Bucket(w, stamp_);
    const int64_t j = g.Bucket(w, stamp);
    if (j < b - (kBucketsPerWindow - 1)) continue;  // that bucket has left the window
    const int i = Pos(w, j);
    const int64_t v = Get(i);
    const int64_t take = std::min(v, amount);
    if (take == 0) continue;
    Set(i, v - take);
    if (sum[w] >= kMaxCount) {
      int64_t total = 0;
      for (int k = 0; k < kBucketsPerWindow; ++k) {
        total = SaturatingAdd(total, Get(w * kBucketsPerWindow + k));
      }
      sum[w] = total;
    } else {
      sum[w] -= take;
    }
    if (v == take && b - j == oldest_[w]) FindOldest(w, b, static_cast<int>(b - j));
  }
}

void MeterWindows::Figures(const ClassGeometry& g, absl::Span<const int64_t> limits, int64_t cost,
                           bool refused, WindowOutcome& out) const {
  const int64_t* sum = sums();
  out.stamp = stamp_;
  for (int w = 0; w < n_; ++w) {
    const int64_t m = g.ratio[w];
    const int64_t b = g.Bucket(w, stamp_);
    const int64_t used = sum[w];
    WindowFigures& f = out.windows[w];
    f = WindowFigures{.used = used, .free_at_us = 0, .retry_at_us = 0};
    const int oldest = used > 0 ? oldest_[w] : kNoOldest;
    if (oldest != kNoOldest) f.free_at_us = g.StampStartUs((b - oldest + kBucketsPerWindow) * m);
    if (!refused || limits[w] <= 0 || used + cost <= limits[w]) continue;
    if (cost > limits[w]) {
      f.retry_at_us = kNever;
      continue;
    }
    if (oldest == kNoOldest) continue;  // cannot be: used + cost > limit >= cost
    // Room for `cost` once enough of the oldest buckets have left: the first after whose
    // leaving what is left plus the cost fits.
    int64_t left = used;
    for (int age = oldest; age >= 0; --age) {
      const int64_t j = b - age;
      left -= Get(Pos(w, j));
      if (left + cost <= limits[w]) {
        f.retry_at_us = g.StampStartUs((j + kBucketsPerWindow) * m);
        break;
      }
    }
  }
}

bool MeterWindows::Empty() const {
  const int64_t* sum = sums();
  for (int w = 0; w < n_; ++w) {
    if (sum[w] != 0) return false;
  }
  return true;
}

SlidingWindows::SlidingWindows(const ClassGeometry& geometry)
    : geometry_(geometry),
      block_(new uint64_t[MeterWindows::Bytes(geometry.windows()) / 8]),
      windows_(MeterWindows::Init(block_.get(), geometry.windows())) {}

SlidingWindows::~SlidingWindows() { windows_->Destroy(); }

void SlidingWindows::Restore(absl::Span<const std::pair<int64_t, int64_t>> stamp_counts) {
  SpinLockHolder l(&lock_);
  windows_->Restore(geometry_, stamp_counts);
}

WindowOutcome SlidingWindows::TryAdmit(int64_t now_us, absl::Span<const int64_t> limits,
                                       int64_t cost) {
  WindowOutcome out;
  SpinLockHolder l(&lock_);
  windows_->Advance(geometry_, now_us);
  out.admitted = windows_->Fits(limits, cost);
  if (out.admitted) windows_->Add(geometry_, cost);
  windows_->Figures(geometry_, limits, cost, !out.admitted, out);
  return out;
}

void SlidingWindows::GiveBack(int64_t stamp, int64_t amount) {
  SpinLockHolder l(&lock_);
  windows_->Subtract(geometry_, stamp, amount);
}

int64_t SlidingWindows::Charge(int64_t now_us, int64_t amount) {
  SpinLockHolder l(&lock_);
  const int64_t s = windows_->Advance(geometry_, now_us);
  windows_->Add(geometry_, amount);
  return s;
}

WindowOutcome SlidingWindows::Read(int64_t now_us, absl::Span<const int64_t> limits, int64_t cost) {
  WindowOutcome out;
  SpinLockHolder l(&lock_);
  windows_->Advance(geometry_, now_us);
  windows_->Figures(geometry_, limits, cost, /*refused=*/true, out);
  out.admitted = false;
  return out;
}

}  // namespace anyai::quota
