#include "storage/counter_merge_operator.h"

#include <cstdint>
#include <optional>
#include <string_view>

#include "storage/usage_row.h"

namespace anyai::storage {

bool CounterAddOperator::Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing_value,
                               const rocksdb::Slice& value, std::string* new_value,
                               rocksdb::Logger* /*logger*/) const {
  const std::optional<int64_t> operand = DecodeCount(std::string_view(value.data(), value.size()));
  if (!operand.has_value()) return false;
  // In uint64_t: signed overflow is undefined, unsigned addition wraps (see the header).
  uint64_t sum = static_cast<uint64_t>(*operand);
  if (existing_value != nullptr) {
    const std::optional<int64_t> existing =
        DecodeCount(std::string_view(existing_value->data(), existing_value->size()));
    if (!existing.has_value()) return false;
    sum += static_cast<uint64_t>(*existing);
  }
  *new_value = EncodeCount(static_cast<int64_t>(sum));
  return true;
}

}  // namespace anyai::storage
