#include "quota/sliding_window.h"

#include <algorithm>

namespace anyai::quota {
namespace {

constexpr int64_t kNoOldest = 127;

}  // namespace

int64_t ClassGeometry::StampAt(int64_t t_us) const {
  if (t_us <= 0) return 0;
  // 60 t fits in 64 bits until the year 6800; W_0 >= 1 s keeps the stamp within 40 bits.
  return std::min<int64_t>(t_us * 60 / base_us, NarrowCell::kMaxStamp);
}

int64_t ClassGeometry::StampStartUs(int64_t s) const {
  // ceil(s * W_0 / 60) without a 128-bit product: (s / 60) W_0 + ceil((s % 60) W_0 / 60).
  return (s / 60) * base_us + ((s % 60) * base_us + 59) / 60;
}

namespace {

// Both operands are at most Cell::kMaxCount (< 2^62), so the sum cannot overflow.
template <typename Cell>
int64_t SaturatingAdd(int64_t a, int64_t b) {
  return std::min(a + b, Cell::kMaxCount);
}

}  // namespace

template <typename Cell>
BasicSlidingWindows<Cell>::BasicSlidingWindows(const ClassGeometry& geometry)
    : geometry_(geometry), caches_(new AtomicWord<Word>[geometry.windows()]) {}

template <typename Cell>
BasicSlidingWindows<Cell>::~BasicSlidingWindows() {
  delete[] slots_.load(std::memory_order_relaxed);
  delete refusal_.load(std::memory_order_relaxed);
}

template <typename Cell>
bool BasicSlidingWindows<Cell>::ReadCachedRefusal(Word head, int64_t cost,
                                                  absl::Span<const int64_t> limits,
                                                  WindowOutcome& out) const {
  const RefusalCache* cache = refusal_.load(std::memory_order_acquire);
  if (cache == nullptr) return false;
  const uint64_t version = cache->version.load(std::memory_order_acquire);
  if (version % 2 != 0) return false;  // being written
  if (cache->head.load(kAcquire) != head || cache->cost.load(std::memory_order_acquire) != cost ||
      cache->limits.load(std::memory_order_acquire) != limits.data() ||
      cache->refunds.load(std::memory_order_acquire) != refunds_.load(std::memory_order_acquire)) {
    return false;
  }
  for (int w = 0; w < geometry_.windows(); ++w) {
    out.windows[w] =
        WindowFigures{.used = cache->fields[3 * w].load(std::memory_order_acquire),
                      .free_at_us = cache->fields[3 * w + 1].load(std::memory_order_acquire),
                      .retry_at_us = cache->fields[3 * w + 2].load(std::memory_order_acquire)};
  }
  return cache->version.load(std::memory_order_acquire) == version && head_.load(kAcquire) == head;
}

template <typename Cell>
void BasicSlidingWindows<Cell>::CacheRefusal(Word head, int64_t cost,
                                             absl::Span<const int64_t> limits, uint64_t refunds,
                                             const WindowOutcome& out) {
  RefusalCache* cache = refusal_.load(std::memory_order_acquire);
  if (cache == nullptr) {
    auto* fresh = new RefusalCache;
    if (refusal_.compare_exchange_strong(cache, fresh, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      cache = fresh;
    } else {
      delete fresh;  // never seen by anyone
    }
  }
  uint64_t version = cache->version.load(std::memory_order_relaxed);
  if (version % 2 != 0 ||
      !cache->version.compare_exchange_strong(version, version + 1, std::memory_order_acq_rel,
                                              std::memory_order_relaxed)) {
    return;  // being written by another thread
  }
  cache->head.store(head, kRelease);
  cache->cost.store(cost, std::memory_order_release);
  cache->limits.store(limits.data(), std::memory_order_release);
  cache->refunds.store(refunds, std::memory_order_release);
  for (int w = 0; w < geometry_.windows(); ++w) {
    cache->fields[3 * w].store(out.windows[w].used, std::memory_order_release);
    cache->fields[3 * w + 1].store(out.windows[w].free_at_us, std::memory_order_release);
    cache->fields[3 * w + 2].store(out.windows[w].retry_at_us, std::memory_order_release);
  }
  cache->version.store(version + 2, std::memory_order_release);
}

template <typename Cell>
AtomicWord<typename Cell::Word>* BasicSlidingWindows<Cell>::SlotsForWriting() {
  AtomicWord<Word>* slots = Slots();
  if (slots != nullptr) return slots;
  const int n = geometry_.windows() * kBucketsPerWindow;
  auto* fresh = new AtomicWord<Word>[n];  // zero: invalid
  if (slots_.compare_exchange_strong(slots, fresh, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
    return fresh;
  }
  delete[] fresh;  // another thread published first; ours was never seen
  return slots;
}

template <typename Cell>
void BasicSlidingWindows<Cell>::Restore(
    absl::Span<const std::pair<int64_t, int64_t>> stamp_counts) {
  if (stamp_counts.empty()) return;
  int64_t last = 0;
  for (const auto& [stamp, count] : stamp_counts) last = std::max(last, stamp);
  last = std::min<int64_t>(last, Cell::kMaxStamp);
  int64_t head_count = 0;
  for (const auto& [stamp, count] : stamp_counts) {
    if (count <= 0 || stamp < 0) continue;
    if (stamp == last) {
      head_count = SaturatingAdd<Cell>(head_count, count);
      continue;
    }
    for (int w = 0; w < geometry_.windows(); ++w) {
      const int64_t m = geometry_.ratio[w];
      const int64_t b = stamp / m;
      if (b < last / m - (kBucketsPerWindow - 1)) continue;  // already out of the window
      AtomicWord<Word>& slot = SlotsForWriting()[w * kBucketsPerWindow + b % kBucketsPerWindow];
      const Word v = slot.load(kRelaxed);
      if (Cell::SlotValid(v) && Cell::SlotStamp(v) / m == b) {
        slot.store(Cell::Slot(std::max(Cell::SlotStamp(v), stamp),
                              SaturatingAdd<Cell>(Cell::SlotSum(v), count)),
                   kRelaxed);
      } else if (!Cell::SlotValid(v) || Cell::SlotStamp(v) / m < b) {
        slot.store(Cell::Slot(stamp, std::min(count, Cell::kMaxCount)), kRelaxed);
      }
    }
  }
  head_.store(Cell::Head(last, head_count, false), kRelease);
}

template <typename Cell>
void BasicSlidingWindows<Cell>::Flush(int64_t stamp, int64_t count) {
  AtomicWord<Word>* slots = SlotsForWriting();
  for (int w = 0; w < geometry_.windows(); ++w) {
    const int64_t m = geometry_.ratio[w];
    const int64_t b = stamp / m;
    AtomicWord<Word>& slot = slots[w * kBucketsPerWindow + b % kBucketsPerWindow];
    Word v = slot.load(kAcquire);
    for (;;) {
      Word next;
      if (!Cell::SlotValid(v) || Cell::SlotStamp(v) / m < b) {
        next = Cell::Slot(stamp, count);  // empty, or a bucket that has left the window
      } else if (Cell::SlotStamp(v) / m == b) {
        if (Cell::SlotStamp(v) >= stamp) break;  // this stamp is already in
        next = Cell::Slot(stamp, SaturatingAdd<Cell>(Cell::SlotSum(v), count));
      } else {
        break;  // a newer bucket: this flush is stale, the head has moved past it
      }
      if (slot.cas(v, next, kAcqRel, kAcquire)) break;
    }
  }
}

template <typename Cell>
typename Cell::Word BasicSlidingWindows<Cell>::Advance(int64_t s_now) {
  Word h = head_.load(kAcquire);
  for (;;) {
    const int64_t s = Cell::HeadStamp(h);
    if (Cell::HeadSealed(h)) {
      Flush(s, Cell::HeadCount(h));
      const Word next = Cell::Head(std::max(s_now, s + 1), 0, false);
      if (head_.cas(h, next, kAcqRel, kAcquire)) return next;
      continue;
    }
    if (s >= s_now) return h;
    const Word next = Cell::HeadCount(h) == 0 ? Cell::Head(s_now, 0, false)
                                              : Cell::Head(s, Cell::HeadCount(h), true);
    if (head_.cas(h, next, kAcqRel, kAcquire)) h = next;
  }
}

template <typename Cell>
void BasicSlidingWindows<Cell>::Scan(int w, int64_t s,
                                     std::array<int64_t, kBucketsPerWindow>& counts) const {
  const int64_t b = s / geometry_.ratio[w];
  const AtomicWord<Word>* slots = Slots();
  for (int k = 0; k < kBucketsPerWindow; ++k) {
    const int64_t j = b - (kBucketsPerWindow - 1) + k;
    counts[k] = 0;
    if (j < 0 || slots == nullptr) continue;
    const Word v = slots[w * kBucketsPerWindow + j % kBucketsPerWindow].load(kAcquire);
    if (Cell::SlotValid(v) && Cell::SlotStamp(v) / geometry_.ratio[w] == j) {
      counts[k] = Cell::SlotSum(v);
    }
  }
}

template <typename Cell>
std::pair<int64_t, int64_t> BasicSlidingWindows<Cell>::Base(int w, int64_t s, Word head) {
  Word cached = caches_[w].load(kAcquire);
  if (Cell::CacheMatches(cached, s)) return {Cell::CacheBase(cached), Cell::CacheAge(cached)};
  std::array<int64_t, kBucketsPerWindow> counts;
  Scan(w, s, counts);
  int64_t base = 0;
  int64_t age = kNoOldest;
  for (int k = 0; k < kBucketsPerWindow; ++k) {
    if (counts[k] > 0 && age == kNoOldest) age = kBucketsPerWindow - 1 - k;
    base = SaturatingAdd<Cell>(base, counts[k]);
  }
  // Publish only a snapshot taken under an unchanged head (a stale one would carry a wrong tag
  // anyway, since the head never returns to a stamp it left), and only over the value seen
  // before the scan: a refund meanwhile stored a fresh invalid value, and this base, computed
  // before it, is then too high to keep.
  if (head_.load(kAcquire) == head) {
    caches_[w].cas(cached, Cell::Cache(s, base, age), kAcqRel, kRelaxed);
  }
  return {base, age};
}

template <typename Cell>
void BasicSlidingWindows<Cell>::FillRefusal(int64_t s, int64_t c, absl::Span<const int64_t> limits,
                                            int64_t cost, WindowOutcome& out) const {
  for (int w = 0; w < geometry_.windows(); ++w) {
    const int64_t m = geometry_.ratio[w];
    const int64_t b = s / m;
    std::array<int64_t, kBucketsPerWindow> counts;
    Scan(w, s, counts);
    counts[kBucketsPerWindow - 1] = SaturatingAdd<Cell>(counts[kBucketsPerWindow - 1], c);
    int64_t total = 0;
    for (int64_t n : counts) total = SaturatingAdd<Cell>(total, n);
    WindowFigures& f = out.windows[w];
    f = WindowFigures{.used = total, .free_at_us = 0, .retry_at_us = 0};
    for (int k = 0; k < kBucketsPerWindow; ++k) {
      if (counts[k] > 0) {
        const int64_t oldest = b - (kBucketsPerWindow - 1) + k;
        f.free_at_us = geometry_.StampStartUs((oldest + kBucketsPerWindow) * m);
        break;
      }
    }
    if (limits[w] > 0 && total + cost > limits[w]) {
      if (cost > limits[w]) {
        f.retry_at_us = kNever;
        continue;
      }
      // Room for `cost` once enough of the oldest buckets have left: the first k after which
      // what is left plus the cost fits.
      int64_t left = total;
      for (int k = 0; k < kBucketsPerWindow; ++k) {
        left -= counts[k];
        if (left + cost <= limits[w]) {
          const int64_t j = b - (kBucketsPerWindow - 1) + k;
          f.retry_at_us = geometry_.StampStartUs((j + kBucketsPerWindow) * m);
          break;
        }
      }
    }
  }
}

template <typename Cell>
int64_t BasicSlidingWindows<Cell>::StampNow(int64_t now_us) const {
  // Most decisions fall in the head's own stamp: tell by a multiplication, not a division.
  const Word seen = head_.load(kRelaxed);
  return now_us < geometry_.StampStartUs(Cell::HeadStamp(seen) + 1)
             ? Cell::HeadStamp(seen)  // now is at or before the head's stamp
             : geometry_.StampAt(now_us);
}

template <typename Cell>
WindowOutcome BasicSlidingWindows<Cell>::TryAdmit(int64_t now_us, absl::Span<const int64_t> limits,
                                                  int64_t cost) {
  const int n = geometry_.windows();
  const int64_t s_now = StampNow(now_us);
  WindowOutcome out;
  for (;;) {
    Word h = Advance(s_now);
    const int64_t s = Cell::HeadStamp(h);
    const int64_t c = Cell::HeadCount(h);
    // Read before the bases: a refund after this shows in a later refusal cache check.
    const uint64_t refunds = refunds_.load(std::memory_order_acquire);
    std::pair<int64_t, int64_t> bases[kMaxWindowsPerClass];  // (base, age); not zeroed
    bool room = c + cost <= Cell::kMaxCount;
    for (int w = 0; w < n; ++w) {
      bases[w] = Base(w, s, h);
      if (limits[w] > 0 && bases[w].first + c + cost > limits[w]) room = false;
    }
    if (room) {
      if (cost > 0 && !head_.cas(h, Cell::Head(s, c + cost, false), kAcqRel, kRelaxed)) continue;
      out.admitted = true;
      out.stamp = s;
      for (int w = 0; w < n; ++w) {
        const int64_t b = w == 0 ? s : s / geometry_.ratio[w];  // ratio[0] is 1
        const auto [base, age] = bases[w];
        const int64_t used = SaturatingAdd<Cell>(base, c + cost);
        const int64_t oldest = base > 0 ? b - age : b;
        out.windows[w] = WindowFigures{
            .used = used,
            .free_at_us =
                used > 0 ? geometry_.StampStartUs((oldest + kBucketsPerWindow) * geometry_.ratio[w])
                         : 0,
            .retry_at_us = 0};
      }
      return out;
    }
    out.admitted = false;
    out.stamp = s;
    if (ReadCachedRefusal(h, cost, limits, out)) return out;
    FillRefusal(s, c, limits, cost, out);
    if (head_.load(kAcquire) != h) continue;
    CacheRefusal(h, cost, limits, refunds, out);
    return out;
  }
}

template <typename Cell>
void BasicSlidingWindows<Cell>::GiveBack(int64_t stamp, int64_t amount) {
  if (amount <= 0) return;
  Word h = head_.load(kAcquire);
  for (;;) {
    const int64_t s = Cell::HeadStamp(h);
    if (s < stamp) return;  // never counted here (a caller's bug): nothing to give back
    if (s == stamp) {
      if (Cell::HeadSealed(h)) {
        h = Advance(stamp + 1);  // finish the rollover: then the units are in the slots
        continue;
      }
      const int64_t c = Cell::HeadCount(h);
      if (head_.cas(h, Cell::Head(s, std::max<int64_t>(0, c - amount), false), kAcqRel, kAcquire)) {
        return;
      }
      continue;
    }
    break;  // the head is past `stamp`: its units are in the slots
  }
  AtomicWord<Word>* slots = Slots();
  if (slots == nullptr) return;  // restored into the head only, and the head moved on empty
  for (int w = 0; w < geometry_.windows(); ++w) {
    const int64_t m = geometry_.ratio[w];
    const int64_t b = stamp / m;
    AtomicWord<Word>& slot = slots[w * kBucketsPerWindow + b % kBucketsPerWindow];
    Word v = slot.load(kAcquire);
    while (Cell::SlotValid(v) && Cell::SlotStamp(v) / m == b) {
      const Word next =
          Cell::Slot(Cell::SlotStamp(v), std::max<int64_t>(0, Cell::SlotSum(v) - amount));
      if (slot.cas(v, next, kAcqRel, kAcquire)) break;
    }
  }
  const uint64_t sequence = refunds_.fetch_add(1, std::memory_order_acq_rel) + 1;
  for (int w = 0; w < geometry_.windows(); ++w) {
    caches_[w].store(Cell::InvalidCache(sequence), kRelease);
  }
}

template <typename Cell>
int64_t BasicSlidingWindows<Cell>::Charge(int64_t now_us, int64_t amount) {
  const int64_t s_now = StampNow(now_us);
  for (;;) {
    Word h = Advance(s_now);
    if (amount <= 0) return Cell::HeadStamp(h);
    const Word next =
        Cell::Head(Cell::HeadStamp(h), SaturatingAdd<Cell>(Cell::HeadCount(h), amount), false);
    if (head_.cas(h, next, kAcqRel, kRelaxed)) return Cell::HeadStamp(h);
  }
}

template <typename Cell>
WindowOutcome BasicSlidingWindows<Cell>::Read(int64_t now_us, absl::Span<const int64_t> limits,
                                              int64_t cost) {
  const int64_t s_now = geometry_.StampAt(now_us);
  WindowOutcome out;
  for (;;) {
    const Word h = Advance(s_now);
    FillRefusal(Cell::HeadStamp(h), Cell::HeadCount(h), limits, cost, out);
    if (head_.load(kAcquire) != h) continue;
    out.admitted = false;
    out.stamp = Cell::HeadStamp(h);
    return out;
  }
}

template class BasicSlidingWindows<NarrowCell>;
template class BasicSlidingWindows<WideCell>;

}  // namespace anyai::quota
