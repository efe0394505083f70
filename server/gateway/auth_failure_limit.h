// Failed authentications counted per client network (SPEC §3: "failed authentications are rate
// limited per client address"), so that API keys cannot be guessed at line rate: once a network
// (server/gateway/client_address.h, ClientNetwork) has failed `max_failures` times within the
// last `window`, RetryAfter says how long until it may present a key again.
//
//   AuthFailureLimit limit({.max_failures = 60, .window = absl::Minutes(1)});
//   if (absl::Duration wait = limit.RetryAfter(network, now); wait > absl::ZeroDuration()) {
//     return TooManyFailedAuthentications(wait);  // 429 / RESOURCE_EXHAUSTED, nothing looked up
//   }
//   if (/* the key is wrong */) limit.RecordFailure(network, now);
//
// Exact: it keeps the time of each failure still inside the window (at most max_failures of
// them per network; a request refused here is not a failure, it never reached the key store),
// so "60 per minute" means at most 60 failures in any interval of one minute. It counts nothing
// in any tenant's quotas: it is not the quota engine, and a network's failures are its own.
//
// Memory is bounded under a flood of addresses: at most `max_networks` networks are tracked.
// When that many are, those with no failure left in the window are dropped first; if more than
// three quarters remain, the quarter whose last failure is oldest is dropped too (they are the
// closest to being forgiven anyway). Each network costs its text and up to max_failures times.
//
// Thread safety: thread-safe. The networks are split over shards, each behind its own mutex;
// RetryAfter and RecordFailure take one shard's mutex for a hash lookup (a sweep, when a shard
// is full, is amortised over the insertions that filled it).
#ifndef ANYAI_SERVER_GATEWAY_AUTH_FAILURE_LIMIT_H_
#define ANYAI_SERVER_GATEWAY_AUTH_FAILURE_LIMIT_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::server {

class AuthFailureLimit {
 public:
  struct Options {
    // Failures allowed per network within `window`; 0 disables the limit.
    int max_failures = 60;
    absl::Duration window = absl::Minutes(1);
    // The most networks tracked at once (see above).
    size_t max_networks = 65536;
  };

  explicit AuthFailureLimit(Options options);
  AuthFailureLimit(const AuthFailureLimit&) = delete;
  AuthFailureLimit& operator=(const AuthFailureLimit&) = delete;

  // Zero when `network` may present a key at `now` (fewer than max_failures failures in the
  // window ending at `now`); otherwise how long until the oldest of its last max_failures
  // failures leaves the window.
  absl::Duration RetryAfter(std::string_view network, absl::Time now) const;

  // Counts one failed authentication of `network` at `now`. Times must come from one clock;
  // an earlier time than one already recorded for the network is taken as that time.
  void RecordFailure(std::string_view network, absl::Time now);

  // Networks currently tracked (for tests and the memory bound).
  size_t tracked() const;
  // Whether no network is tracked: then RetryAfter is zero for every one, and a caller can skip
  // working out its network. One relaxed load.
  bool empty() const { return networks_.load(std::memory_order_relaxed) == 0; }

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    // Failure times of each network, oldest first, all inside the window as of the last touch.
    absl::flat_hash_map<std::string, std::vector<absl::Time>> failures ABSL_GUARDED_BY(mu);
  };

  Shard& ShardOf(std::string_view network) const;
  // Makes room for one more network in a full shard (see the header comment).
  void Sweep(Shard& shard, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Forgets the quarter (at least one) of the shard's networks whose last failure is oldest.
  static void DropOldest(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const Options options_;
  const size_t per_shard_;
  mutable std::array<Shard, kShards> shards_;
  // The sum of the shards' sizes, updated under each shard's mutex; relaxed, as empty() only
  // skips work that would find nothing (a failure recorded concurrently may be missed by a
  // request that raced it, as it would be by one that came a moment earlier).
  std::atomic<size_t> networks_{0};
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_AUTH_FAILURE_LIMIT_H_
