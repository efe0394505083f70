// Kills a process that is recording usage, without letting it close the database, and checks
// that a restart finds every admission the process had acknowledged (SPEC §6: "after kill -9
// and a restart, every admission that a client saw succeed is still counted").
//
// The writer runs in a child process that re-executes this test binary (fork + exec of
// /proc/self/exe with --gtest_filter=UsageCrashChild.*), so it starts with a clean RocksDB
// environment instead of a forked copy of the parent's background threads. The child's work is
// chosen by environment variables; without them UsageCrashChild.* skips.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "storage/database.h"
#include "storage/usage_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::quota::Admission;
using ::anyai::quota::BucketCount;
using ::anyai::quota::ClassId;
using ::anyai::testing::TempDir;

constexpr char kModeVar[] = "ANYAI_CRASH_CHILD_MODE";
constexpr char kDirVar[] = "ANYAI_CRASH_CHILD_DIR";
constexpr char kDurabilityVar[] = "ANYAI_CRASH_CHILD_FSYNC";
constexpr char kCountVar[] = "ANYAI_CRASH_CHILD_COUNT";
constexpr char kAckFdVar[] = "ANYAI_CRASH_CHILD_ACK_FD";

constexpr int kTenants = 7;
constexpr int kBuckets = 13;

std::vector<ClassInfo> Classes() {
  return {{"llm", absl::Seconds(1), absl::Hours(24)},
          {"vision", absl::Minutes(1), absl::Hours(24)}};
}

std::string TenantName(int i) { return absl::StrCat("key:crash-", i % kTenants); }

// The i-th admission the child records: spread over tenants, classes and buckets so that many
// merges land on the same rows.
Admission NthAdmission(int i, const std::string& tenant) {
  return Admission{
      .tenant = tenant, .feature_class = ClassId{i % 2}, .bucket = 1'000 + i % kBuckets, .cost = 1};
}

// ---- The child's side: never returns normally, never runs gtest assertions that matter. ----

[[noreturn]] void ChildFail(const char* what) {
  fprintf(stderr, "crash child: %s\n", what);
  _exit(2);
}

// Records `count` admissions, then SIGKILLs itself with the database still open.
[[noreturn]] void RunSelfKillChild(Database& db, int count) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  if (!usage.ok()) ChildFail("open usage store");
  for (int i = 0; i < count; ++i) {
    const std::string tenant = TenantName(i);
    if (!(*usage)->Record(NthAdmission(i, tenant)).ok()) ChildFail("record");
  }
  raise(SIGKILL);
  ChildFail("still alive after SIGKILL");
}

// Four threads record admissions as fast as they can, writing one byte to `ack_fd` after each
// acknowledged Record, until the parent kills the process.
[[noreturn]] void RunStreamChild(Database& db, int ack_fd) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  if (!usage.ok()) ChildFail("open usage store");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&usage, ack_fd, t] {
      for (int i = t;; i += 4) {
        const std::string tenant = TenantName(i);
        if (!(*usage)->Record(NthAdmission(i, tenant)).ok()) ChildFail("record");
        const char ack = 'a';
        if (write(ack_fd, &ack, 1) != 1) ChildFail("ack");
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ChildFail("writers stopped");
}

TEST(UsageCrashChild, Run) {
  const char* mode = std::getenv(kModeVar);
  if (mode == nullptr) GTEST_SKIP() << "only runs as the child of UsageCrashTest";
  const char* fsync = std::getenv(kDurabilityVar);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(
      {.data_dir = std::getenv(kDirVar),
       .durability = fsync != nullptr && std::string(fsync) == "1" ? Durability::kFsync
                                                                   : Durability::kProcessCrash});
  if (!db.ok()) ChildFail("open database");
  int number = 0;
  if (std::string(mode) == "self_kill") {
    if (!absl::SimpleAtoi(std::getenv(kCountVar), &number)) ChildFail("count");
    RunSelfKillChild(**db, number);
  }
  if (!absl::SimpleAtoi(std::getenv(kAckFdVar), &number)) ChildFail("ack fd");
  RunStreamChild(**db, number);
}

// ---- The parent's side. ----

// Starts this binary as the child with `env` added to its environment. Descriptors without
// close-on-exec (the ack pipe) stay open in the child.
pid_t SpawnChild(const std::vector<std::pair<std::string, std::string>>& env) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
  execl("/proc/self/exe", "usage_crash_child", "--gtest_filter=UsageCrashChild.Run",
        static_cast<char*>(nullptr));
  ChildFail("exec");
}

// Sum of every count of every tenant the child writes to.
int64_t TotalRecorded(Database& db) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  EXPECT_OK(usage);
  if (!usage.ok()) return -1;
  int64_t total = 0;
  for (int t = 0; t < kTenants; ++t) {
    absl::StatusOr<std::vector<BucketCount>> counts = (*usage)->Load(TenantName(t));
    EXPECT_OK(counts);
    if (!counts.ok()) return -1;
    for (const BucketCount& c : *counts) total += c.count;
  }
  return total;
}

TEST(UsageCrashTest, EveryRecordBeforeAKillNineIsThereAfterRestart) {
  constexpr int kRecords = 2000;
  TempDir dir;

  const pid_t child = SpawnChild(
      {{kModeVar, "self_kill"}, {kDirVar, dir.path()}, {kCountVar, std::to_string(kRecords)}});
  ASSERT_GT(child, 0);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);

  ASSERT_TRUE(WIFSIGNALED(wait_status)) << "child exited with status " << WEXITSTATUS(wait_status);
  EXPECT_EQ(WTERMSIG(wait_status), SIGKILL);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(db);
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(**db, Classes());
  ASSERT_OK(usage);
  std::map<std::tuple<std::string, int, int64_t>, int64_t> expected;
  for (int i = 0; i < kRecords; ++i) {
    const std::string tenant = TenantName(i);
    const Admission a = NthAdmission(i, tenant);
    ++expected[{tenant, a.feature_class.index, a.bucket}];
  }
  std::map<std::tuple<std::string, int, int64_t>, int64_t> found;
  for (int t = 0; t < kTenants; ++t) {
    absl::StatusOr<std::vector<BucketCount>> counts = (*usage)->Load(TenantName(t));
    ASSERT_OK(counts);
    for (const BucketCount& c : *counts) {
      found[{TenantName(t), c.feature_class.index, c.bucket}] = c.count;
    }
  }
  EXPECT_EQ(found, expected);
}

class UsageCrashStreamTest : public ::testing::TestWithParam<bool> {};

TEST_P(UsageCrashStreamTest, EveryAcknowledgedRecordSurvivesAKillFromOutside) {
  constexpr int64_t kAcksBeforeKill = 3000;
  TempDir dir;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);  // not close-on-exec: the child writes acks to pipe_fds[1]

  const pid_t child = SpawnChild({{kModeVar, "stream"},
                                  {kDirVar, dir.path()},
                                  {kDurabilityVar, GetParam() ? "1" : "0"},
                                  {kAckFdVar, std::to_string(pipe_fds[1])}});
  ASSERT_GT(child, 0);
  close(pipe_fds[1]);
  int64_t acked = 0;
  char buffer[4096];
  while (acked < kAcksBeforeKill) {
    const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "the child stopped before being killed";
    acked += n;
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  // Acknowledgements already in the pipe were sent before the kill: count them too.
  for (;;) {
    const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    acked += n;
  }
  close(pipe_fds[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status));

  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(db);
  const int64_t recorded = TotalRecorded(**db);

  // Every acknowledged record is there; at most one per writer thread was recorded but not yet
  // acknowledged when the kill came.
  EXPECT_GE(recorded, acked);
  EXPECT_LE(recorded, acked + 4);
}

INSTANTIATE_TEST_SUITE_P(Durability, UsageCrashStreamTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Fsync" : "ProcessCrash";
                         });

}  // namespace
}  // namespace anyai::storage
