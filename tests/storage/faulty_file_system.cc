#include "tests/storage/faulty_file_system.h"

#include <atomic>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace anyai::storage::testing {

std::string_view FaultName(Fault fault) {
  switch (fault) {
    case Fault::kNone:
      return "none";
    case Fault::kNoSpace:
      return "no_space";
    case Fault::kIOError:
      return "io_error";
    case Fault::kSyncFails:
      return "sync_fails";
  }
  return "unknown";
}

class FaultyFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FaultyFileSystem() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}

  const char* Name() const override { return "AnyaiFaultyFileSystem"; }

  void SetFault(Fault fault) { fault_.store(fault, std::memory_order_release); }
  int64_t injected() const { return injected_.load(std::memory_order_relaxed); }

  void SetHold(bool hold) {
    absl::MutexLock lock(&hold_mu_);
    hold_ = hold;
  }
  int held() const {
    absl::MutexLock lock(&hold_mu_);
    return held_;
  }
  // Blocks while appends are held.
  void WaitWhileHeld() {
    absl::MutexLock lock(&hold_mu_);
    ++held_;
    hold_mu_.Await(absl::Condition(
        +[](bool* hold) { return !*hold; }, &hold_));
    --held_;
  }

  // What a write (or a sync) should return now: OK to pass it to the real file.
  rocksdb::IOStatus WriteFault() {
    switch (fault_.load(std::memory_order_acquire)) {
      case Fault::kNoSpace: {
        injected_.fetch_add(1, std::memory_order_relaxed);
        rocksdb::IOStatus s = rocksdb::IOStatus::NoSpace("injected: no space left on device");
        s.SetRetryable(true);  // as RocksDB's own POSIX file system marks ENOSPC
        return s;
      }
      case Fault::kIOError:
        injected_.fetch_add(1, std::memory_order_relaxed);
        return rocksdb::IOStatus::IOError("injected: input/output error");
      case Fault::kNone:
      case Fault::kSyncFails:
        break;
    }
    return rocksdb::IOStatus::OK();
  }
  rocksdb::IOStatus SyncFault() {
    if (fault_.load(std::memory_order_acquire) == Fault::kSyncFails) {
      injected_.fetch_add(1, std::memory_order_relaxed);
      return rocksdb::IOStatus::IOError("injected: sync failed");
    }
    return WriteFault();
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = WriteFault(); !s.ok()) return s;
    return Wrap(target()->NewWritableFile(name, options, result, dbg), result);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = WriteFault(); !s.ok()) return s;
    return Wrap(target()->ReopenWritableFile(name, options, result, dbg), result);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = WriteFault(); !s.ok()) return s;
    return Wrap(target()->ReuseWritableFile(name, old_name, options, result, dbg), result);
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& options,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  // RocksDB's own info logger (used when DBOptions::info_log is unset), writing through this
  // file system so that its LOG meets the faults as well, as on a real full disk.
  rocksdb::IOStatus NewLogger(const std::string& name, const rocksdb::IOOptions& /*options*/,
                              std::shared_ptr<rocksdb::Logger>* result,
                              rocksdb::IODebugContext* /*dbg*/) override {
    return rocksdb::status_to_io_status(rocksdb::NewEnvLogger(name, env_, result));
  }

  void set_env(rocksdb::Env* env) { env_ = env; }

 private:
  rocksdb::IOStatus Wrap(rocksdb::IOStatus opened, std::unique_ptr<rocksdb::FSWritableFile>* file);

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int64_t> injected_{0};
  mutable absl::Mutex hold_mu_;
  bool hold_ ABSL_GUARDED_BY(hold_mu_) = false;
  int held_ ABSL_GUARDED_BY(hold_mu_) = 0;
  rocksdb::Env* env_ = nullptr;  // the Env made of this file system; set once, before use
};

namespace {

class FaultyWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, FaultyFileSystem& fs)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    fs_.WaitWhileHeld();
    if (rocksdb::IOStatus s = fs_.WriteFault(); !s.ok()) return s;
    return target()->Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    fs_.WaitWhileHeld();
    if (rocksdb::IOStatus s = fs_.WriteFault(); !s.ok()) return s;
    return target()->Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    fs_.WaitWhileHeld();
    if (rocksdb::IOStatus s = fs_.WriteFault(); !s.ok()) return s;
    return target()->PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    fs_.WaitWhileHeld();
    if (rocksdb::IOStatus s = fs_.WriteFault(); !s.ok()) return s;
    return target()->PositionedAppend(data, offset, options, info, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.SyncFault(); !s.ok()) return s;
    return target()->Sync(options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.SyncFault(); !s.ok()) return s;
    return target()->Fsync(options, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.SyncFault(); !s.ok()) return s;
    return target()->RangeSync(offset, nbytes, options, dbg);
  }

 private:
  FaultyFileSystem& fs_;
};

class FaultyDirectory final : public rocksdb::FSDirectoryWrapper {
 public:
  FaultyDirectory(std::unique_ptr<rocksdb::FSDirectory> directory, FaultyFileSystem& fs)
      : rocksdb::FSDirectoryWrapper(std::move(directory)), fs_(fs) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.SyncFault(); !s.ok()) return s;
    return rocksdb::FSDirectoryWrapper::Fsync(options, dbg);
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& dir_options) override {
    if (rocksdb::IOStatus s = fs_.SyncFault(); !s.ok()) return s;
    return rocksdb::FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options);
  }

 private:
  FaultyFileSystem& fs_;
};

}  // namespace

rocksdb::IOStatus FaultyFileSystem::Wrap(rocksdb::IOStatus opened,
                                         std::unique_ptr<rocksdb::FSWritableFile>* file) {
  if (opened.ok()) *file = std::make_unique<FaultyWritableFile>(std::move(*file), *this);
  return opened;
}

rocksdb::IOStatus FaultyFileSystem::NewDirectory(const std::string& name,
                                                 const rocksdb::IOOptions& options,
                                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                                 rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->NewDirectory(name, options, result, dbg);
  if (s.ok()) *result = std::make_unique<FaultyDirectory>(std::move(*result), *this);
  return s;
}

FaultyStorage::FaultyStorage()
    : fs_(std::make_shared<FaultyFileSystem>()), env_(rocksdb::NewCompositeEnv(fs_)) {
  fs_->set_env(env_.get());
}

FaultyStorage::~FaultyStorage() = default;

void FaultyStorage::SetFault(Fault fault) { fs_->SetFault(fault); }

int64_t FaultyStorage::injected() const { return fs_->injected(); }

void FaultyStorage::HoldAppends() { fs_->SetHold(true); }

void FaultyStorage::ReleaseAppends() { fs_->SetHold(false); }

int FaultyStorage::held_appends() const { return fs_->held(); }

}  // namespace anyai::storage::testing
