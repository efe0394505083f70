#include "storage/postgres_key_store.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/sha256.h"

namespace anyai::storage {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS anyai_keys ("
    " key_hash bytea PRIMARY KEY,"
    " key_id text COLLATE \"C\" NOT NULL UNIQUE,"
    " plan bytea NOT NULL,"
    " label bytea NOT NULL,"
    " masked_key bytea NOT NULL,"
    " created_us bigint NOT NULL,"
    " revoked boolean NOT NULL DEFAULT false,"
    " revoked_at_us bigint NOT NULL DEFAULT 0)";

// The columns every read returns, in the order RecordOf decodes.
#define ANYAI_KEY_COLUMNS "key_hash, plan, label, masked_key, created_us, revoked, revoked_at_us"

absl::StatusOr<KeyRecord> RecordOf(const std::vector<PgResult::Cell>& row) {
  if (row.size() != 7) return absl::DataLossError("a key record row has the wrong shape");
  KeyRecord record;
  record.key_hash = row[0].bytes;
  record.key_id = KeyIdOf(record.key_hash);
  record.plan = row[1].bytes;
  record.label = row[2].bytes;
  record.masked_key = row[3].bytes;
  absl::StatusOr<int64_t> created = PgResult::Int8(row[4]);
  absl::StatusOr<bool> revoked = PgResult::Bool(row[5]);
  absl::StatusOr<int64_t> revoked_at = PgResult::Int8(row[6]);
  if (!created.ok() || !revoked.ok() || !revoked_at.ok() || record.key_hash.size() != kSha256Size) {
    return absl::DataLossError(absl::StrCat("key record ", record.key_id, " does not decode"));
  }
  record.created = absl::FromUnixMicros(*created);
  record.revoked = *revoked;
  record.revoked_at = record.revoked ? absl::FromUnixMicros(*revoked_at) : absl::InfinitePast();
  return record;
}

absl::Status NoKey(std::string_view key_id) {
  return absl::NotFoundError(absl::StrCat("no key has key_id ", std::string(key_id)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresKeyStore>> PostgresKeyStore::Open(PostgresPool& pool) {
  if (!Sha256Available()) {
    return absl::FailedPreconditionError(
        "OpenSSL has no SHA-256 (is its default provider available?): keys cannot be checked");
  }
  auto store = std::unique_ptr<PostgresKeyStore>(new PostgresKeyStore(pool));
  // Down now: every call tries again (the server starts and heals when PostgreSQL is back).
  (void)store->EnsureSchema();
  return store;
}

absl::Status PostgresKeyStore::EnsureSchema() {
  if (schema_ready_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::StatusOr<PgResult> result = pool_.Exec(kSchema);
  if (!result.ok()) return result.status();
  schema_ready_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<CreatedKey> PostgresKeyStore::Create(std::string_view plan, std::string_view label,
                                                    absl::Time now) {
  if (absl::Status s = ValidatePlan(plan); !s.ok()) return s;
  if (absl::Status s = ValidateLabel(label); !s.ok()) return s;
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    absl::StatusOr<CreatedKey> created = NewKey(plan, label, now);
    if (!created.ok()) return created.status();
    const KeyRecord& r = created->record;
    absl::StatusOr<PgResult> result = pool_.Exec(
        "INSERT INTO anyai_keys (key_hash, key_id, plan, label, masked_key, created_us,"
        " revoked, revoked_at_us) VALUES ($1, $2, $3, $4, $5, $6, false, 0)"
        " ON CONFLICT DO NOTHING",
        {PgParam::Bytes(r.key_hash), PgParam::Text(r.key_id), PgParam::Bytes(r.plan),
         PgParam::Bytes(r.label), PgParam::Bytes(r.masked_key),
         PgParam::Int(absl::ToUnixMicros(r.created))});
    if (!result.ok()) return result.status();
    if (result->affected == 1) return created;
    // A conflict: on the key_id (another key has it: regenerate), or on our own hash when the
    // pool repeated the INSERT after a connection broke with the first one committed.
    absl::StatusOr<KeyRecord> mine = Lookup(r.key_hash);
    if (mine.ok()) return created;
    if (!absl::IsNotFound(mine.status())) return mine.status();
  }
  return absl::InternalError("could not generate a key with an unused key_id");
}

absl::StatusOr<KeyRecord> PostgresKeyStore::OneByKeyId(std::string_view sql,
                                                       const std::vector<PgParam>& params,
                                                       std::string_view key_id) {
  absl::StatusOr<PgResult> result = pool_.Exec(sql, params);
  if (!result.ok()) return result.status();
  if (result->rows.empty()) return NoKey(key_id);
  return RecordOf(result->rows[0]);
}

absl::StatusOr<KeyRecord> PostgresKeyStore::Get(std::string_view key_id) {
  if (absl::Status s = ValidateKeyId(key_id); !s.ok()) return s;
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  return OneByKeyId("SELECT " ANYAI_KEY_COLUMNS " FROM anyai_keys WHERE key_id = $1",
                    {PgParam::Text(key_id)}, key_id);
}

absl::StatusOr<KeyPage> PostgresKeyStore::List(int page_size, std::string_view page_token) {
  absl::StatusOr<int> size = ValidatePageRequest(page_size, page_token);
  if (!size.ok()) return size.status();
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  // One statement: one snapshot, so the page is consistent. One row more says there is more.
  absl::StatusOr<PgResult> result = pool_.Exec(
      "SELECT " ANYAI_KEY_COLUMNS " FROM anyai_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2",
      {PgParam::Text(page_token), PgParam::Int(*size + 1)});
  if (!result.ok()) return result.status();
  KeyPage page;
  for (const auto& row : result->rows) {
    if (static_cast<int>(page.keys.size()) == *size) {
      page.next_page_token = page.keys.back().key_id;
      break;
    }
    absl::StatusOr<KeyRecord> record = RecordOf(row);
    if (!record.ok()) return record.status();
    page.keys.push_back(*std::move(record));
  }
  return page;
}

absl::StatusOr<KeyRecord> PostgresKeyStore::Update(std::string_view key_id,
                                                   const KeyUpdate& update) {
  if (update.plan.has_value()) {
    if (absl::Status s = ValidatePlan(*update.plan); !s.ok()) return s;
  }
  if (update.label.has_value()) {
    if (absl::Status s = ValidateLabel(*update.label); !s.ok()) return s;
  }
  if (absl::Status s = ValidateKeyId(key_id); !s.ok()) return s;
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  return OneByKeyId(
      "UPDATE anyai_keys SET plan = COALESCE($2, plan), label = COALESCE($3, label)"
      " WHERE key_id = $1 RETURNING " ANYAI_KEY_COLUMNS,
      {PgParam::Text(key_id),
       update.plan.has_value() ? PgParam::Bytes(*update.plan) : PgParam::Null(),
       update.label.has_value() ? PgParam::Bytes(*update.label) : PgParam::Null()},
      key_id);
}

absl::StatusOr<KeyRecord> PostgresKeyStore::Revoke(std::string_view key_id, absl::Time now) {
  if (absl::Status s = ValidateKeyId(key_id); !s.ok()) return s;
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  // Sets the time only on the first revocation; a revoked key is returned as it is.
  absl::StatusOr<KeyRecord> revoked = OneByKeyId(
      "UPDATE anyai_keys SET revoked = true, revoked_at_us = $2"
      " WHERE key_id = $1 AND NOT revoked RETURNING " ANYAI_KEY_COLUMNS,
      {PgParam::Text(key_id), PgParam::Int(absl::ToUnixMicros(now))}, key_id);
  if (!absl::IsNotFound(revoked.status())) return revoked;
  return Get(key_id);
}

absl::StatusOr<KeyRecord> PostgresKeyStore::Lookup(std::string_view key_hash) {
  if (key_hash.size() != kSha256Size) {
    return absl::InvalidArgumentError(
        absl::StrCat("key hash is ", key_hash.size(), " bytes, not ", kSha256Size));
  }
  if (absl::Status s = EnsureSchema(); !s.ok()) return s;
  absl::StatusOr<PgResult> result =
      pool_.Exec("SELECT " ANYAI_KEY_COLUMNS " FROM anyai_keys WHERE key_hash = $1",
                 {PgParam::Bytes(key_hash)});
  if (!result.ok()) return result.status();
  if (result->rows.empty()) return absl::NotFoundError("no key has this hash");
  return RecordOf(result->rows[0]);
}

}  // namespace anyai::storage
