#include "storage/handoff_usage.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace anyai::storage {
namespace {

constexpr char kTable[] =
    "CREATE TABLE IF NOT EXISTS anyai_usage ("
    " tenant bytea NOT NULL,"
    " class bytea NOT NULL,"
    " meter smallint NOT NULL,"
    " bucket bigint NOT NULL,"
    " count bigint NOT NULL,"
    " expires_us bigint NOT NULL,"
    " PRIMARY KEY (tenant, class, meter, bucket))";
constexpr char kIndex[] =
    "CREATE INDEX IF NOT EXISTS anyai_usage_expires ON anyai_usage (expires_us)";

// Tenants and class names are arbitrary bytes: they travel as hex inside text arrays (whose
// literal syntax then needs no escaping) and are decoded by PostgreSQL.
constexpr char kUpsert[] =
    "INSERT INTO anyai_usage (tenant, class, meter, bucket, count, expires_us)"
    " SELECT decode(t, 'hex'), decode(c, 'hex'), m, b, d, e"
    " FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[],"
    " $6::bigint[]) AS u(t, c, m, b, d, e)"
    " ON CONFLICT (tenant, class, meter, bucket) DO UPDATE"
    " SET count = anyai_usage.count + EXCLUDED.count,"
    " expires_us = GREATEST(anyai_usage.expires_us, EXCLUDED.expires_us)";

std::string Hex(std::string_view s) {
  return absl::BytesToHexString(absl::string_view(s.data(), s.size()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HandoffUsage>> HandoffUsage::Create(UsageStore& local,
                                                                   PostgresPool& pool,
                                                                   HandoffUsageOptions options) {
  if (options.flush_interval <= absl::ZeroDuration() ||
      options.prune_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("hand-off flush and prune intervals must be positive");
  }
  if (options.max_pending_rows < 1) {
    return absl::InvalidArgumentError("max_pending_rows must be at least 1");
  }
  auto handoff = std::unique_ptr<HandoffUsage>(new HandoffUsage(local, pool, std::move(options)));
  (void)handoff->EnsureSchema();  // down now: flushes and loads try again
  if (handoff->options_.start_writer) {
    handoff->writer_ = std::thread([h = handoff.get()] { h->WriterLoop(); });
  }
  return handoff;
}

HandoffUsage::HandoffUsage(UsageStore& local, PostgresPool& pool, HandoffUsageOptions options)
    : local_(local), pool_(pool), options_(std::move(options)), schema_(local.schema()) {}

HandoffUsage::~HandoffUsage() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  (void)FlushNow();  // a planned leave hands everything over
}

absl::Status HandoffUsage::EnsureSchema() {
  if (schema_ready_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::StatusOr<PgResult> table = pool_.Exec(kTable);
  if (!table.ok()) return table.status();
  absl::StatusOr<PgResult> index = pool_.Exec(kIndex);
  if (!index.ok()) return index.status();
  schema_ready_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

HandoffUsage::Shard& HandoffUsage::ShardOf(std::string_view tenant) {
  return shards_[absl::HashOf(tenant) % kShards];
}

int64_t HandoffUsage::ExpiresMicros(int class_index, quota::Meter meter, int64_t bucket) const {
  const MeterWindows& windows = schema_.at(class_index).of(meter);
  const int64_t width = absl::ToInt64Microseconds(windows.sub_bucket);
  const int64_t keep = absl::ToInt64Microseconds(windows.longest_window) + width;
  if (width <= 0 || bucket > (std::numeric_limits<int64_t>::max() - keep) / width - 1) {
    return std::numeric_limits<int64_t>::max();
  }
  return (bucket + 1) * width + keep;
}

absl::Status HandoffUsage::Record(absl::Span<const quota::Admission> changes) {
  if (absl::Status s = local_.Record(changes); !s.ok()) return s;
  for (const quota::Admission& change : changes) {
    // UsageStore validated every change; skip what it stores but nobody counts.
    if (change.cost == 0 || change.feature_class.index < 0 ||
        change.feature_class.index >= schema_.size() ||
        !schema_.at(change.feature_class.index).of(change.meter).has_windows()) {
      continue;
    }
    Shard& shard = ShardOf(change.tenant);
    RowKey key{.tenant = std::string(change.tenant),
               .class_index = change.feature_class.index,
               .meter = static_cast<int>(change.meter),
               .bucket = change.bucket};
    absl::MutexLock lock(&shard.mu);
    auto it = shard.pending.find(key);
    if (it != shard.pending.end()) {
      it->second += change.cost;
      continue;
    }
    if (pending_rows_.load(std::memory_order_relaxed) >= options_.max_pending_rows) {
      dropped_rows_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    shard.pending.emplace(std::move(key), change.cost);
    pending_rows_.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

void HandoffUsage::AddPending(std::vector<std::pair<RowKey, int64_t>> rows) {
  for (auto& [key, delta] : rows) {
    Shard& shard = ShardOf(key.tenant);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.pending.find(key);
    if (it != shard.pending.end()) {
      it->second += delta;
    } else if (pending_rows_.load(std::memory_order_relaxed) < options_.max_pending_rows) {
      shard.pending.emplace(std::move(key), delta);
      pending_rows_.fetch_add(1, std::memory_order_relaxed);
    } else {
      dropped_rows_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

absl::Status HandoffUsage::FlushNow() {
  absl::MutexLock flush_lock(&flush_mu_);
  std::vector<std::pair<RowKey, int64_t>> rows;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (auto& entry : shard.pending) rows.emplace_back(entry.first, entry.second);
    pending_rows_.fetch_sub(static_cast<int64_t>(shard.pending.size()), std::memory_order_relaxed);
    shard.pending.clear();
  }
  // Deltas that sum to nothing, and buckets already past keeping, are not sent.
  const int64_t now_us = absl::ToUnixMicros(options_.clock());
  std::erase_if(rows, [&](const auto& row) {
    return row.second == 0 ||
           ExpiresMicros(row.first.class_index, static_cast<quota::Meter>(row.first.meter),
                         row.first.bucket) <= now_us;
  });
  if (rows.empty()) return absl::OkStatus();
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  const absl::Time started = absl::Now();
  absl::Status status = EnsureSchema();
  size_t sent = 0;
  while (status.ok() && sent < rows.size()) {
    const size_t end = std::min(rows.size(), sent + kMaxRowsPerStatement);
    std::string tenants = "{", classes = "{", meters = "{", buckets = "{", deltas = "{",
                expires = "{";
    for (size_t i = sent; i < end; ++i) {
      const RowKey& key = rows[i].first;
      const char* sep = i == sent ? "" : ",";
      absl::StrAppend(&tenants, sep, Hex(key.tenant));
      absl::StrAppend(&classes, sep, Hex(schema_.at(key.class_index).name));
      absl::StrAppend(&meters, sep, key.meter);
      absl::StrAppend(&buckets, sep, key.bucket);
      absl::StrAppend(&deltas, sep, rows[i].second);
      absl::StrAppend(
          &expires, sep,
          ExpiresMicros(key.class_index, static_cast<quota::Meter>(key.meter), key.bucket));
    }
    for (std::string* s : {&tenants, &classes, &meters, &buckets, &deltas, &expires}) {
      s->push_back('}');
    }
    absl::StatusOr<PgResult> result = pool_.Exec(
        kUpsert, {PgParam::Text(tenants), PgParam::Text(classes), PgParam::Text(meters),
                  PgParam::Text(buckets), PgParam::Text(deltas), PgParam::Text(expires)});
    status = result.status();
    if (status.ok()) sent = end;
  }
  const absl::Duration latency = absl::Now() - started;
  if (sent < rows.size()) {  // keep what was not sent for the next flush
    AddPending(std::vector<std::pair<RowKey, int64_t>>(rows.begin() + sent, rows.end()));
  }
  absl::MutexLock lock(&stats_mu_);
  if (status.ok()) {
    ++stats_.flushes;
  } else {
    ++stats_.flush_failures;
  }
  stats_.rows_flushed += static_cast<int64_t>(sent);
  stats_.last_flush_latency = latency;
  stats_.total_flush_latency += latency;
  return status;
}

absl::Status HandoffUsage::PruneNow() {
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  absl::StatusOr<PgResult> result =
      pool_.Exec("DELETE FROM anyai_usage WHERE expires_us <= $1",
                 {PgParam::Int(absl::ToUnixMicros(options_.clock()))});
  if (!result.ok()) return result.status();
  absl::MutexLock lock(&stats_mu_);
  stats_.pruned_rows += result->affected;
  return absl::OkStatus();
}

void HandoffUsage::WriterLoop() {
  absl::Time next_prune = absl::Now();  // at once: a replica starting cleans up after others
  while (true) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.flush_interval)) return;
    }
    (void)FlushNow();  // a failure keeps the deltas; the pool logged why
    if (absl::Now() >= next_prune) {
      if (PruneNow().ok()) next_prune = absl::Now() + options_.prune_interval;
    }
  }
}

absl::StatusOr<std::vector<quota::BucketCount>> HandoffUsage::Load(std::string_view tenant) {
  absl::StatusOr<std::vector<quota::BucketCount>> local = local_.Load(tenant);
  if (!local.ok()) return local.status();
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  absl::StatusOr<PgResult> shared = pool_.Exec(
      "SELECT class, meter, bucket, count FROM anyai_usage WHERE tenant = $1 AND expires_us > $2",
      {PgParam::Bytes(tenant), PgParam::Int(absl::ToUnixMicros(options_.clock()))});
  if (!shared.ok()) return shared.status();

  // (class, meter, bucket) -> count: the larger of the two.
  std::map<std::tuple<int, int, int64_t>, int64_t> merged;
  for (const quota::BucketCount& row : *local) {
    merged[{row.feature_class.index, static_cast<int>(row.meter), row.bucket}] = row.count;
  }
  for (const auto& row : shared->rows) {
    if (row.size() != 4 || row[0].null) continue;
    const int class_index = schema_.Find(row[0].bytes);
    if (class_index < 0) continue;  // a class this configuration does not have
    absl::StatusOr<int64_t> bucket = PgResult::Int8(row[2]);
    absl::StatusOr<int64_t> count = PgResult::Int8(row[3]);
    if (row[1].bytes.size() != 2 || !bucket.ok() || !count.ok()) {
      return absl::DataLossError("shared usage does not decode");
    }
    const int meter =
        (static_cast<uint8_t>(row[1].bytes[0]) << 8) | static_cast<uint8_t>(row[1].bytes[1]);
    if (meter < 0 || meter >= quota::kMeterCount) continue;
    auto [it, inserted] = merged.try_emplace({class_index, meter, *bucket}, *count);
    if (!inserted) it->second = std::max(it->second, *count);
  }
  std::vector<quota::BucketCount> out;
  out.reserve(merged.size());
  for (const auto& [key, count] : merged) {
    out.push_back({.feature_class = quota::ClassId{std::get<0>(key)},
                   .bucket = std::get<2>(key),
                   .count = count,
                   .meter = static_cast<quota::Meter>(std::get<1>(key))});
  }
  return out;
}

HandoffStats HandoffUsage::stats() const {
  absl::MutexLock lock(&stats_mu_);
  HandoffStats stats = stats_;
  stats.pending_rows = pending_rows_.load(std::memory_order_relaxed);
  stats.dropped_rows = dropped_rows_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace anyai::storage
