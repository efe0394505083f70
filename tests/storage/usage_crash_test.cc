// Kills a process that is recording usage, without letting it close the database, and checks
// that a restart finds every admission the process had acknowledged (SPEC §6: "after kill -9
// and a restart, every admission that a client saw succeed is still counted"), and that every
// batch of changes is there whole or not at all.
//
// The child records what the engine would: for the i-th call, a reservation batch (one request,
// 12 tokens, 7 micro-USD) and then a settlement batch (refunds of 2 tokens and 3 micro-USD, into
// the reservation's sub-bucket).
//
// The writer runs in a child process that re-executes this test binary (fork + exec of
// /proc/self/exe with --gtest_filter=UsageCrashChild.*), so it starts with a clean RocksDB
// environment instead of a forked copy of the parent's background threads. The child's work is
// chosen by environment variables; without them UsageCrashChild.* skips.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
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
using ::anyai::quota::Meter;
using ::anyai::testing::TempDir;

constexpr char kModeVar[] = "ANYAI_CRASH_CHILD_MODE";
constexpr char kDirVar[] = "ANYAI_CRASH_CHILD_DIR";
constexpr char kDurabilityVar[] = "ANYAI_CRASH_CHILD_FSYNC";
constexpr char kCountVar[] = "ANYAI_CRASH_CHILD_COUNT";
constexpr char kAckFdVar[] = "ANYAI_CRASH_CHILD_ACK_FD";

constexpr int kTenants = 7;
constexpr int kBuckets = 13;

// What the i-th call reserves and gives back, per meter.
constexpr int64_t kReserved[quota::kMeterCount] = {1, 12, 7};
constexpr int64_t kRefunded[quota::kMeterCount] = {0, 2, 3};

std::vector<ClassInfo> Classes() {
  const MeterWindows minute_sub_buckets{absl::Minutes(1), absl::Hours(24)};
  return {{.name = "llm",
           .requests = {absl::Seconds(1), absl::Hours(24)},
           .tokens = minute_sub_buckets,
           .spend = minute_sub_buckets},
          {.name = "vision",
           .requests = minute_sub_buckets,
           .tokens = minute_sub_buckets,
           .spend = minute_sub_buckets}};
}

std::string TenantName(int i) { return absl::StrCat("key:crash-", i % kTenants); }

// The i-th call's change of `meter`, with `cost`: spread over tenants, classes and buckets so
// that many merges land on the same rows.
Admission NthChange(int i, const std::string& tenant, Meter meter, int64_t cost) {
  return Admission{.tenant = tenant,
                   .feature_class = ClassId{i % 2},
                   .bucket = 1'000 + i % kBuckets,
                   .cost = cost,
                   .meter = meter};
}

std::vector<Admission> Reservation(int i, const std::string& tenant) {
  std::vector<Admission> batch;
  for (const Meter m : quota::kMeters) {
    batch.push_back(NthChange(i, tenant, m, kReserved[static_cast<int>(m)]));
  }
  return batch;
}

// Refunds only: the request stays charged (a cost-0 change, which writes nothing).
std::vector<Admission> Settlement(int i, const std::string& tenant) {
  std::vector<Admission> batch;
  for (const Meter m : quota::kMeters) {
    batch.push_back(NthChange(i, tenant, m, -kRefunded[static_cast<int>(m)]));
  }
  return batch;
}

// ---- The child's side: never returns normally, never runs gtest assertions that matter. ----

[[noreturn]] void ChildFail(const char* what) {
  fprintf(stderr, "crash child: %s\n", what);
  _exit(2);
}

// Records `count` reservations, settling the even ones, then SIGKILLs itself with the
// database still open.
[[noreturn]] void RunSelfKillChild(Database& db, int count) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  if (!usage.ok()) ChildFail("open usage store");
  for (int i = 0; i < count; ++i) {
    const std::string tenant = TenantName(i);
    if (!(*usage)->Record(Reservation(i, tenant)).ok()) ChildFail("record");
    if (i % 2 == 0 && !(*usage)->Record(Settlement(i, tenant)).ok()) ChildFail("settle");
  }
  raise(SIGKILL);
  ChildFail("still alive after SIGKILL");
}

// Four threads record reservations and settlements as fast as they can, writing one byte to
// `ack_fd` after each acknowledged Record ('r' for a reservation, 's' for a settlement), until
// the parent kills the process.
[[noreturn]] void RunStreamChild(Database& db, int ack_fd) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  if (!usage.ok()) ChildFail("open usage store");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&usage, ack_fd, t] {
      for (int i = t;; i += 4) {
        const std::string tenant = TenantName(i);
        if (!(*usage)->Record(Reservation(i, tenant)).ok()) ChildFail("record");
        const char reserved = 'r';
        if (write(ack_fd, &reserved, 1) != 1) ChildFail("ack");
        if (!(*usage)->Record(Settlement(i, tenant)).ok()) ChildFail("settle");
        const char settled = 's';
        if (write(ack_fd, &settled, 1) != 1) ChildFail("ack");
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

// A row's place: (tenant, class index, bucket); and what it holds per meter.
using Place = std::tuple<std::string, int, int64_t>;
using Counts = std::array<int64_t, quota::kMeterCount>;

// Every row of every tenant the child writes to, by place.
absl::StatusOr<std::map<Place, Counts>> Stored(Database& db) {
  absl::StatusOr<std::unique_ptr<UsageStore>> usage = UsageStore::Open(db, Classes());
  if (!usage.ok()) return usage.status();
  std::map<Place, Counts> stored;
  for (int t = 0; t < kTenants; ++t) {
    absl::StatusOr<std::vector<BucketCount>> counts = (*usage)->Load(TenantName(t));
    if (!counts.ok()) return counts.status();
    for (const BucketCount& c : *counts) {
      stored[{TenantName(t), c.feature_class.index, c.bucket}][static_cast<int>(c.meter)] = c.count;
    }
  }
  return stored;
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
  std::map<Place, Counts> expected;
  for (int i = 0; i < kRecords; ++i) {
    const std::string tenant = TenantName(i);
    const Admission a = NthChange(i, tenant, Meter::kRequests, 1);
    Counts& counts = expected[{tenant, a.feature_class.index, a.bucket}];
    for (int m = 0; m < quota::kMeterCount; ++m) {
      counts[m] += kReserved[m] - (i % 2 == 0 ? kRefunded[m] : 0);
    }
  }
  absl::StatusOr<std::map<Place, Counts>> found = Stored(**db);
  ASSERT_OK(found);
  EXPECT_EQ(*found, expected);
}

class UsageCrashStreamTest : public ::testing::TestWithParam<bool> {};

TEST_P(UsageCrashStreamTest, EveryAcknowledgedBatchSurvivesAKillFromOutsideWhole) {
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
  int64_t reserved = 0;
  int64_t settled = 0;
  char buffer[4096];
  auto count_acks = [&](ssize_t n) {
    for (ssize_t i = 0; i < n; ++i) ++(buffer[i] == 'r' ? reserved : settled);
  };
  while (reserved + settled < kAcksBeforeKill) {
    const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "the child stopped before being killed";
    count_acks(n);
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  // Acknowledgements already in the pipe were sent before the kill: count them too.
  for (;;) {
    const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    count_acks(n);
  }
  close(pipe_fds[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status));

  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = dir.path()});
  ASSERT_OK(db);
  absl::StatusOr<std::map<Place, Counts>> stored = Stored(**db);
  ASSERT_OK(stored);

  // Each place holds R whole reservations and S whole settlements: tokens are exactly
  // 12 R - 2 S and spend 7 R - 3 S for one S. A batch stored in part would break that.
  int64_t stored_reservations = 0;
  int64_t stored_settlements = 0;
  for (const auto& [place, counts] : *stored) {
    const int64_t r = counts[0];
    const int64_t tokens_refunded = kReserved[1] * r - counts[1];
    const int64_t spend_refunded = kReserved[2] * r - counts[2];
    ASSERT_EQ(tokens_refunded % kRefunded[1], 0) << std::get<0>(place);
    ASSERT_EQ(spend_refunded % kRefunded[2], 0) << std::get<0>(place);
    const int64_t settlements = tokens_refunded / kRefunded[1];
    EXPECT_EQ(spend_refunded / kRefunded[2], settlements) << std::get<0>(place);
    EXPECT_GE(settlements, 0);
    EXPECT_LE(settlements, r);
    stored_reservations += r;
    stored_settlements += settlements;
  }
  // Every acknowledged batch is there; at most one per writer thread was stored but not yet
  // acknowledged when the kill came.
  EXPECT_GE(stored_reservations, reserved);
  EXPECT_LE(stored_reservations, reserved + 4);
  EXPECT_GE(stored_settlements, settled);
  EXPECT_LE(stored_settlements, settled + 4);
}

INSTANTIATE_TEST_SUITE_P(Durability, UsageCrashStreamTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Fsync" : "ProcessCrash";
                         });

}  // namespace
}  // namespace anyai::storage
