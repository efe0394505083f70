// Fuzzes what storage/ decodes from bytes RocksDB hands back, which a damaged or foreign
// database can make anything: usage row keys and counts (usage_row.h), key records
// (rocksdb_key_store.h), the retention rule and compaction filter on usage rows
// (usage_schema.h, usage_compaction_filter.h) and the counter merge operator
// (counter_merge_operator.h) on arbitrary operands.
//
// Input layout (every part may be cut short; what is missing is empty or zero):
//   u16 little-endian length, key bytes      a row key (usage) or a key hash (key records)
//   u16 little-endian length, value bytes    a row value (count, key record, existing counter)
//   u8                                       the compaction's value type (mod 3)
//   i64 little-endian                        "now" of the retention rule, Unix microseconds
//   then operands: u8 length, bytes; ...     merge operands
// Besides crashes and sanitizer reports, a decoded row that does not encode back to the same
// bytes, a key record that does not survive its own encoding, and a merge whose result is not
// the wrapping sum of its 8-byte operands (or that accepts an operand of another size) abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "quota/engine.h"
#include "quota/plan.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/slice.h"
#include "storage/counter_merge_operator.h"
#include "storage/key_store.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_compaction_filter.h"
#include "storage/usage_row.h"
#include "storage/usage_schema.h"

namespace {

namespace storage = anyai::storage;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::cerr << "record_fuzzer: " << what << "\n";
  std::abort();
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : in_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return in_.empty(); }
  std::string_view Bytes(size_t n) {
    n = std::min(n, in_.size());
    std::string_view out = in_.substr(0, n);
    in_.remove_prefix(n);
    return out;
  }
  uint64_t Fixed(size_t bytes) {
    uint64_t v = 0;
    const std::string_view b = Bytes(bytes);
    for (size_t i = 0; i < b.size(); ++i) v |= uint64_t{static_cast<uint8_t>(b[i])} << (8 * i);
    return v;
  }

 private:
  std::string_view in_;
};

// The retention of the default plans, as UsageStore installs it (usage_schema.h).
struct Retention {
  std::shared_ptr<const storage::UsageSchema> schema;
  storage::UsageCompactionFilterFactory factory;
};

Retention* MakeRetention() {
  auto* r = new Retention;
  absl::StatusOr<std::unique_ptr<anyai::quota::Engine>> probe =
      anyai::quota::Engine::Create(anyai::quota::DefaultPlanTable(), {});
  Require(probe.ok(), "the default plans do not make an engine");
  absl::StatusOr<std::unique_ptr<storage::UsageSchema>> schema =
      storage::UsageSchema::Create(storage::UsageClassesOf(**probe));
  Require(schema.ok(), "the default plans do not make a usage schema");
  r->schema = std::move(*schema);
  return r;
}

void FuzzUsageRow(std::string_view key, std::string_view value) {
  if (std::optional<storage::UsageRowKey> row = storage::DecodeUsageRowKey(key)) {
    Require(storage::IsKnownMeter(row->meter), "a decoded row key has an unknown meter");
    Require(row->bucket >= 0, "a decoded row key has a negative bucket");
    Require(
        storage::EncodeUsageRowKey(row->tenant, row->class_name, row->meter, row->bucket) == key,
        "a decoded row key does not encode back to itself");
    Require(key.starts_with(storage::UsageRowPrefix(row->tenant)),
            "a decoded row key does not start with its tenant's prefix");
  }
  if (std::optional<int64_t> count = storage::DecodeCount(value)) {
    Require(storage::EncodeCount(*count) == value, "a count does not encode back to itself");
  }
}

void FuzzKeyRecord(std::string_view key_hash, std::string_view value) {
  absl::StatusOr<storage::KeyRecord> record = storage::DecodeKeyRecord(key_hash, value);
  if (!record.ok()) return;
  absl::StatusOr<storage::KeyRecord> again =
      storage::DecodeKeyRecord(key_hash, storage::EncodeKeyRecord(*record));
  Require(again.ok() && *again == *record, "a key record does not survive its own encoding");
}

void FuzzRetention(std::string_view key, std::string_view value, int type, absl::Time now) {
  static Retention* const retention = MakeRetention();
  (void)retention->schema->RowExpired(key, now);
  retention->factory.SetRetention(std::make_shared<storage::UsageRetention>(
      storage::UsageRetention{.schema = retention->schema, .clock = [now] { return now; }}));
  std::unique_ptr<rocksdb::CompactionFilter> filter =
      retention->factory.CreateCompactionFilter(rocksdb::CompactionFilter::Context{});
  std::string new_value;
  std::string skip_until;
  (void)filter->FilterV2(/*level=*/0, rocksdb::Slice(key.data(), key.size()),
                         static_cast<rocksdb::CompactionFilter::ValueType>(type),
                         rocksdb::Slice(value.data(), value.size()), &new_value, &skip_until);
}

void FuzzMerge(std::string_view key, std::string_view existing,
               const std::vector<std::string_view>& operands) {
  const storage::CounterAddOperator merge;
  const rocksdb::Slice key_slice(key.data(), key.size());
  // Left to right over the existing value (absent when empty), as a Get that finds a value.
  std::optional<std::string> acc;
  if (!existing.empty()) acc = std::string(existing);
  bool ok = true;
  uint64_t sum = 0;
  bool all_counts = existing.empty() || existing.size() == storage::kCountSize;
  if (!existing.empty() && all_counts) sum = static_cast<uint64_t>(*storage::DecodeCount(existing));
  for (std::string_view operand : operands) {
    std::string out;
    const rocksdb::Slice existing_slice = acc.has_value() ? rocksdb::Slice(*acc) : rocksdb::Slice();
    ok = merge.Merge(key_slice, acc.has_value() ? &existing_slice : nullptr,
                     rocksdb::Slice(operand.data(), operand.size()), &out, nullptr);
    if (!ok) break;
    acc = std::move(out);
  }
  for (std::string_view operand : operands) {
    if (operand.size() != storage::kCountSize) {
      all_counts = false;
      break;
    }
    sum += static_cast<uint64_t>(*storage::DecodeCount(operand));
  }
  if (operands.empty()) return;
  Require(ok == all_counts, "the merge accepts an operand that is not a count, or refuses one");
  if (!ok) return;
  Require(acc.has_value() && storage::DecodeCount(*acc) == static_cast<int64_t>(sum),
          "the merge is not the wrapping sum of its operands");
  // Right to left (a compaction's partial merges group operands another way): same row.
  std::optional<std::string> partial;
  for (auto it = operands.rbegin(); it != operands.rend(); ++it) {
    std::string out;
    const rocksdb::Slice partial_slice =
        partial.has_value() ? rocksdb::Slice(*partial) : rocksdb::Slice();
    Require(merge.Merge(key_slice, partial.has_value() ? &partial_slice : nullptr,
                        rocksdb::Slice(it->data(), it->size()), &out, nullptr),
            "a partial merge of counts fails");
    partial = std::move(out);
  }
  if (!existing.empty()) {
    std::string out;
    const rocksdb::Slice existing_slice(existing.data(), existing.size());
    Require(merge.Merge(key_slice, &existing_slice, rocksdb::Slice(*partial), &out, nullptr),
            "merging a partial sum into the row fails");
    partial = std::move(out);
  }
  Require(partial == acc, "two groupings of the same operands give different rows");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const std::string_view key = in.Bytes(in.Fixed(2));
  const std::string_view value = in.Bytes(in.Fixed(2));
  const int type = static_cast<int>(in.Fixed(1) % 3);
  const absl::Time now = absl::FromUnixMicros(static_cast<int64_t>(in.Fixed(8)));
  std::vector<std::string_view> operands;
  while (!in.empty()) operands.push_back(in.Bytes(in.Fixed(1)));

  FuzzUsageRow(key, value);
  FuzzKeyRecord(key, value);
  FuzzRetention(key, value, type, now);
  FuzzMerge(key, value, operands);
  return 0;
}
