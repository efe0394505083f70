// A RocksDB Env for tests whose FileSystem can be switched, while a database uses it, to fail
// the way a real device fails, and back: every write then returns "no space left on device" or
// an I/O error, or every sync fails. Reads always pass through. The files are the local file
// system's (FileSystem::Default()), so a database written through it reopens without it. The
// info logger RocksDB makes when DBOptions::info_log is unset writes through it too, as its
// LOG would on a real full disk.
//
//   FaultyStorage storage;
//   Database::Open({.data_dir = dir.path(), .env = storage.env()});
//   storage.SetFault(Fault::kNoSpace);   // writes fail from now on
//   storage.SetFault(Fault::kNone);      // and succeed again
//
// Thread safety: every method may be called from any thread while RocksDB's threads use the file
// system; a change is seen by the next file operation.
#ifndef ANYAI_TESTS_STORAGE_FAULTY_FILE_SYSTEM_H_
#define ANYAI_TESTS_STORAGE_FAULTY_FILE_SYSTEM_H_

#include <cstdint>
#include <memory>
#include <string_view>

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace anyai::storage::testing {

enum class Fault {
  kNone,
  // Appends, new writable files and syncs fail with IOStatus::NoSpace, as ENOSPC does.
  kNoSpace,
  // Appends, new writable files and syncs fail with a plain IOError, as EIO does.
  kIOError,
  // Sync, Fsync and RangeSync of files, and directory fsyncs, fail with an IOError; writes
  // pass.
  kSyncFails,
};

// For test names and messages: "no_space", "io_error", "sync_fails", "none".
std::string_view FaultName(Fault fault);

class FaultyFileSystem;

class FaultyStorage {
 public:
  FaultyStorage();
  ~FaultyStorage();
  FaultyStorage(const FaultyStorage&) = delete;
  FaultyStorage& operator=(const FaultyStorage&) = delete;

  void SetFault(Fault fault);
  // How many file operations have been failed on purpose so far.
  int64_t injected() const;

  // While held, every append to a file (the WAL's among them) waits inside the file system until
  // released: a write that reached the device stays in flight, as on a slow disk.
  void HoldAppends();
  void ReleaseAppends();
  // How many appends are waiting on the hold now.
  int held_appends() const;

  // The Env to give RocksDB (DatabaseOptions::env); valid as long as this object.
  rocksdb::Env* env() const { return env_.get(); }

 private:
  std::shared_ptr<FaultyFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace anyai::storage::testing

#endif  // ANYAI_TESTS_STORAGE_FAULTY_FILE_SYSTEM_H_
