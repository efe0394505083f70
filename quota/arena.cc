#include "quota/arena.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>

#include "absl/container/flat_hash_map.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ANYAI_QUOTA_ARENA_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ANYAI_QUOTA_ARENA_PASSTHROUGH 1
#endif
#endif

namespace anyai::quota {

#ifdef ANYAI_QUOTA_ARENA_PASSTHROUGH
void* ArenaAllocate(size_t bytes) { return ::operator new(bytes); }
void ArenaFree(void* p, size_t) { ::operator delete(p); }
#else
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kRegion = size_t{8} << 20;
constexpr size_t kLarge = size_t{1} << 20;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// `bytes` (a multiple of kHugePage) of fresh memory aligned to kHugePage, advised huge when
// `huge`.
char* MapAligned(size_t bytes, bool huge = true) {
  void* raw =
      mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = RoundUp(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = start + bytes + kHugePage - (aligned + bytes);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  if (huge) madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // may fail: advice
  return reinterpret_cast<char*>(aligned);
}

class Arena {
 public:
  void* Allocate(size_t bytes) {
    bytes = RoundUp(bytes, 8);
    if (bytes > kLarge) return MapAligned(RoundUp(bytes, kHugePage));
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = free_.find(bytes); it != free_.end() && it->second != nullptr) {
      Free* f = it->second;
      it->second = f->next;
      return f;
    }
    // 16-aligned blocks for sizes that are multiples of 16 (what operator new would give).
    if (bytes % 16 == 0)
      next_ = reinterpret_cast<char*>(RoundUp(reinterpret_cast<uintptr_t>(next_), 16));
    if (next_ == nullptr || next_ + bytes > end_) {
      // The first regions in small pages: an engine with a few thousand tenants (a test, a
      // small deployment) does not grow by a 2 MiB page at its first tenant.
      next_ = MapAligned(kRegion, /*huge=*/regions_ >= kSmallPageRegions);
      end_ = next_ + kRegion;
      ++regions_;
    }
    void* p = next_;
    next_ += bytes;
    return p;
  }

  void Release(void* p, size_t bytes) {
    bytes = RoundUp(bytes, 8);
    if (bytes > kLarge) {
      munmap(p, RoundUp(bytes, kHugePage));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    Free*& head = free_[bytes];
    head = new (p) Free{head};
  }

 private:
  struct Free {
    Free* next;
  };
  std::mutex mu_;
  static constexpr int kSmallPageRegions = 2;
  char* next_ = nullptr;
  char* end_ = nullptr;
  int regions_ = 0;
  absl::flat_hash_map<size_t, Free*> free_;
};

Arena& TheArena() {
  static Arena* arena = new Arena;  // never destroyed: blocks may be freed during exit
  return *arena;
}

}  // namespace

void* ArenaAllocate(size_t bytes) { return TheArena().Allocate(bytes); }
void ArenaFree(void* p, size_t bytes) { TheArena().Release(p, bytes); }
#endif

}  // namespace anyai::quota
