// The sliding windows of one meter (requests, tokens or spend) of one feature class for one
// tenant (internal to quota/; the public surface is engine.h): admits a cost only if every
// window has room for it and then counts it in all of them at once; gives back (part of) a
// cost later, into the sub-bucket it was counted in; charges an overage past the limits; and
// reports each window's figures. MeterWindows is the state itself, laid out in place inside a
// tenant's counters (meters.h) and guarded by their lock; SlidingWindows is the same behind a
// lock of its own, for code (and tests) that want one meter alone.
//
// Thread safety: MeterWindows is not thread-safe: every call must hold the lock that guards
// it (Meters::lock). SlidingWindows is thread-safe (one lock per object).
//
// Geometry. A class has n windows (the union of its plans' windows), W_0 the shortest; every
// W_w is a multiple m_w = W_w / W_0 of it (ValidatePlanTable checks). Time t (microseconds
// since the Unix epoch) falls in stamp s = floor(60 t / W_0): the sub-bucket of the shortest
// window, W_0/60 wide. Window w groups stamps into buckets b = floor(s / m_w), W_w/60 wide,
// and counts the 61 buckets [b - 60, b]. Because buckets are nested, one stamp lies in exactly
// one bucket of every window.
//
// Invariant (strictness): an admission at time t in bucket b of window w is admitted only if
// the buckets [b - 60, b] hold fewer than L_w (b = floor(60 t / W_w)). Every earlier admission
// at a > t - W_w lies in bucket floor(60 a / W_w) >= floor(60 t / W_w - 60) = b - 60, so it is
// counted: no interval of length W_w ever holds more than L_w admissions. A unit counted in
// bucket j is released when bucket j + 61 starts, at most W_w / 60 (one sub-bucket, rounded up
// to a microsecond) after it truly left the window: the allowed early refusal.
//
// State (all of it for one meter, in one block; see Bytes()):
//  * one tag for every window: the latest stamp s seen. Window w's newest bucket is s / m_w,
//    so the tag says which bucket each ring position holds (bucket j sits at j mod 61, for j
//    in [s / m_w - 60, s / m_w]); a time earlier than s is treated as s.
//  * per window, the exact sum of its 61 buckets, so that a decision reads one number per
//    window, and the age (0..60) of its oldest non-empty bucket, for the figures.
//  * the history: per window a ring of 61 counts, all of one width, the narrowest that holds
//    every count: 4 bits to start with (in place, in the block), then 8, 16, 32 or 64 bits (in a
//    separate allocation the object owns) once a count outgrows it. A light tenant's history
//    for two windows is thus 61 bytes.
// Moving the tag from s to s' > s expires, in each window, the buckets that leave it
// (subtracting them from the sum and zeroing their positions): at most 61 per window, and none
// to read when the window moved by 61 buckets or more (then it is simply cleared). Counts and
// sums saturate at kMaxCount; a saturated sum is recomputed from the ring when buckets expire.
#ifndef ANYAI_QUOTA_SLIDING_WINDOW_H_
#define ANYAI_QUOTA_SLIDING_WINDOW_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/types/span.h"
#include "quota/spin_lock.h"

namespace anyai::quota {

inline constexpr int kMaxWindowsPerClass = 8;
inline constexpr int kBucketsPerWindow = 61;  // the current bucket and 60 before it
inline constexpr int64_t kNever = INT64_MAX;

// Immutable layout of a class, shared by all its tenants.
struct ClassGeometry {
  int64_t base_us = 0;             // W_0, the shortest window, in microseconds
  std::vector<int64_t> window_us;  // ascending
  std::vector<int64_t> ratio;      // window_us[w] / base_us

  // ceil(2^64 / ratio[w]) for w > 0 (see Bucket()); filled by Prepare(), which the engine
  // calls once. Empty: Bucket() divides.
  std::vector<uint64_t> reciprocal;

  int windows() const { return static_cast<int>(window_us.size()); }
  void Prepare();
  // Window w's bucket of stamp s, s / ratio[w]: a multiplication rather than a division on the
  // hot path (exact for s < 2^40 and ratio[w] < 2^24, which stamps and windows are).
  int64_t Bucket(int w, int64_t s) const {
    if (w == 0) return s;  // ratio[0] is 1
    if (static_cast<size_t>(w) >= reciprocal.size()) return s / ratio[w];
    return static_cast<int64_t>(
        (static_cast<unsigned __int128>(static_cast<uint64_t>(s)) * reciprocal[w]) >> 64);
  }
  int64_t StampAt(int64_t t_us) const;
  // First microsecond of stamp `s` (rounded up).
  int64_t StampStartUs(int64_t s) const;
};

// What one window looked like at a decision. Trivial on purpose: only the class's windows are
// filled, and zeroing the unused rest showed up in profiles.
struct WindowFigures {
  int64_t used;        // counted now (including this request, if admitted)
  int64_t free_at_us;  // when the oldest counted unit frees; 0 if none is counted
  // Refusing windows: when room for the cost appears (kNever when the cost exceeds the limit);
  // else 0.
  int64_t retry_at_us;
};

// Entries [0, geometry.windows()) of `windows` are set; value-initialize (`{}`) for zeros.
struct WindowOutcome {
  bool admitted;
  int64_t stamp;  // the stamp the request was decided (and, if admitted, counted) in
  std::array<WindowFigures, kMaxWindowsPerClass> windows;
};

// One meter's windows, in place in a block of Bytes(windows) bytes (8-aligned) that Init()
// formats; Destroy() frees what it allocated. Not thread-safe (see above).
class MeterWindows {
 public:
  // The most a count or a sum holds; they saturate there. Base + count + cost (each at most
  // 2^61, a cost at most 2^50) stays within an int64.
  static constexpr int64_t kMaxCount = (int64_t{1} << 61) - 1;
  static constexpr int64_t kMaxStamp = (int64_t{1} << 40) - 1;

  static size_t Bytes(int windows);
  static MeterWindows* Init(void* at, int windows);
  void Destroy();

  // Loads (stamp, count) pairs into a fresh object.
  void Restore(const ClassGeometry& g, absl::Span<const std::pair<int64_t, int64_t>> stamp_counts);
  // Moves the tag to the stamp of `now_us` (never back); returns the current stamp.
  int64_t Advance(const ClassGeometry& g, int64_t now_us);
  // After Advance: whether every window has room for `cost` (limits[w] 0: unlimited).
  bool Fits(absl::Span<const int64_t> limits, int64_t cost) const;
  // After Advance: counts `amount` (>= 0) in the current bucket of every window (saturating).
  void Add(const ClassGeometry& g, int64_t amount);
  // Add() and then Figures() of an admission, in one pass.
  void Take(const ClassGeometry& g, int64_t amount, WindowOutcome& out);
  // Gives back `amount` (>= 0) units counted at `stamp` (an earlier Advance's), from every
  // window that still holds that stamp's bucket; no more than was counted there.
  void Subtract(const ClassGeometry& g, int64_t stamp, int64_t amount);
  // After Advance: the figures of every window into `out` (`refused`: with the time at which
  // room for `cost` appears, for a decision that did not count it).
  void Figures(const ClassGeometry& g, absl::Span<const int64_t> limits, int64_t cost, bool refused,
               WindowOutcome& out) const;
  // After Advance: whether no window counts anything.
  bool Empty() const;
  int64_t stamp() const { return stamp_; }

  // Units reserved by calls in flight (for reports); the engine's, kept here for locality.
  int64_t reserved = 0;

 private:
  static constexpr uint8_t kNoOldest = 255;

  MeterWindows() = default;
  int64_t* sums() { return reinterpret_cast<int64_t*>(this + 1); }
  const int64_t* sums() const { return reinterpret_cast<const int64_t*>(this + 1); }
  uint8_t* inline_history() { return reinterpret_cast<uint8_t*>(sums() + n_); }
  uint8_t* history() { return heap_ != nullptr ? heap_ : inline_history(); }
  const uint8_t* history() const {
    return heap_ != nullptr ? heap_ : const_cast<MeterWindows*>(this)->inline_history();
  }
  // Ring position of window w's bucket j (j >= 0).
  static int Pos(int w, int64_t j) {
    return w * kBucketsPerWindow +
           static_cast<int>(static_cast<uint64_t>(j) % uint64_t{kBucketsPerWindow});
  }
  // Count at ring position `i` (window-major: w * 61 + position).
  int64_t Get(int i) const;
  // Sets it, widening the history first if `v` does not fit.
  void Set(int i, int64_t v);
  void Widen(int64_t v);
  // Re-finds window w's oldest non-empty bucket (its newest is `b`) from age `from` down.
  void FindOldest(int w, int64_t b, int from);
  void Clear(int w);

  int64_t stamp_ = 0;
  uint8_t* heap_ = nullptr;  // the history once wider than 4 bits; owned
  uint8_t n_ = 0;
  uint8_t width_ = 0;  // 0: 4 bits, 1: 8, 2: 16, 3: 32, 4: 64
  uint8_t oldest_[kMaxWindowsPerClass] = {};
  // Followed by int64_t sums[n_], then the 4-bit history (61 n_ counts, rounded up to 8 bytes).
};

// MeterWindows behind its own lock. Thread-safe.
class SlidingWindows {
 public:
  explicit SlidingWindows(const ClassGeometry& geometry);
  ~SlidingWindows();
  SlidingWindows(const SlidingWindows&) = delete;
  SlidingWindows& operator=(const SlidingWindows&) = delete;

  // Loads (stamp, count) pairs; only for an object no other thread can see yet.
  void Restore(absl::Span<const std::pair<int64_t, int64_t>> stamp_counts);
  // Counts `cost` (>= 0) if every window has room for it, else refuses. limits[w] is the plan's
  // limit for window w, or 0 when the plan leaves it unlimited.
  WindowOutcome TryAdmit(int64_t now_us, absl::Span<const int64_t> limits, int64_t cost = 1);
  // Gives back `amount` (>= 0) units counted at `stamp` (a TryAdmit's or Charge's outcome
  // stamp); no more than was counted there.
  void GiveBack(int64_t stamp, int64_t amount);
  // Counts `amount` (>= 0) now whatever the limits (saturating). Returns the stamp it went in.
  int64_t Charge(int64_t now_us, int64_t amount);
  // The same figures as TryAdmit, for `cost`, without admitting.
  WindowOutcome Read(int64_t now_us, absl::Span<const int64_t> limits, int64_t cost = 1);

 private:
  const ClassGeometry& geometry_;
  SpinLock lock_;
  std::unique_ptr<uint64_t[]> block_;
  MeterWindows* windows_ ABSL_GUARDED_BY(lock_);
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_SLIDING_WINDOW_H_
