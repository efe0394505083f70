#include "storage/database.h"

#include <filesystem>
#include <fstream>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/options.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;

TEST(DatabaseTest, CreatesAMissingDataDirWithItsParents) {
  TempDir dir;
  const std::string data_dir = dir.Sub("a/b/data");

  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = data_dir});

  ASSERT_OK(db);
  EXPECT_TRUE(std::filesystem::is_directory(data_dir));
  EXPECT_NE((*db)->keys(), nullptr);
  EXPECT_NE((*db)->usage(), nullptr);
}

TEST(DatabaseTest, ReopensAnExistingDatabase) {
  TempDir dir;
  ASSERT_OK(Database::Open({.data_dir = dir.path()}));

  EXPECT_OK(Database::Open({.data_dir = dir.path()}));
}

TEST(DatabaseTest, ProcessCrashModeWritesWithoutSyncAndKeysAlwaysSync) {
  TempDir dir;

  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});

  ASSERT_OK(db);
  EXPECT_EQ((*db)->options().durability, Durability::kProcessCrash);
  EXPECT_FALSE((*db)->write_options().sync);
  EXPECT_FALSE((*db)->write_options().disableWAL);
  EXPECT_TRUE((*db)->synced_write_options().sync);
}

TEST(DatabaseTest, FsyncModeSyncsEveryWrite) {
  TempDir dir;

  absl::StatusOr<std::unique_ptr<Database>> db =
      Database::Open({.data_dir = dir.path(), .durability = Durability::kFsync});

  ASSERT_OK(db);
  EXPECT_TRUE((*db)->write_options().sync);
  EXPECT_FALSE((*db)->write_options().disableWAL);
}

TEST(DatabaseTest, RejectsAnEmptyDataDir) {
  EXPECT_THAT(Database::Open({.data_dir = ""}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data_dir")));
}

TEST(DatabaseTest, ADataDirThatCannotBeCreatedIsUnavailable) {
  TempDir dir;
  std::ofstream(dir.Sub("file")) << "not a directory";

  EXPECT_THAT(Database::Open({.data_dir = dir.Sub("file/data")}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("file/data")));
}

TEST(DatabaseTest, ASecondOpenOfTheSameDirectoryIsUnavailable) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Database>> first = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(first);

  EXPECT_THAT(Database::Open({.data_dir = dir.path()}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("lock")));
}

TEST(DatabaseTest, ReadOnlyOpenOfAMissingDatabaseIsUnavailable) {
  TempDir dir;

  EXPECT_THAT(Database::Open({.data_dir = dir.Sub("missing"), .read_only = true}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("missing")));
}

TEST(DatabaseTest, ReadOnlyOpenOfAnExistingDatabaseSucceeds) {
  TempDir dir;
  ASSERT_OK(Database::Open({.data_dir = dir.path()}));

  EXPECT_OK(Database::Open({.data_dir = dir.path(), .read_only = true}));
}

TEST(DatabaseTest, InjectedFailuresCoverWhatTheySay) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(db);

  (*db)->InjectFailure(InjectedFailure::kWrites);
  EXPECT_THAT((*db)->CheckInjectedFailure(/*write=*/true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_OK((*db)->CheckInjectedFailure(/*write=*/false));

  (*db)->InjectFailure(InjectedFailure::kReadsAndWrites);
  EXPECT_THAT((*db)->CheckInjectedFailure(/*write=*/false),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));

  (*db)->InjectFailure(InjectedFailure::kNone);
  EXPECT_OK((*db)->CheckInjectedFailure(/*write=*/true));
}

}  // namespace
}  // namespace anyai::storage
