// InfoLog (RocksDB's LOG, written so that a full disk cannot abort the process) and the
// client-facing meaning of RocksDB errors (rocksdb_error.h).
#include "storage/info_log.h"

#include <fcntl.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "rocksdb/io_status.h"
#include "storage/rocksdb_error.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(InfoLogTest, WritesOneTimestampedLinePerMessage) {
  TempDir dir;
  std::shared_ptr<InfoLog> log = InfoLog::Open(dir.path(), rocksdb::InfoLogLevel::INFO_LEVEL);

  rocksdb::Info(log, "opened %s with %d families", "the database", 3);
  rocksdb::Warn(log, "a warning");
  const std::string long_line(2000, 'y');
  rocksdb::Info(log, "%s", long_line.c_str());

  const std::string text = Contents(dir.Sub("LOG"));
  EXPECT_THAT(text, ContainsRegex("[0-9]{4}/[0-9]{2}/[0-9]{2}-[0-9:.]+ [0-9a-f]+ .*opened the "
                                  "database with 3 families\n"));
  EXPECT_THAT(text, HasSubstr("[WARN] "));
  EXPECT_THAT(text, HasSubstr(long_line + "\n"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
  EXPECT_EQ(log->GetLogFileSize(), text.size());
  EXPECT_EQ(log->lost_lines(), 0);
}

TEST(InfoLogTest, KeepsThePreviousLogAsAnOldOne) {
  TempDir dir;
  std::ofstream(dir.Sub("LOG")) << "the previous run\n";

  std::shared_ptr<InfoLog> log = InfoLog::Open(dir.path(), rocksdb::InfoLogLevel::INFO_LEVEL);
  rocksdb::Info(log, "this run");

  EXPECT_THAT(Contents(dir.Sub("LOG")), Not(HasSubstr("the previous run")));
  int old_logs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().filename().string().rfind("LOG.old.", 0) != 0) continue;
    ++old_logs;
    EXPECT_EQ(Contents(entry.path().string()), "the previous run\n");
  }
  EXPECT_EQ(old_logs, 1);
}

TEST(InfoLogTest, AWriteThatFailsLosesThatLineAndNothingElse) {
  // /dev/full: every write fails with ENOSPC, as on a full disk. RocksDB's own logger aborted
  // on the second line; this one drops each line, counts it, and tries the next afresh.
  const int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "no /dev/full";
  std::shared_ptr<InfoLog> log = InfoLog::ForDescriptor(fd, rocksdb::InfoLogLevel::INFO_LEVEL);

  for (int i = 0; i < 3; ++i) rocksdb::Warn(log, "line %d", i);
  rocksdb::Debug(log, "below the level: not written, not lost");

  EXPECT_EQ(log->lost_lines(), 3);
}

TEST(RocksDbErrorTest, EachFaultHasAMessageThatSaysWhatAndNotWhere) {
  rocksdb::IOStatus no_space = rocksdb::IOStatus::NoSpace(
      "While appending to file: /var/lib/anyai/000012.log", "No space left on device");
  EXPECT_EQ(FaultOf(no_space), StorageFault::kDiskFull);
  EXPECT_EQ(FaultOf(rocksdb::Status::SpaceLimit()), StorageFault::kDiskFull);
  EXPECT_EQ(FaultOf(rocksdb::Status::IOError("While fsync: /var/lib/anyai/000012.log")),
            StorageFault::kIOError);
  EXPECT_EQ(FaultOf(rocksdb::Status::Corruption("block checksum mismatch")),
            StorageFault::kCorruption);
  EXPECT_EQ(FaultOf(rocksdb::Status::NotSupported("Not supported operation in read only mode.")),
            StorageFault::kReadOnly);
  EXPECT_EQ(FaultOf(rocksdb::Status::Busy()), StorageFault::kBusy);
  EXPECT_EQ(FaultOf(rocksdb::Status::ShutdownInProgress()), StorageFault::kShuttingDown);

  EXPECT_THAT(UnavailableFor(FaultOf(no_space)),
              StatusIs(absl::StatusCode::kUnavailable,
                       "storage is unavailable (disk full); try again later"));
  EXPECT_THAT(UnavailableFor(StorageFault::kIOError),
              StatusIs(absl::StatusCode::kUnavailable,
                       "storage is unavailable (I/O error); try again later"));
  EXPECT_THAT(UnavailableFor(StorageFault::kReadOnly),
              StatusIs(absl::StatusCode::kUnavailable, "storage is unavailable (read only)"));
}

}  // namespace
}  // namespace anyai::storage
