#include "storage/rocksdb_key_store.h"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/write_batch.h"
#include "storage/sha256.h"

namespace anyai::storage {
namespace {

constexpr char kRecordTag = 'h';
constexpr char kIndexTag = 'i';
constexpr uint8_t kRecordVersion = 1;
constexpr uint8_t kRevokedFlag = 1;

std::string RecordRowKey(std::string_view key_hash) {
  std::string row(1, kRecordTag);
  row.append(key_hash);
  return row;
}
std::string IndexRowKey(std::string_view key_id) {
  std::string row(1, kIndexTag);
  row.append(key_id);
  return row;
}

void AppendFixed64(std::string& out, int64_t value) {
  const auto bits = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(bits >> (8 * i)));
}

void AppendString16(std::string& out, std::string_view s) {
  out.push_back(static_cast<char>(s.size() & 0xff));
  out.push_back(static_cast<char>(s.size() >> 8));
  out.append(s);
}

// Reads the fields of a record value front to back; every read fails once the input runs out.
class RecordReader {
 public:
  explicit RecordReader(std::string_view in) : in_(in) {}

  std::optional<uint8_t> Byte() {
    if (in_.empty()) return std::nullopt;
    const auto b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return b;
  }
  std::optional<int64_t> Fixed64() {
    if (in_.size() < 8) return std::nullopt;
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(8);
    return static_cast<int64_t>(bits);
  }
  std::optional<std::string> String16() {
    if (in_.size() < 2) return std::nullopt;
    const size_t size = static_cast<uint8_t>(in_[0]) | (size_t{static_cast<uint8_t>(in_[1])} << 8);
    if (in_.size() < 2 + size) return std::nullopt;
    std::string s(in_.substr(2, size));
    in_.remove_prefix(2 + size);
    return s;
  }

 private:
  std::string_view in_;
};

std::string EncodeRecord(const KeyRecord& record) {
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(record.revoked ? kRevokedFlag : 0));
  AppendFixed64(out, absl::ToUnixMicros(record.created));
  AppendFixed64(out, record.revoked ? absl::ToUnixMicros(record.revoked_at) : 0);
  AppendString16(out, record.plan);
  AppendString16(out, record.label);
  AppendString16(out, record.masked_key);
  return out;
}

absl::StatusOr<KeyRecord> DecodeRecord(std::string_view key_hash, std::string_view value) {
  const absl::Status corrupt =
      absl::DataLossError(absl::StrCat("key record ", KeyIdOf(key_hash), " does not decode"));
  RecordReader reader(value);
  const std::optional<uint8_t> version = reader.Byte();
  if (!version.has_value() || *version != kRecordVersion) {
    return absl::DataLossError(
        absl::StrCat("key record ", KeyIdOf(key_hash), " has an unknown format version"));
  }
  const std::optional<uint8_t> flags = reader.Byte();
  const std::optional<int64_t> created = reader.Fixed64();
  const std::optional<int64_t> revoked_at = reader.Fixed64();
  std::optional<std::string> plan = reader.String16();
  std::optional<std::string> label = reader.String16();
  std::optional<std::string> masked_key = reader.String16();
  if (!masked_key.has_value()) return corrupt;  // every earlier read succeeded too
  KeyRecord record;
  record.key_hash = std::string(key_hash);
  record.key_id = KeyIdOf(key_hash);
  record.plan = *std::move(plan);
  record.label = *std::move(label);
  record.masked_key = *std::move(masked_key);
  record.created = absl::FromUnixMicros(*created);
  record.revoked = (*flags & kRevokedFlag) != 0;
  record.revoked_at = record.revoked ? absl::FromUnixMicros(*revoked_at) : absl::InfinitePast();
  return record;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbKeyStore>> RocksDbKeyStore::Open(Database& db) {
  if (!Sha256Available()) {
    return absl::FailedPreconditionError(
        "OpenSSL has no SHA-256 (is its default provider available?): keys cannot be checked");
  }
  return std::unique_ptr<RocksDbKeyStore>(new RocksDbKeyStore(db));
}

absl::Status RocksDbKeyStore::WriteRecord(const KeyRecord& record, bool with_index) {
  rocksdb::WriteBatch batch;
  rocksdb::Status status =
      batch.Put(db_.keys(), RecordRowKey(record.key_hash), EncodeRecord(record));
  if (status.ok() && with_index) {
    status = batch.Put(db_.keys(), IndexRowKey(record.key_id), record.key_hash);
  }
  if (!status.ok()) return FromRocksDb(status, "building a key write");
  const WriteMeter::TimePoint started = write_meter_.Start();
  absl::Status result = db_.CheckInjectedFailure(/*write=*/true);
  if (result.ok()) {
    result = db_.Write(db_.synced_write_options(), batch,
                       absl::StrCat("writing key record ", record.key_id));
  }
  write_meter_.Finish(started, result.ok());
  return result;
}

absl::StatusOr<CreatedKey> RocksDbKeyStore::Create(std::string_view plan, std::string_view label,
                                                   absl::Time now) {
  if (absl::Status s = ValidatePlan(plan); !s.ok()) return s;
  if (absl::Status s = ValidateLabel(label); !s.ok()) return s;
  absl::MutexLock lock(&write_mu_);
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    absl::StatusOr<CreatedKey> created = NewKey(plan, label, now);
    if (!created.ok()) return created.status();
    absl::StatusOr<KeyRecord> existing = Get(created->record.key_id);
    if (existing.ok()) continue;
    if (!absl::IsNotFound(existing.status())) return existing.status();
    if (absl::Status s = WriteRecord(created->record, /*with_index=*/true); !s.ok()) return s;
    return created;
  }
  return absl::InternalError("could not generate a key with an unused key_id");
}

absl::StatusOr<KeyRecord> RocksDbKeyStore::Get(std::string_view key_id) {
  if (absl::Status s = ValidateKeyId(key_id); !s.ok()) return s;
  if (absl::Status s = db_.CheckInjectedFailure(/*write=*/false); !s.ok()) return s;
  std::string key_hash;
  rocksdb::Status status =
      db_.db()->Get(rocksdb::ReadOptions(), db_.keys(), IndexRowKey(key_id), &key_hash);
  if (status.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("no key has key_id ", std::string(key_id)));
  }
  if (!status.ok()) return FromRocksDb(status, absl::StrCat("reading key ", std::string(key_id)));
  absl::StatusOr<KeyRecord> record = Lookup(key_hash);
  if (absl::IsNotFound(record.status())) {
    return absl::DataLossError(
        absl::StrCat("key ", std::string(key_id), " is indexed but has no record"));
  }
  return record;
}

absl::StatusOr<KeyPage> RocksDbKeyStore::List(int page_size, std::string_view page_token) {
  absl::StatusOr<int> checked_size = ValidatePageRequest(page_size, page_token);
  if (!checked_size.ok()) return checked_size.status();
  page_size = *checked_size;
  if (absl::Status s = db_.CheckInjectedFailure(/*write=*/false); !s.ok()) return s;

  // One snapshot for the index scan and the record reads, so the page is consistent.
  rocksdb::ManagedSnapshot snapshot(db_.db());
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot.snapshot();
  const std::string upper_bound(1, kIndexTag + 1);
  const rocksdb::Slice upper_bound_slice(upper_bound);
  read_options.iterate_upper_bound = &upper_bound_slice;

  std::vector<std::string> hashes;
  bool more = false;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(read_options, db_.keys()));
    const std::string start = IndexRowKey(page_token);
    for (it->Seek(start); it->Valid(); it->Next()) {
      if (it->key() == rocksdb::Slice(start)) continue;  // the previous page's last key
      if (static_cast<int>(hashes.size()) == page_size) {
        more = true;
        break;
      }
      hashes.push_back(it->value().ToString());
    }
    if (!it->status().ok()) return FromRocksDb(it->status(), "listing keys");
  }

  KeyPage page;
  for (const std::string& hash : hashes) {
    std::string value;
    const rocksdb::Status status =
        db_.db()->Get(read_options, db_.keys(), RecordRowKey(hash), &value);
    if (status.IsNotFound()) {
      return absl::DataLossError(
          absl::StrCat("key ", KeyIdOf(hash), " is indexed but has no record"));
    }
    if (!status.ok()) return FromRocksDb(status, "listing keys");
    absl::StatusOr<KeyRecord> record = DecodeRecord(hash, value);
    if (!record.ok()) return record.status();
    page.keys.push_back(*std::move(record));
  }
  if (more) page.next_page_token = page.keys.back().key_id;
  return page;
}

absl::StatusOr<KeyRecord> RocksDbKeyStore::Update(std::string_view key_id,
                                                  const KeyUpdate& update) {
  if (update.plan.has_value()) {
    if (absl::Status s = ValidatePlan(*update.plan); !s.ok()) return s;
  }
  if (update.label.has_value()) {
    if (absl::Status s = ValidateLabel(*update.label); !s.ok()) return s;
  }
  absl::MutexLock lock(&write_mu_);
  absl::StatusOr<KeyRecord> record = Get(key_id);
  if (!record.ok()) return record.status();
  if (update.plan.has_value()) record->plan = *update.plan;
  if (update.label.has_value()) record->label = *update.label;
  if (absl::Status s = WriteRecord(*record, /*with_index=*/false); !s.ok()) return s;
  return record;
}

absl::StatusOr<KeyRecord> RocksDbKeyStore::Revoke(std::string_view key_id, absl::Time now) {
  absl::MutexLock lock(&write_mu_);
  absl::StatusOr<KeyRecord> record = Get(key_id);
  if (!record.ok() || record->revoked) return record;
  record->revoked = true;
  record->revoked_at = absl::FromUnixMicros(absl::ToUnixMicros(now));
  if (absl::Status s = WriteRecord(*record, /*with_index=*/false); !s.ok()) return s;
  return record;
}

absl::StatusOr<KeyRecord> RocksDbKeyStore::Lookup(std::string_view key_hash) {
  if (key_hash.size() != kSha256Size) {
    return absl::InvalidArgumentError(
        absl::StrCat("key hash is ", key_hash.size(), " bytes, not ", kSha256Size));
  }
  if (absl::Status s = db_.CheckInjectedFailure(/*write=*/false); !s.ok()) return s;
  std::string value;
  const rocksdb::Status status =
      db_.db()->Get(rocksdb::ReadOptions(), db_.keys(), RecordRowKey(key_hash), &value);
  if (status.IsNotFound()) return absl::NotFoundError("no key has this hash");
  if (!status.ok()) return FromRocksDb(status, "looking up a key");
  return DecodeRecord(key_hash, value);
}

std::string EncodeKeyRecord(const KeyRecord& record) { return EncodeRecord(record); }

absl::StatusOr<KeyRecord> DecodeKeyRecord(std::string_view key_hash, std::string_view value) {
  return DecodeRecord(key_hash, value);
}

}  // namespace anyai::storage
