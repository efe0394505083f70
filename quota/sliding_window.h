// The sliding windows of one meter (requests, tokens or spend) of one feature class for one
// tenant: a lock-free counter that admits a cost only if every window has room for it, and then
// counts it in all of them at once; gives back (part of) a cost later, into the sub-bucket it was
// counted in; and charges an overage past the limits (internal to quota/; the public surface is
// engine.h). One algorithm in two word widths (cells.h): SlidingWindows (64-bit words, counts up
// to 2^23 - 1, for requests) and WideSlidingWindows (128-bit words, counts up to 2^61 - 1, for
// tokens and micro-USD).
//
// Thread safety: lock-free. Any number of threads may call TryAdmit/GiveBack/Charge/Read
// concurrently. Restore() is for a fresh object not yet shared.
//
// Geometry. A class has n windows (the union of its plans' windows), W_0 the shortest; every
// W_w is a multiple m_w = W_w / W_0 of it (ValidatePlanTable checks). Time t (microseconds
// since the Unix epoch) falls in stamp s = floor(60 t / W_0): the sub-bucket of the shortest
// window, W_0/60 wide. Window w groups stamps into buckets b = floor(s / m_w), W_w/60 wide,
// and counts the 61 buckets [b - 60, b]. Because buckets are nested, one stamp lies in exactly
// one bucket of every window, so one counter for the current stamp serves every window.
//
// Invariant (strictness): an admission at time t in bucket b of window w is admitted only if
// the buckets [b - 60, b] hold fewer than L_w (b = floor(60 t / W_w)). Every earlier admission
// at a > t - W_w lies in bucket floor(60 a / W_w) >= floor(60 t / W_w - 60) = b - 60, so it is
// counted: no interval of length W_w ever holds more than L_w admissions. A unit counted in bucket
// j is released when bucket j + 61 starts, at most W_w / 60 (one sub-bucket, rounded up to a
// microsecond) after it truly left the window: the allowed early refusal.
//
// State, in three kinds of atomic words (their packing in cells.h):
//  * head: (stamp s, count c, sealed) — units charged in the current stamp s, not yet in any
//    slot. Every admission of cost k is one compare-and-swap of head from (s, c) to
//    (s, c + k), taken only if every window's base + c + k is within its limit: the
//    linearization point, all windows at once (all-or-nothing).
//  * slots, 61 per window: (last flushed stamp, sum, valid) — the sealed units of bucket
//    b = last stamp / m_w, in ring position b mod 61. Allocated by the first flush and
//    published with a release CAS (a losing allocation is freed unseen).
//  * caches, one per window: (stamp tag, base, age of oldest non-empty bucket) — the sum of the
//    window's slots for the head's stamp, so that the hot path reads one word per window
//    instead of 61. Derived data: recomputed by anyone on a tag mismatch.
//
// Giving back (a refund, or a hold undone) k units counted at stamp r: if the head is unsealed
// at r, one CAS from (r, c) to (r, c - k); if the head is sealed at r, help the rollover first;
// if the head is past r, r's units are in the slots: for every window whose slot still holds
// bucket r / m_w, CAS its sum down by k (keeping its last stamp, so later flushes stay
// idempotent); a slot holding another bucket means r has left that window and there is nothing
// to give back there. So units only ever leave the bucket they were counted in, never an older
// or newer one: no window ever counts less than what was charged in it and not given back.
// A refund into the slots makes every cache of the stamp too high (never too low): it then
// stores a fresh invalid value in each cache, and a reader publishes a cache it computed only by
// a CAS from the value it saw before its scan, so a cache computed before the refund is never
// published after it. The refusal cache carries the refund count it was computed at.
// Head values may now repeat within a stamp ((s, c) -> (s, c + k) -> (s, c)): a CAS from a
// stale (s, c) then succeeds, but against the very same count and slots that are the same or
// lower, so its check was conservative. Across stamps a head never repeats (stamps only grow).
//
// Overage (Charge): k units added to the head at the current stamp without any limit check.
//
// Rollover (time reaches s' > s): if c = 0 the head moves straight to (s', 0). Otherwise
// head is first CASed to (s, c, sealed), which freezes c; then any thread that sees a sealed
// head (helping) flushes (s, c) into each window's slot for bucket floor(s / m_w), and CASes
// head to (max(s', s + 1), 0). A flush is idempotent: the slot records the last stamp flushed
// into it, so a second helper, or a stale one arriving late, changes nothing; a slot holding
// an older bucket is replaced, one holding a newer bucket is left alone.
// Hence while head is unsealed at s, every stamp < s is fully in the slots and only refunds
// (which only lower them, see below) can write them: a reader that sees the same unsealed head
// before and after reading slots (or caches) has a snapshot that is exact or, if a refund
// landed meanwhile, too high — never too low. A CAS that races a rollover fails because the
// head changed (stamps only grow, so a head never returns to a stamp it left), and the thread
// retries at the new stamp; the retry cannot double count because the count it read was never
// committed.
//
// Memory orderings: head is loaded with acquire and CASed with acq_rel; slot flushes are
// acq_rel CASes. A helper's flush therefore happens-before its head CAS (release), which
// happens-before any reader's acquire load of the new head, so readers see every flush. A
// refusal validates its snapshot with a second load of head (a seqlock read); slots and
// caches are read with acquire loads, so that second load cannot be ordered before them. An
// admission validates its snapshot with the CAS itself (release: earlier loads stay before).
#ifndef ANYAI_QUOTA_SLIDING_WINDOW_H_
#define ANYAI_QUOTA_SLIDING_WINDOW_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "quota/cells.h"

namespace anyai::quota {

inline constexpr int kMaxWindowsPerClass = 8;
inline constexpr int kBucketsPerWindow = 61;  // the current bucket and 60 before it
inline constexpr int64_t kNever = INT64_MAX;

// Immutable layout of a class, shared by all its tenants.
struct ClassGeometry {
  int64_t base_us = 0;             // W_0, the shortest window, in microseconds
  std::vector<int64_t> window_us;  // ascending
  std::vector<int64_t> ratio;      // window_us[w] / base_us

  int windows() const { return static_cast<int>(window_us.size()); }
  int64_t StampAt(int64_t t_us) const;
  // First microsecond of stamp `s` (rounded up).
  int64_t StampStartUs(int64_t s) const;
};

// What one window looked like at a decision. Trivial on purpose: TryAdmit fills only the
// class's windows, and zeroing the unused rest showed up in profiles.
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

template <typename Cell>
class BasicSlidingWindows {
 public:
  using Word = typename Cell::Word;
  // The most a counter holds; sums saturate there.
  static constexpr int64_t kMaxCount = Cell::kMaxCount;

  explicit BasicSlidingWindows(const ClassGeometry& geometry);
  ~BasicSlidingWindows();
  BasicSlidingWindows(const BasicSlidingWindows&) = delete;
  BasicSlidingWindows& operator=(const BasicSlidingWindows&) = delete;

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
  // The same figures as TryAdmit, for `cost`, without admitting (usage reports, eviction).
  WindowOutcome Read(int64_t now_us, absl::Span<const int64_t> limits, int64_t cost = 1);

 private:
  // Brings head to a stamp >= s_now, helping any sealed rollover. Returns the unsealed head.
  Word Advance(int64_t s_now);
  void Flush(int64_t stamp, int64_t count);
  // Window w's base (sum of slots) and oldest-bucket age at stamp s, through the cache.
  std::pair<int64_t, int64_t> Base(int w, int64_t s, Word head);
  void Scan(int w, int64_t s, std::array<int64_t, kBucketsPerWindow>& counts) const;
  void FillRefusal(int64_t s, int64_t c, absl::Span<const int64_t> limits, int64_t cost,
                   WindowOutcome& out) const;
  int64_t StampNow(int64_t now_us) const;

  // The figures of the last refusal, for the head value, cost, plan limits and refund count
  // they were computed at: while the head stays unsealed at that value and no refund lands in
  // the slots, the slots and the head's count are what they were, so the figures for that cost
  // and those limits cannot change, and a flood of refusals reads them instead of rescanning
  // 61 slots per window. A seqlock with its own version (head values may repeat within a
  // stamp, so the head cannot be the version): a writer CASes the version from even v to v + 1
  // (acq_rel), stores the key and the fields with release, then stores v + 2 (release); a reader
  // loads the version (acquire; odd: being written), the key and fields (acquire), and the
  // version again, and trusts them only if the version is unchanged, the key is its own and the
  // head has not moved. A release field store seen by a reader makes the writer's v + 1 visible
  // to its second version load. Allocated on the first refusal; writers that lose the CAS
  // simply do not cache.
  struct RefusalCache {
    std::atomic<uint64_t> version{0};
    AtomicWord<Word> head;
    std::atomic<int64_t> cost{0};
    std::atomic<const int64_t*> limits{nullptr};  // the plan's (the engine's layout owns them)
    std::atomic<uint64_t> refunds{0};
    std::atomic<int64_t> fields[3 * kMaxWindowsPerClass];
  };
  bool ReadCachedRefusal(Word head, int64_t cost, absl::Span<const int64_t> limits,
                         WindowOutcome& out) const;
  void CacheRefusal(Word head, int64_t cost, absl::Span<const int64_t> limits, uint64_t refunds,
                    const WindowOutcome& out);

  // The slots, allocated by the first flush (most tenants never roll a count over, and the
  // slots are most of a tenant's memory); null reads as all-empty.
  AtomicWord<Word>* Slots() const { return slots_.load(std::memory_order_acquire); }
  AtomicWord<Word>* SlotsForWriting();

  const ClassGeometry& geometry_;
  AtomicWord<Word> head_;
  std::unique_ptr<AtomicWord<Word>[]> caches_;
  // Refunds that landed in the slots so far: invalidates caches (see above).
  std::atomic<uint64_t> refunds_{0};
  // Window-major, kBucketsPerWindow each; owned, published once with a release CAS.
  std::atomic<AtomicWord<Word>*> slots_{nullptr};
  std::atomic<RefusalCache*> refusal_{nullptr};  // owned; allocated like the slots
};

using SlidingWindows = BasicSlidingWindows<NarrowCell>;
using WideSlidingWindows = BasicSlidingWindows<WideCell>;
extern template class BasicSlidingWindows<NarrowCell>;
extern template class BasicSlidingWindows<WideCell>;

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_SLIDING_WINDOW_H_
