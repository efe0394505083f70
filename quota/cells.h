// How the sliding windows (sliding_window.h) pack their state into atomic words, in two widths
// (internal to quota/):
//  * NarrowCell, 64-bit words: counts up to 2^23 - 1 next to a 40-bit stamp. Request windows,
//    whose limits are small, keep one word per counter and the hot path's plain loads.
//  * WideCell, 128-bit words: counts up to 2^61 next to a full 64-bit stamp. Token and spend
//    windows, which must count at least 2^40 per window. 2^61 keeps base + count + cost (each
//    at most 2^61, a cost at most 2^50) within an int64.
// Both give the same fields to the same algorithm: a head (stamp, count, sealed), a slot (last
// flushed stamp, sum, valid) and a cache (stamp tag, base, age of the oldest bucket).
//
// Thread safety: AtomicWord is an atomic; the cells are stateless. A 128-bit AtomicWord uses
// the GCC/Clang __atomic builtins, which libatomic implements with `lock cmpxchg16b` on x86-64
// (present on every x86-64 CPU this runs on) and LDXP/STXP or CASP on AArch64: lock-free in
// fact, though std::atomic's is_lock_free() says false for 16 bytes. A 128-bit load is a
// compare-and-swap, so it costs about as much as one (a few nanoseconds, uncontended).
#ifndef ANYAI_QUOTA_CELLS_H_
#define ANYAI_QUOTA_CELLS_H_

#include <algorithm>
#include <cstdint>

namespace anyai::quota {

// An atomic word of type W (uint64_t or unsigned __int128) through the __atomic builtins.
template <typename W>
class AtomicWord {
 public:
  AtomicWord() = default;
  AtomicWord(const AtomicWord&) = delete;
  AtomicWord& operator=(const AtomicWord&) = delete;

  W load(int order) const { return __atomic_load_n(&v_, order); }
  void store(W v, int order) { __atomic_store_n(&v_, v, order); }
  // On failure `expected` gets the current value.
  bool cas(W& expected, W desired, int success, int failure) {
    return __atomic_compare_exchange_n(&v_, &expected, desired, /*weak=*/false, success, failure);
  }

 private:
  alignas(sizeof(W)) W v_{0};
};

inline constexpr int kAcquire = __ATOMIC_ACQUIRE;
inline constexpr int kRelease = __ATOMIC_RELEASE;
inline constexpr int kAcqRel = __ATOMIC_ACQ_REL;
inline constexpr int kRelaxed = __ATOMIC_RELAXED;

// 64-bit words. head: [stamp : 40][count : 23][sealed : 1]; slot: [last stamp : 40][sum : 23]
// [valid : 1]; cache: [stamp tag : 34][base : 23][oldest age : 7], tag 0 never matching (then
// the low bits hold an invalidation sequence number, so that two invalidations differ).
struct NarrowCell {
  using Word = uint64_t;
  static constexpr int kStampBits = 40;
  static constexpr int kCountBits = 23;
  static constexpr uint64_t kStampMask = (uint64_t{1} << kStampBits) - 1;
  static constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
  static constexpr int64_t kMaxCount = static_cast<int64_t>(kCountMask);
  static constexpr int64_t kMaxStamp = static_cast<int64_t>(kStampMask);

  static constexpr Word Head(int64_t stamp, int64_t count, bool sealed) {
    return (static_cast<uint64_t>(stamp) & kStampMask) << 24 |
           (static_cast<uint64_t>(count) & kCountMask) << 1 | (sealed ? 1 : 0);
  }
  static constexpr int64_t HeadStamp(Word h) { return static_cast<int64_t>(h >> 24); }
  static constexpr int64_t HeadCount(Word h) { return static_cast<int64_t>((h >> 1) & kCountMask); }
  static constexpr bool HeadSealed(Word h) { return (h & 1) != 0; }

  static constexpr Word Slot(int64_t last_stamp, int64_t sum) {
    return Head(last_stamp, sum, true);
  }
  static constexpr bool SlotValid(Word v) { return (v & 1) != 0; }
  static constexpr int64_t SlotStamp(Word v) { return HeadStamp(v); }
  static constexpr int64_t SlotSum(Word v) { return HeadCount(v); }

  static constexpr uint64_t kTagModulus = (uint64_t{1} << 34) - 1;
  static constexpr uint64_t Tag(int64_t stamp) {
    return static_cast<uint64_t>(stamp) % kTagModulus + 1;
  }
  static constexpr Word Cache(int64_t stamp, int64_t base, int64_t age) {
    return Tag(stamp) << 30 | (static_cast<uint64_t>(base) & kCountMask) << 7 |
           static_cast<uint64_t>(age);
  }
  static constexpr Word InvalidCache(uint64_t sequence) { return sequence & ((1u << 30) - 1); }
  static constexpr bool CacheMatches(Word c, int64_t stamp) { return c >> 30 == Tag(stamp); }
  static constexpr int64_t CacheBase(Word c) { return static_cast<int64_t>((c >> 7) & kCountMask); }
  static constexpr int64_t CacheAge(Word c) { return static_cast<int64_t>(c & 127); }
  // Never an unsealed head (its sealed bit is set).
  static constexpr Word kWriting = ~Word{0};
};

// 128-bit words: the high half holds the stamp (head, slot) or tag (cache), the low half the
// count (head: count << 1 | sealed; slot: sum << 1 | valid); a cache is [tag : 56][age : 8]
// high and the base low.
struct WideCell {
  using Word = unsigned __int128;
  static constexpr int64_t kMaxCount = (int64_t{1} << 61) - 1;
  static constexpr int64_t kMaxStamp = NarrowCell::kMaxStamp;

  static constexpr Word Pack(uint64_t high, uint64_t low) {
    return static_cast<Word>(high) << 64 | low;
  }
  static constexpr uint64_t High(Word w) { return static_cast<uint64_t>(w >> 64); }
  static constexpr uint64_t Low(Word w) { return static_cast<uint64_t>(w); }

  static constexpr Word Head(int64_t stamp, int64_t count, bool sealed) {
    return Pack(static_cast<uint64_t>(stamp), static_cast<uint64_t>(count) << 1 | (sealed ? 1 : 0));
  }
  static constexpr int64_t HeadStamp(Word h) { return static_cast<int64_t>(High(h)); }
  static constexpr int64_t HeadCount(Word h) { return static_cast<int64_t>(Low(h) >> 1); }
  static constexpr bool HeadSealed(Word h) { return (Low(h) & 1) != 0; }

  static constexpr Word Slot(int64_t last_stamp, int64_t sum) {
    return Head(last_stamp, sum, true);
  }
  static constexpr bool SlotValid(Word v) { return (Low(v) & 1) != 0; }
  static constexpr int64_t SlotStamp(Word v) { return HeadStamp(v); }
  static constexpr int64_t SlotSum(Word v) { return HeadCount(v); }

  static constexpr Word Cache(int64_t stamp, int64_t base, int64_t age) {
    return Pack((static_cast<uint64_t>(stamp) + 1) << 8 | static_cast<uint64_t>(age),
                static_cast<uint64_t>(base));
  }
  static constexpr Word InvalidCache(uint64_t sequence) { return Pack(0, sequence); }
  static constexpr bool CacheMatches(Word c, int64_t stamp) {
    return High(c) >> 8 == static_cast<uint64_t>(stamp) + 1;
  }
  static constexpr int64_t CacheBase(Word c) { return static_cast<int64_t>(Low(c)); }
  static constexpr int64_t CacheAge(Word c) { return static_cast<int64_t>(High(c) & 255); }
  static constexpr Word kWriting = ~Word{0};
};

}  // namespace anyai::quota

#endif  // ANYAI_QUOTA_CELLS_H_
