// A real full disk, as in issue 12: the data directory on a 16 MB tmpfs, filled by another file
// right after the database opens. Writes are then refused (UNAVAILABLE, saying "disk full" and
// not where) and the process lives on — it used to die of RocksDB's assertion in
// writable_file_writer.h (`sync_without_flush_called_`) on the first refused write, from the
// second line RocksDB's own info log tried to write — and once the filler is deleted the
// database resumes with far less free than RocksDB's 64 MB recovery reserve.
//
// Mounting needs root (CI runs as root) and a kernel that lets this process mount; otherwise
// the test is skipped, saying why.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/database.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);
constexpr char kTenant[] = "ip:198.51.100.23";

// A 16 MB tmpfs on a fresh directory, unmounted (lazily) when destroyed.
class Tmpfs {
 public:
  Tmpfs() {
    if (geteuid() != 0) {
      why_not_ = "not root";
      return;
    }
    if (mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=16m") != 0) {
      why_not_ = absl::StrCat("mount -t tmpfs failed: ", std::strerror(errno));
      return;
    }
    mounted_ = true;
  }
  ~Tmpfs() {
    if (mounted_) umount2(dir_.path().c_str(), MNT_DETACH);
  }

  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }
  std::string Sub(const std::string& name) const { return dir_.Sub(name); }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string why_not_;
};

// Writes `path` until the file system has no room left.
void Fill(const std::string& path) {
  std::ofstream filler(path, std::ios::binary);
  const std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 1024 && filler.write(chunk.data(), chunk.size()); ++i) {
    filler.flush();
  }
}

quota::Admission At(int64_t bucket) {
  return quota::Admission{.tenant = kTenant,
                          .feature_class = quota::ClassId{0},
                          .bucket = bucket,
                          .cost = 1,
                          .meter = quota::Meter::kRequests};
}

class DiskFullTest : public ::testing::TestWithParam<Durability> {};

TEST_P(DiskFullTest, AFullVolumeRefusesWritesAndHealsOnceSpaceIsFreed) {
  Tmpfs tmpfs;
  if (!tmpfs.mounted()) GTEST_SKIP() << "no 16 MB tmpfs to fill (" << tmpfs.why_not() << ")";
  const std::string data_dir = tmpfs.Sub("data");
  const std::vector<ClassInfo> classes = {
      {.name = "llm", .requests = {absl::Seconds(1), absl::Hours(24)}}};
  const DatabaseOptions options = {.data_dir = data_dir,
                                   .durability = GetParam(),
                                   .read_only = false,
                                   .env = nullptr,
                                   .resume_interval = absl::Milliseconds(100)};
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(options);
  ASSERT_OK(db);
  absl::StatusOr<std::unique_ptr<UsageStore>> usage =
      UsageStore::Open(**db, classes, {.clock = [] { return kStart; }});
  ASSERT_OK(usage);
  for (int64_t bucket : {1, 2, 3}) ASSERT_OK((*usage)->Record({At(bucket)}));

  Fill(tmpfs.Sub("filler"));
  int refused = 0;
  for (int i = 0; i < 200 && refused < 20; ++i) {
    const absl::Status s = (*usage)->Record({At(100 + i)});
    if (s.ok()) continue;  // the WAL's last page still had room
    ++refused;
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable,
                            AllOf(HasSubstr("storage is unavailable (disk full)"),
                                  Not(HasSubstr(data_dir)), Not(HasSubstr(kTenant)))));
  }
  EXPECT_EQ(refused, 20);
  EXPECT_FALSE((*db)->healthy());

  ASSERT_EQ(unlink(tmpfs.Sub("filler").c_str()), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!(*db)->healthy() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE((*db)->healthy()) << "not resumed with the volume freed";
  ASSERT_OK((*usage)->Record({At(1000)}));

  usage->reset();
  db->reset();
  db = Database::Open(options);
  ASSERT_OK(db);
  usage = UsageStore::Open(**db, classes, {.clock = [] { return kStart; }});
  ASSERT_OK(usage);
  absl::StatusOr<std::vector<quota::BucketCount>> counts = (*usage)->Load(kTenant);
  ASSERT_OK(counts);
  std::vector<int64_t> buckets;
  for (const quota::BucketCount& c : *counts) {
    if (c.bucket < 100 || c.bucket >= 1000) buckets.push_back(c.bucket);
  }
  EXPECT_THAT(buckets, ::testing::ElementsAre(1, 2, 3, 1000));
}

INSTANTIATE_TEST_SUITE_P(Durabilities, DiskFullTest,
                         ::testing::Values(Durability::kProcessCrash, Durability::kFsync),
                         [](const ::testing::TestParamInfo<Durability>& info) {
                           return info.param == Durability::kFsync ? "fsync" : "process_crash";
                         });

}  // namespace
}  // namespace anyai::storage
