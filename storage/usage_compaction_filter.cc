#include "storage/usage_compaction_filter.h"

#include <string_view>
#include <utility>

namespace anyai::storage {
namespace {

class UsageCompactionFilter final : public rocksdb::CompactionFilter {
 public:
  UsageCompactionFilter(std::shared_ptr<const UsageRetention> retention, absl::Time now)
      : retention_(std::move(retention)), now_(now) {}

  Decision FilterV2(int /*level*/, const rocksdb::Slice& key, ValueType value_type,
                    const rocksdb::Slice& /*existing_value*/, std::string* /*new_value*/,
                    std::string* /*skip_until*/) const override {
    if (value_type != ValueType::kValue && value_type != ValueType::kMergeOperand) {
      return Decision::kKeep;
    }
    return retention_->schema->RowExpired(std::string_view(key.data(), key.size()), now_)
               ? Decision::kRemove
               : Decision::kKeep;
  }

  const char* Name() const override { return "anyai.UsageCompactionFilter"; }

 private:
  const std::shared_ptr<const UsageRetention> retention_;
  const absl::Time now_;
};

}  // namespace

void UsageCompactionFilterFactory::SetRetention(std::shared_ptr<const UsageRetention> retention) {
  absl::MutexLock lock(&mu_);
  retention_ = std::move(retention);
}

std::unique_ptr<rocksdb::CompactionFilter> UsageCompactionFilterFactory::CreateCompactionFilter(
    const rocksdb::CompactionFilter::Context& /*context*/) {
  std::shared_ptr<const UsageRetention> retention;
  {
    absl::MutexLock lock(&mu_);
    retention = retention_;
  }
  // No rule installed: RocksDB accepts a null filter and keeps everything.
  if (retention == nullptr || retention->schema == nullptr || !retention->clock) return nullptr;
  const absl::Time now = retention->clock();
  return std::make_unique<UsageCompactionFilter>(std::move(retention), now);
}

}  // namespace anyai::storage
