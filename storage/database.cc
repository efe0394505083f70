#include "storage/database.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "storage/counter_merge_operator.h"
#include "storage/error_recovery.h"
#include "storage/info_log.h"
#include "storage/rocksdb_error.h"
#include "storage/usage_compaction_filter.h"

namespace anyai::storage {
namespace {

constexpr char kKeysFamily[] = "keys";
constexpr char kUsageFamily[] = "usage";

// Compactions are what drop expired usage rows. Without writes nothing triggers them, so every
// usage file is also rewritten at least this often.
constexpr uint64_t kUsagePeriodicCompactionSeconds = 24 * 60 * 60;

}  // namespace

absl::Status FromRocksDb(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const StorageFault fault = FaultOf(status);
  LogRateLimited(fault, absl::StrCat(std::string(what), ": ", status.ToString()));
  return UnavailableFor(fault);
}

Database::Database(DatabaseOptions options)
    : options_(std::move(options)),
      recovery_(std::make_unique<ErrorRecovery>(options_.resume_interval)),
      usage_filter_factory_(std::make_shared<UsageCompactionFilterFactory>()),
      write_options_(std::make_unique<rocksdb::WriteOptions>()),
      synced_write_options_(std::make_unique<rocksdb::WriteOptions>()) {
  write_options_->sync = options_.durability == Durability::kFsync;
  synced_write_options_->sync = true;
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(DatabaseOptions options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is empty");
  if (!options.read_only) {
    std::error_code error;
    std::filesystem::create_directories(options.data_dir, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot create data_dir ", options.data_dir, ": ", error.message()));
    }
  }
  std::unique_ptr<Database> database(new Database(std::move(options)));
  const DatabaseOptions& opts = database->options_;

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !opts.read_only;
  db_options.create_missing_column_families = !opts.read_only;
  db_options.keep_log_file_num = 5;
  if (opts.env != nullptr) db_options.env = opts.env;
  // RocksDB's own LOG writer aborts the process on a full disk (info_log.h).
  if (!opts.read_only) {
    db_options.info_log = InfoLog::Open(opts.data_dir, rocksdb::InfoLogLevel::INFO_LEVEL);
  }
  // Recovery from write errors is ErrorRecovery's: RocksDB's own thread for retryable errors
  // would make DB::Resume() answer Busy while it runs (and gives up after a count).
  db_options.listeners.push_back(database->recovery_->listener());
  db_options.max_bgerror_resume_count = 0;

  // Authentication looks up keys by hash, and most lookups of an unknown key (a typo, or
  // someone trying random keys) should end at a Bloom filter instead of reading every level.
  rocksdb::BlockBasedTableOptions keys_table;
  keys_table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions keys_options;
  keys_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(keys_table));

  rocksdb::ColumnFamilyOptions usage_options;
  usage_options.merge_operator = std::make_shared<CounterAddOperator>();
  usage_options.compaction_filter_factory = database->usage_filter_factory_;
  usage_options.periodic_compaction_seconds = kUsagePeriodicCompactionSeconds;

  // Open every family the directory already has (a newer version may have added some): RocksDB
  // refuses to open a database without all of them.
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName, kKeysFamily, kUsageFamily};
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, opts.data_dir, &existing).ok()) {
    for (const std::string& name : existing) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) {
    rocksdb::ColumnFamilyOptions family_options;
    if (name == kKeysFamily) family_options = keys_options;
    if (name == kUsageFamily) family_options = usage_options;
    families.emplace_back(name, family_options);
  }

  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status status =
      opts.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, opts.data_dir, families, &database->handles_,
                                         &raw_db)
          : rocksdb::DB::Open(db_options, opts.data_dir, families, &database->handles_, &raw_db);
  database->db_.reset(raw_db);
  if (!status.ok()) {
    // For the operator who starts the server: where and RocksDB's own words.
    return absl::UnavailableError(
        absl::StrCat("opening RocksDB at ", opts.data_dir, ": ", status.ToString()));
  }
  for (rocksdb::ColumnFamilyHandle* handle : database->handles_) {
    if (handle->GetName() == kKeysFamily) database->keys_ = handle;
    if (handle->GetName() == kUsageFamily) database->usage_ = handle;
  }
  if (database->keys_ == nullptr || database->usage_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("RocksDB at ", opts.data_dir, " lacks the keys or usage column family"));
  }
  if (!opts.read_only) database->recovery_->Start(database->db_.get());
  return database;
}

Database::~Database() {
  if (db_ == nullptr) return;
  recovery_->Stop();
  // While a write error stands, the WAL's file writer is in its "seen error" state and
  // SyncWAL() on it trips RocksDB's assertion (AssertFalseAndGetStatusForPrevError): SIGABRT at
  // shutdown. Nothing acknowledged needs it: those writes are in the WAL already.
  if (!options_.read_only && recovery_->healthy()) {
    db_->FlushWAL(/*sync=*/true).PermitUncheckedError();
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  db_->Close().PermitUncheckedError();
}

absl::Status Database::Write(const rocksdb::WriteOptions& options, rocksdb::WriteBatch& batch,
                             std::string_view what) {
  const rocksdb::Status status = db_->Write(options, &batch);
  if (status.ok()) return absl::OkStatus();
  recovery_->ReportFailure(status);
  return FromRocksDb(status, what);
}

bool Database::healthy() const { return recovery_->healthy(); }

void Database::SetUsageRetention(std::shared_ptr<const UsageRetention> retention) {
  usage_filter_factory_->SetRetention(std::move(retention));
}

void Database::InjectFailure(InjectedFailure failure) {
  injected_failure_.store(failure, std::memory_order_relaxed);
}

absl::Status Database::CheckInjectedFailure(bool write) const {
  const InjectedFailure failure = injected_failure_.load(std::memory_order_relaxed);
  if (failure == InjectedFailure::kReadsAndWrites ||
      (write && failure == InjectedFailure::kWrites)) {
    return absl::UnavailableError(
        absl::StrCat("injected storage failure (", write ? "write" : "read", ")"));
  }
  return absl::OkStatus();
}

}  // namespace anyai::storage
