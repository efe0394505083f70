#include "quota/sliding_window.h"

#include <algorithm>

namespace anyai::quota {
namespace {

constexpr int kStampBits = 40;
constexpr int kCountBits = 23;
constexpr uint64_t kStampMask = (uint64_t{1} << kStampBits) - 1;
constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
constexpr int64_t kMaxCount = static_cast<int64_t>(kCountMask);

// head: [stamp : 40][count : 23][sealed : 1]
constexpr uint64_t PackHead(int64_t stamp, int64_t count, bool sealed) {
  return (static_cast<uint64_t>(stamp) & kStampMask) << 24 |
         (static_cast<uint64_t>(count) & kCountMask) << 1 | (sealed ? 1 : 0);
}
constexpr int64_t HeadStamp(uint64_t h) { return static_cast<int64_t>(h >> 24); }
constexpr int64_t HeadCount(uint64_t h) { return static_cast<int64_t>((h >> 1) & kCountMask); }
constexpr bool HeadSealed(uint64_t h) { return (h & 1) != 0; }

// slot: [stamp of the last flush : 40][sum : 23][valid : 1]. The last stamp names the bucket
// (stamp / m) exactly, and its order within the bucket makes flushes idempotent.
constexpr uint64_t PackSlot(int64_t last_stamp, int64_t sum) {
  return (static_cast<uint64_t>(last_stamp) & kStampMask) << 24 |
         (static_cast<uint64_t>(sum) & kCountMask) << 1 | 1;
}
constexpr bool SlotValid(uint64_t v) { return (v & 1) != 0; }
constexpr int64_t SlotStamp(uint64_t v) { return static_cast<int64_t>(v >> 24); }
constexpr int64_t SlotSum(uint64_t v) { return static_cast<int64_t>((v >> 1) & kCountMask); }

// cache: [stamp tag : 34][base : 23][oldest age : 7]; tag 0 never matches a stamp.
constexpr uint64_t kCacheTagModulus = (uint64_t{1} << 34) - 1;
constexpr int64_t kNoOldest = 127;
constexpr uint64_t CacheTag(int64_t stamp) {
  return static_cast<uint64_t>(stamp) % kCacheTagModulus + 1;
}
constexpr uint64_t PackCache(int64_t stamp, int64_t base, int64_t age) {
  return CacheTag(stamp) << 30 | (static_cast<uint64_t>(base) & kCountMask) << 7 |
         static_cast<uint64_t>(age);
}

int64_t SaturatingAdd(int64_t a, int64_t b) { return std::min(a + b, kMaxCount); }

}  // namespace

int64_t ClassGeometry::StampAt(int64_t t_us) const {
  if (t_us <= 0) return 0;
  // 60 t fits in 64 bits until the year 6800; W_0 >= 1 s keeps the stamp within 40 bits.
  return std::min<int64_t>(t_us * 60 / base_us, kStampMask);
}

int64_t ClassGeometry::StampStartUs(int64_t s) const {
  // ceil(s * W_0 / 60) without a 128-bit product: (s / 60) W_0 + ceil((s % 60) W_0 / 60).
  return (s / 60) * base_us + ((s % 60) * base_us + 59) / 60;
}

SlidingWindows::SlidingWindows(const ClassGeometry& geometry)
    : geometry_(geometry), caches_(new std::atomic<uint64_t>[geometry.windows()]) {
  for (int i = 0; i < geometry.windows(); ++i) caches_[i].store(0, std::memory_order_relaxed);
}

SlidingWindows::~SlidingWindows() {
  delete[] slots_.load(std::memory_order_relaxed);
  delete refusal_.load(std::memory_order_relaxed);
}

namespace {
// Never an unsealed head (its sealed bit is set): the refusal cache's "being written" tag.
constexpr uint64_t kWriting = ~uint64_t{0};
}  // namespace

bool SlidingWindows::ReadCachedRefusal(uint64_t head, WindowOutcome& out) const {
  const RefusalCache* cache = refusal_.load(std::memory_order_acquire);
  if (cache == nullptr || cache->tag.load(std::memory_order_acquire) != head) return false;
  for (int w = 0; w < geometry_.windows(); ++w) {
    out.windows[w] =
        WindowFigures{.used = cache->fields[3 * w].load(std::memory_order_acquire),
                      .free_at_us = cache->fields[3 * w + 1].load(std::memory_order_acquire),
                      .retry_at_us = cache->fields[3 * w + 2].load(std::memory_order_acquire)};
  }
  return cache->tag.load(std::memory_order_acquire) == head &&
         head_.load(std::memory_order_acquire) == head;
}

void SlidingWindows::CacheRefusal(uint64_t head, const WindowOutcome& out) {
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
  uint64_t tag = cache->tag.load(std::memory_order_relaxed);
  if (tag == kWriting || tag == head ||
      !cache->tag.compare_exchange_strong(tag, kWriting, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
    return;  // being written by another thread, or already there
  }
  for (int w = 0; w < geometry_.windows(); ++w) {
    cache->fields[3 * w].store(out.windows[w].used, std::memory_order_release);
    cache->fields[3 * w + 1].store(out.windows[w].free_at_us, std::memory_order_release);
    cache->fields[3 * w + 2].store(out.windows[w].retry_at_us, std::memory_order_release);
  }
  cache->tag.store(head, std::memory_order_release);
}

std::atomic<uint64_t>* SlidingWindows::SlotsForWriting() {
  std::atomic<uint64_t>* slots = Slots();
  if (slots != nullptr) return slots;
  const int n = geometry_.windows() * kBucketsPerWindow;
  auto* fresh = new std::atomic<uint64_t>[n];
  for (int i = 0; i < n; ++i) fresh[i].store(0, std::memory_order_relaxed);
  if (slots_.compare_exchange_strong(slots, fresh, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
    return fresh;
  }
  delete[] fresh;  // another thread published first; ours was never seen
  return slots;
}

void SlidingWindows::Restore(absl::Span<const std::pair<int64_t, int64_t>> stamp_counts) {
  if (stamp_counts.empty()) return;
  int64_t last = 0;
  for (const auto& [stamp, count] : stamp_counts) last = std::max(last, stamp);
  last = std::min<int64_t>(last, kStampMask);
  int64_t head_count = 0;
  for (const auto& [stamp, count] : stamp_counts) {
    if (count <= 0 || stamp < 0) continue;
    if (stamp == last) {
      head_count = SaturatingAdd(head_count, count);
      continue;
    }
    for (int w = 0; w < geometry_.windows(); ++w) {
      const int64_t m = geometry_.ratio[w];
      const int64_t b = stamp / m;
      if (b < last / m - (kBucketsPerWindow - 1)) continue;  // already out of the window
      std::atomic<uint64_t>& slot =
          SlotsForWriting()[w * kBucketsPerWindow + b % kBucketsPerWindow];
      const uint64_t v = slot.load(std::memory_order_relaxed);
      if (SlotValid(v) && SlotStamp(v) / m == b) {
        slot.store(PackSlot(std::max(SlotStamp(v), stamp), SaturatingAdd(SlotSum(v), count)),
                   std::memory_order_relaxed);
      } else if (!SlotValid(v) || SlotStamp(v) / m < b) {
        slot.store(PackSlot(stamp, std::min(count, kMaxCount)), std::memory_order_relaxed);
      }
    }
  }
  head_.store(PackHead(last, head_count, false), std::memory_order_release);
}

void SlidingWindows::Flush(int64_t stamp, int64_t count) {
  std::atomic<uint64_t>* slots = SlotsForWriting();
  for (int w = 0; w < geometry_.windows(); ++w) {
    const int64_t m = geometry_.ratio[w];
    const int64_t b = stamp / m;
    std::atomic<uint64_t>& slot = slots[w * kBucketsPerWindow + b % kBucketsPerWindow];
    uint64_t v = slot.load(std::memory_order_acquire);
    for (;;) {
      uint64_t next;
      if (!SlotValid(v) || SlotStamp(v) / m < b) {
        next = PackSlot(stamp, count);  // empty, or a bucket that has left the window
      } else if (SlotStamp(v) / m == b) {
        if (SlotStamp(v) >= stamp) break;  // this stamp is already in
        next = PackSlot(stamp, SaturatingAdd(SlotSum(v), count));
      } else {
        break;  // a newer bucket: this flush is stale, the head has moved past it
      }
      if (slot.compare_exchange_weak(v, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
        break;
      }
    }
  }
}

uint64_t SlidingWindows::Advance(int64_t s_now) {
  uint64_t h = head_.load(std::memory_order_acquire);
  for (;;) {
    const int64_t s = HeadStamp(h);
    if (HeadSealed(h)) {
      Flush(s, HeadCount(h));
      const uint64_t next = PackHead(std::max(s_now, s + 1), 0, false);
      if (head_.compare_exchange_strong(h, next, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        return next;
      }
      continue;
    }
    if (s >= s_now) return h;
    const uint64_t next =
        HeadCount(h) == 0 ? PackHead(s_now, 0, false) : PackHead(s, HeadCount(h), true);
    if (head_.compare_exchange_strong(h, next, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      h = next;
    }
  }
}

void SlidingWindows::Scan(int w, int64_t s, std::array<int64_t, kBucketsPerWindow>& counts) const {
  const int64_t b = s / geometry_.ratio[w];
  const std::atomic<uint64_t>* slots = Slots();
  for (int k = 0; k < kBucketsPerWindow; ++k) {
    const int64_t j = b - (kBucketsPerWindow - 1) + k;
    counts[k] = 0;
    if (j < 0 || slots == nullptr) continue;
    const uint64_t v =
        slots[w * kBucketsPerWindow + j % kBucketsPerWindow].load(std::memory_order_acquire);
    if (SlotValid(v) && SlotStamp(v) / geometry_.ratio[w] == j) counts[k] = SlotSum(v);
  }
}

std::pair<int64_t, int64_t> SlidingWindows::Base(int w, int64_t s, uint64_t head) {
  const uint64_t cached = caches_[w].load(std::memory_order_acquire);
  if (cached >> 30 == CacheTag(s)) {
    return {static_cast<int64_t>((cached >> 7) & kCountMask), static_cast<int64_t>(cached & 127)};
  }
  std::array<int64_t, kBucketsPerWindow> counts;
  Scan(w, s, counts);
  int64_t base = 0;
  int64_t age = kNoOldest;
  for (int k = 0; k < kBucketsPerWindow; ++k) {
    if (counts[k] > 0 && age == kNoOldest) age = kBucketsPerWindow - 1 - k;
    base = SaturatingAdd(base, counts[k]);
  }
  // Publish only a snapshot taken under an unchanged head; a stale one would carry a wrong
  // tag anyway, since the head never returns to a stamp it left.
  if (head_.load(std::memory_order_acquire) == head) {
    caches_[w].store(PackCache(s, base, age), std::memory_order_release);
  }
  return {base, age};
}

void SlidingWindows::FillRefusal(int64_t s, int64_t c, absl::Span<const int64_t> limits,
                                 WindowOutcome& out) const {
  for (int w = 0; w < geometry_.windows(); ++w) {
    const int64_t m = geometry_.ratio[w];
    const int64_t b = s / m;
    std::array<int64_t, kBucketsPerWindow> counts;
    Scan(w, s, counts);
    counts[kBucketsPerWindow - 1] = SaturatingAdd(counts[kBucketsPerWindow - 1], c);
    int64_t total = 0;
    for (int64_t n : counts) total = SaturatingAdd(total, n);
    WindowFigures& f = out.windows[w];
    f = WindowFigures{.used = total, .free_at_us = 0, .retry_at_us = 0};
    for (int k = 0; k < kBucketsPerWindow; ++k) {
      if (counts[k] > 0) {
        const int64_t oldest = b - (kBucketsPerWindow - 1) + k;
        f.free_at_us = geometry_.StampStartUs((oldest + kBucketsPerWindow) * m);
        break;
      }
    }
    if (limits[w] > 0 && total >= limits[w]) {
      int64_t left = total;
      for (int k = 0; k < kBucketsPerWindow; ++k) {
        left -= counts[k];
        if (left < limits[w]) {
          const int64_t j = b - (kBucketsPerWindow - 1) + k;
          f.retry_at_us = geometry_.StampStartUs((j + kBucketsPerWindow) * m);
          break;
        }
      }
    }
  }
}

WindowOutcome SlidingWindows::TryAdmit(int64_t now_us, absl::Span<const int64_t> limits) {
  const int n = geometry_.windows();
  // Most decisions fall in the head's own stamp: tell by a multiplication, not a division.
  const uint64_t seen = head_.load(std::memory_order_relaxed);
  const int64_t s_now = now_us < geometry_.StampStartUs(HeadStamp(seen) + 1)
                            ? HeadStamp(seen)  // now is at or before the head's stamp
                            : geometry_.StampAt(now_us);
  WindowOutcome out;
  for (;;) {
    uint64_t h = Advance(s_now);
    const int64_t s = HeadStamp(h);
    const int64_t c = HeadCount(h);
    std::pair<int64_t, int64_t> bases[kMaxWindowsPerClass];  // (base, age); not zeroed
    bool room = c < kMaxCount;
    for (int w = 0; w < n; ++w) {
      bases[w] = Base(w, s, h);
      if (limits[w] > 0 && bases[w].first + c >= limits[w]) room = false;
    }
    if (room) {
      if (!head_.compare_exchange_weak(h, PackHead(s, c + 1, false), std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        continue;
      }
      out.admitted = true;
      out.stamp = s;
      for (int w = 0; w < n; ++w) {
        const int64_t b = w == 0 ? s : s / geometry_.ratio[w];  // ratio[0] is 1
        const auto [base, age] = bases[w];
        const int64_t oldest = base > 0 ? b - age : b;
        out.windows[w] = WindowFigures{
            .used = SaturatingAdd(base, c + 1),
            .free_at_us = geometry_.StampStartUs((oldest + kBucketsPerWindow) * geometry_.ratio[w]),
            .retry_at_us = 0};
      }
      return out;
    }
    out.admitted = false;
    out.stamp = s;
    if (ReadCachedRefusal(h, out)) return out;
    FillRefusal(s, c, limits, out);
    if (head_.load(std::memory_order_acquire) != h) continue;
    CacheRefusal(h, out);
    return out;
  }
}

WindowOutcome SlidingWindows::Read(int64_t now_us, absl::Span<const int64_t> limits) {
  const int64_t s_now = geometry_.StampAt(now_us);
  WindowOutcome out;
  for (;;) {
    const uint64_t h = Advance(s_now);
    FillRefusal(HeadStamp(h), HeadCount(h), limits, out);
    if (head_.load(std::memory_order_acquire) != h) continue;
    out.admitted = false;
    out.stamp = HeadStamp(h);
    return out;
  }
}

}  // namespace anyai::quota
