// Hand-off state of cluster mode (SPEC §9): a UsageSink + UsageLoader that wraps a replica's own
// UsageStore (its RocksDB, crash-restart as in single-node mode) and also shares every tenant's
// window counts through PostgreSQL, so that when a tenant's owner changes the new owner starts
// from the counts the old one last flushed. The engine and the Gateway do not know: the server
// passes this object where it would pass the UsageStore.
//
//   auto handoff = HandoffUsage::Create(*usage_store, *pool, {.flush_interval = absl::Seconds(1)});
//   EngineOptions options{.sink = handoff->get(), .loader = handoff->get()};
//
// Record(changes): written to the UsageStore first (its result is Record's result: PostgreSQL is
// never on the path of an admission), then added to an in-memory table of unflushed deltas keyed
// by (tenant, class, meter, sub-bucket). A writer thread flushes that table every
// `flush_interval`: one INSERT ... ON CONFLICT DO UPDATE SET count = count + delta per flush (in
// chunks of kMaxRowsPerStatement rows, each its own statement), rows in key order so concurrent
// flushes of two replicas cannot deadlock. A flush that fails puts its deltas back, to be sent with
// the next one (an outage of PostgreSQL delays the hand-off state, it does not lose it while the
// replica lives). PostgreSQL's table anyai_usage(tenant, class, meter, bucket) -> count is thus the
// sum of every replica's flushed changes to that sub-bucket: refunds (negative deltas) included,
// and two replicas serving the same tenant at once (while a proxy's view changes) add up rather
// than overwrite each other. (GREATEST would keep a reservation's estimate after its refund, and
// "the owner's own total" would let a stale owner overwrite the new one's counts.)
//
// Load(tenant): the UsageStore's rows and PostgreSQL's rows of the tenant, merged by taking, per
// (class, meter, sub-bucket), the larger count. Both are lower bounds of what the tenant really
// charged in that sub-bucket: PostgreSQL holds every replica's flushed changes, the local store
// holds this replica's own changes (flushed or not). So:
//
//   Invariant. For each sub-bucket, Load returns at least max(what all replicas had flushed when
//   Load read PostgreSQL, what this replica itself recorded). The counts missing are only changes
//   other replicas recorded and had not flushed yet.
//   Bound. When a tenant's owner dies (or leaves without its final flush), the new owner misses at
//   most what the old owner admitted for that tenant in the last flush_interval before it died
//   (plus the length of a PostgreSQL outage then running, during which flushes fail and wait):
//   over-admission on failover <= one flush_interval of that tenant's traffic, per window. A
//   replica that stops cleanly flushes at destruction, so a planned leave misses nothing.
//   Limit. The engine loads a tenant once per residency. If ownership moves A -> B -> A while A
//   still holds the tenant in memory (A never restarted and the tenant was not idle long enough
//   to be evicted, EngineOptions::idle_timeout), A does not see B's counts: the over-admission is
//   then what B admitted meanwhile (at most one window's limit per window). A replica that died
//   and restarts, or a tenant that was evicted, loads again and is covered by the bound.
//   Unknown outcome. If a connection breaks while PostgreSQL commits a flush, the flush is
//   repeated (postgres_connection.h) and that delta is counted twice in PostgreSQL: the error is
//   over-counting, i.e. refusing early, never over-admission.
//
// If PostgreSQL cannot be read, Load fails UNAVAILABLE and the server applies its storage-failure
// policy to that tenant's call (fail closed: 503 until PostgreSQL is back; the next call loads
// again). Tenants already in memory are not affected by an outage.
//
// Retention. Each PostgreSQL row carries expires_us = the end of its sub-bucket + the meter's
// longest window + one sub-bucket (usage_schema.h's rule); rows past it are deleted by the writer
// thread every `prune_interval` (one DELETE over an index), so the table holds at most about one
// longest window of buckets per tenant. Unflushed deltas whose bucket has expired are dropped
// without being sent, and at most `max_pending_rows` unflushed rows are held (beyond that, new
// rows are not shared - counted in stats().dropped_rows - so an outage cannot exhaust memory).
//
// Thread safety: thread-safe; Record and Load may be called concurrently from any number of
// threads (the unflushed table is sharded by tenant). The UsageStore and the pool must outlive
// this object; its destructor stops the writer thread after one last flush.
#ifndef ANYAI_STORAGE_HANDOFF_USAGE_H_
#define ANYAI_STORAGE_HANDOFF_USAGE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "quota/engine.h"
#include "storage/postgres_connection.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"

namespace anyai::storage {

struct HandoffUsageOptions {
  // How often unflushed deltas are sent to PostgreSQL (the bound above). Positive.
  absl::Duration flush_interval = absl::Seconds(1);
  // How often expired rows are deleted from PostgreSQL. Positive.
  absl::Duration prune_interval = absl::Minutes(1);
  // The most unflushed rows held; at least 1.
  int64_t max_pending_rows = 1'000'000;
  // Now, for expiry. Tests freeze it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Without the writer thread: only FlushNow()/PruneNow() send anything (tests).
  bool start_writer = true;
};

// Counters of the writer, for metrics and tests.
struct HandoffStats {
  int64_t flushes = 0;         // flushes that reached PostgreSQL and succeeded
  int64_t flush_failures = 0;  // flushes that failed (their deltas were kept)
  int64_t rows_flushed = 0;    // rows sent by successful flushes
  int64_t dropped_rows = 0;    // deltas not shared: over max_pending_rows
  int64_t pending_rows = 0;    // unflushed rows now
  int64_t pruned_rows = 0;     // rows deleted from PostgreSQL as expired
  absl::Duration last_flush_latency = absl::ZeroDuration();
  absl::Duration total_flush_latency = absl::ZeroDuration();
};

class HandoffUsage final : public quota::UsageSink, public quota::UsageLoader {
 public:
  inline static constexpr int kMaxRowsPerStatement = 5000;

  // `local` and `pool` are borrowed. Tries to create PostgreSQL's table; if PostgreSQL is down
  // the object is made anyway (flushes and loads try again). INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<HandoffUsage>> Create(UsageStore& local, PostgresPool& pool,
                                                              HandoffUsageOptions options = {});
  ~HandoffUsage() override;
  HandoffUsage(const HandoffUsage&) = delete;
  HandoffUsage& operator=(const HandoffUsage&) = delete;

  absl::Status Record(absl::Span<const quota::Admission> changes) override;
  absl::StatusOr<std::vector<quota::BucketCount>> Load(std::string_view tenant) override;

  // Sends every unflushed delta now; the status of the flush (OK if there was nothing to send).
  absl::Status FlushNow();
  // Deletes PostgreSQL's expired rows now.
  absl::Status PruneNow();

  HandoffStats stats() const;

 private:
  struct RowKey {
    std::string tenant;
    int class_index = 0;
    int meter = 0;
    int64_t bucket = 0;

    friend bool operator==(const RowKey&, const RowKey&) = default;
    friend bool operator<(const RowKey& a, const RowKey& b) {
      return std::tie(a.tenant, a.class_index, a.meter, a.bucket) <
             std::tie(b.tenant, b.class_index, b.meter, b.bucket);
    }
    template <typename H>
    friend H AbslHashValue(H h, const RowKey& k) {
      return H::combine(std::move(h), k.tenant, k.class_index, k.meter, k.bucket);
    }
  };
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<RowKey, int64_t> pending ABSL_GUARDED_BY(mu);
  };
  static constexpr int kShards = 16;

  HandoffUsage(UsageStore& local, PostgresPool& pool, HandoffUsageOptions options);
  absl::Status EnsureSchema();
  Shard& ShardOf(std::string_view tenant);
  // Adds deltas back after a failed flush (or for a first time, from Record).
  void AddPending(std::vector<std::pair<RowKey, int64_t>> rows);
  void WriterLoop();
  int64_t ExpiresMicros(int class_index, quota::Meter meter, int64_t bucket) const;

  UsageStore& local_;
  PostgresPool& pool_;
  const HandoffUsageOptions options_;
  const UsageSchema& schema_;
  Shard shards_[kShards];
  std::atomic<int64_t> pending_rows_{0};
  std::atomic<int64_t> dropped_rows_{0};
  std::atomic<bool> schema_ready_{false};

  absl::Mutex flush_mu_;  // one flush at a time (the writer, FlushNow, the destructor)
  mutable absl::Mutex stats_mu_;
  HandoffStats stats_ ABSL_GUARDED_BY(stats_mu_);

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread writer_;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_HANDOFF_USAGE_H_
