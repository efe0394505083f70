// RocksDB's info log (the LOG file in the data directory), written so that a full or failing
// disk cannot abort the process. Internal to storage/ (includes RocksDB).
//
// Why not RocksDB's own: its logger (EnvLogger) ignores a failed write but leaves the file
// writer underneath in its "seen error" state, and the next line it logs trips an assertion
// that Debian's librocksdb keeps (writable_file_writer.h: AssertFalseAndGetStatusForPrevError,
// `sync_without_flush_called_`) — SIGABRT. On a full disk the error handler logs a line as soon
// as the first write fails, so the first refused write used to kill the server.
//
// This one formats each line as RocksDB does ("2026/01/01-12:00:00.000123 <thread> text") and
// writes it with one write(2) on a file opened O_APPEND; a failed or short write loses that
// line and nothing else (the next line is tried afresh), and is counted. Like RocksDB, it
// first renames an existing LOG to LOG.old.<microseconds>; RocksDB deletes old ones beyond
// DBOptions::keep_log_file_num.
//
// Thread safety: thread-safe; RocksDB logs from every thread. Lines do not interleave (each is
// one O_APPEND write).
#ifndef ANYAI_STORAGE_INFO_LOG_H_
#define ANYAI_STORAGE_INFO_LOG_H_

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <string>

#include "rocksdb/env.h"

namespace anyai::storage {

class InfoLog final : public rocksdb::Logger {
 public:
  // Opens <dir>/LOG (dir must exist). If the file cannot be opened the log is discarded (one
  // line on stderr says so): the database does not need it.
  static std::shared_ptr<InfoLog> Open(const std::string& dir, rocksdb::InfoLogLevel level);
  // Writes to `fd` (taken over, closed when destroyed) instead: for tests (e.g. /dev/full).
  static std::shared_ptr<InfoLog> ForDescriptor(int fd, rocksdb::InfoLogLevel level);
  ~InfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  size_t GetLogFileSize() const override;

  // Lines lost to failed writes so far.
  int64_t lost_lines() const { return lost_lines_.load(std::memory_order_relaxed); }

 private:
  InfoLog(int fd, rocksdb::InfoLogLevel level) : rocksdb::Logger(level), fd_(fd) {}

  const int fd_;  // -1: discard
  std::atomic<int64_t> lost_lines_{0};
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_INFO_LOG_H_
