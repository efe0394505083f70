// Small, bounded memos of renderings, so that a flood of one answer (a 429 while the same refusal
// repeats, SPEC §11) builds its wire forms once instead of once per call.
//
//   RenderMemo<Key, Value, 64>: the value rendered for a key. Direct-mapped: a key's hash picks
//     one slot, which keeps the last key and value seen there; a miss renders and replaces it.
//     The key must hold every input of the rendering (every field that reaches the client), and
//     equality must compare them all: a key that leaves one out hands one client another's
//     answer. errors.cc keeps RateLimited's statuses in one.
//
//   StatusRenderings<Value, 16>: what a front renders of an absl::Status (its grpc::Status, its
//     HTTP response), keyed by the identity of the status's representation: absl::Status copies
//     share one refcounted representation, so every copy of a status that RateLimited handed out
//     from its memo is found again, without reading its payloads. An entry holds a copy of the
//     status it rendered, which keeps that representation, and so the address of its message,
//     alive and unique: a status is found only if it is a copy of the very status rendered (a
//     status equal to it but built apart just misses). A status with an empty message (OK, or
//     a bare code, whose representation is inlined) is never memoized.
//
//   ErrorResponse(const absl::Status& s) {
//     thread_local StatusRenderings<HttpResponse> memo;
//     return memo.Get(s, [](const absl::Status& s) { return Render(s); });
//   }
//
// Thread safety: not thread-safe; meant to be thread_local (each thread its own memo, so no
// lock and no shared state). What they return is a copy, or a reference valid until the next
// Get on the same memo. Values shared from a memo across threads (an absl::Status copy) must be
// immutable or copy-on-write, as absl::Status is.
#ifndef ANYAI_SERVER_GATEWAY_RENDER_MEMO_H_
#define ANYAI_SERVER_GATEWAY_RENDER_MEMO_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"

namespace anyai::server {

template <typename Key, typename Value, size_t kSlots>
class RenderMemo {
  static_assert(kSlots > 0);

 public:
  // The value of `key` (whose hash is `hash`): the one kept for it, or `render(key)`'s, kept
  // from now on in place of whatever its slot held.
  template <typename Render>
  const Value& Get(const Key& key, size_t hash, Render render) {
    Entry& slot = slots_[hash % kSlots];
    if (!slot.filled || !(slot.key == key)) {
      ++misses_;
      slot.value = render(key);
      slot.key = key;
      slot.filled = true;
    }
    return slot.value;
  }

  // How many Gets rendered, for tests.
  int64_t misses() const { return misses_; }

 private:
  struct Entry {
    bool filled = false;
    Key key{};
    Value value{};
  };
  std::array<Entry, kSlots> slots_;
  int64_t misses_ = 0;
};

template <typename Value, size_t kSlots = 16>
class StatusRenderings {
  static_assert(kSlots > 0);

 public:
  // What `render(status)` gives: kept from the last time a copy of `status` was rendered here,
  // or rendered now (and kept, when `status` has a message).
  template <typename Render>
  Value Get(const absl::Status& status, Render render) {
    const char* const identity = status.message().data();
    if (status.message().empty() || identity == nullptr) return render(status);
    Entry& slot = slots_[(reinterpret_cast<uintptr_t>(identity) >> 4) % kSlots];
    // An empty slot's status is OK, whose message is empty: never `identity`.
    if (slot.status.message().data() != identity) {
      ++misses_;
      slot.value = render(status);
      slot.status = status;
    }
    return slot.value;
  }

  // How many Gets rendered, for tests.
  int64_t misses() const { return misses_; }

 private:
  struct Entry {
    absl::Status status;  // a copy: holds the representation whose message address is the key
    Value value{};
  };
  std::array<Entry, kSlots> slots_;
  int64_t misses_ = 0;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_RENDER_MEMO_H_
