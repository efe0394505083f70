#include "storage/usage_store.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "storage/rocksdb_error.h"
#include "storage/usage_row.h"

namespace anyai::storage {
namespace {

// For error messages: tenants are client-chosen strings (IP addresses, key ids), so escape them.
std::string Printable(std::string_view tenant) {
  constexpr size_t kMaxShown = 80;
  return absl::CHexEscape(std::string(tenant.substr(0, kMaxShown)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<UsageStore>> UsageStore::Open(Database& db,
                                                             std::vector<ClassInfo> classes,
                                                             UsageStoreOptions options) {
  if (!options.clock) return absl::InvalidArgumentError("UsageStoreOptions.clock is empty");
  absl::StatusOr<std::unique_ptr<UsageSchema>> schema = UsageSchema::Create(std::move(classes));
  if (!schema.ok()) return schema.status();
  auto retention = std::make_shared<UsageRetention>();
  retention->schema = *std::move(schema);
  retention->clock = std::move(options.clock);
  return std::unique_ptr<UsageStore>(new UsageStore(db, std::move(retention)));
}

UsageStore::UsageStore(Database& db, std::shared_ptr<const UsageRetention> retention)
    : db_(db),
      retention_(std::move(retention)),
      commit_(db, db.write_options(), "recording usage") {
  db_.SetUsageRetention(retention_);
}

UsageStore::~UsageStore() { db_.SetUsageRetention(nullptr); }

absl::Status UsageStore::Record(absl::Span<const quota::Admission> changes) {
  // Everything is checked and encoded before anything is written, outside the group's lock: a
  // call's changes are stored whole or not at all.
  for (size_t i = 0; i < changes.size(); ++i) {
    if (absl::Status s = ValidateChange(changes[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("usage change ", i, ": ", s.message()));
    }
  }
  struct Row {
    std::string key;
    std::string count;
  };
  absl::InlinedVector<Row, 4> rows;
  for (const quota::Admission& change : changes) {
    if (change.cost == 0) continue;
    rows.push_back({EncodeUsageRowKey(change.tenant, schema().at(change.feature_class.index).name,
                                      change.meter, change.bucket),
                    EncodeCount(change.cost)});
  }
  if (rows.empty()) return absl::OkStatus();
  return commit_.Write(rows.size(), [&](rocksdb::WriteBatch& batch) {
    for (const Row& row : rows) {
      if (absl::Status s =
              FromRocksDb(batch.Merge(db_.usage(), row.key, row.count), "building a usage batch");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
}

absl::Status UsageStore::ValidateChange(const quota::Admission& change) const {
  if (absl::Status s = ValidateTenant(change.tenant); !s.ok()) return s;
  const int class_index = change.feature_class.index;
  if (class_index < 0 || class_index >= schema().size()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown feature class index ", class_index));
  }
  if (!IsKnownMeter(change.meter)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown meter ", static_cast<int>(change.meter)));
  }
  if (change.bucket < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative bucket ", change.bucket));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<quota::BucketCount>> UsageStore::Load(std::string_view tenant) {
  if (absl::Status s = ValidateTenant(tenant); !s.ok()) return s;
  if (absl::Status s = db_.CheckInjectedFailure(/*write=*/false); !s.ok()) return s;

  const std::string prefix = UsageRowPrefix(tenant);
  // Rows of this tenant are exactly the keys in [tenant '\0', tenant '\1').
  std::string upper_bound = prefix;
  upper_bound.back() = '\1';
  const rocksdb::Slice upper_bound_slice(upper_bound);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper_bound_slice;

  std::vector<quota::BucketCount> counts;
  std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(read_options, db_.usage()));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    const std::optional<UsageRowKey> row = DecodeUsageRowKey(key);
    if (!row.has_value() || row->tenant != tenant) continue;
    const int class_index = schema().Find(row->class_name);
    if (class_index < 0) continue;
    const std::optional<int64_t> count =
        DecodeCount(std::string_view(it->value().data(), it->value().size()));
    if (!count.has_value()) {
      // The client's message says what, the log says where.
      LogRateLimited(StorageFault::kCorruption,
                     absl::StrCat("usage row of tenant \"", Printable(tenant), "\" class ",
                                  std::string(row->class_name), " ", quota::MeterName(row->meter),
                                  " bucket ", row->bucket, " does not decode"));
      return absl::DataLossError("stored usage does not decode");
    }
    counts.push_back(quota::BucketCount{.feature_class = quota::ClassId{class_index},
                                        .bucket = row->bucket,
                                        .count = *count,
                                        .meter = row->meter});
  }
  if (!it->status().ok()) {
    return FromRocksDb(it->status(),
                       absl::StrCat("loading usage of tenant \"", Printable(tenant), "\""));
  }
  return counts;
}

absl::Status UsageStore::CompactNow() {
  if (absl::Status s = db_.CheckInjectedFailure(/*write=*/true); !s.ok()) return s;
  rocksdb::CompactRangeOptions options;
  // Rewrite the bottommost level too: that is where old rows end up.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  return FromRocksDb(db_.db()->CompactRange(options, db_.usage(), nullptr, nullptr),
                     "compacting usage");
}

}  // namespace anyai::storage
