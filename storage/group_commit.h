// Group commit for one store's writes (issue 13): the changes of concurrent callers go into one
// RocksDB WriteBatch and one write, and each caller returns only once the write that carries its
// changes has completed. So what a caller was told is stored is in the write-ahead log (and
// fdatasync()ed under Durability::kFsync) exactly as if it had written alone, while N callers
// arriving together cost one write, one WAL append and one sync instead of N, and no caller waits
// in RocksDB's own write group (its followers spin and yield before they sleep).
//
//   GroupCommit commit(db, db.write_options(), "recording usage");
//   absl::Status s = commit.Write(3, [&](rocksdb::WriteBatch& batch) {
//     return Merge(batch, ...);  // append this caller's entries: runs under the group's lock
//   });
//
// How a group forms. A caller appends its entries to the open group under a mutex. If no write is
// in progress it leads: it closes the group, writes it with the mutex released, and hands the
// status to every member. Callers that arrive during a write append to the next group and sleep;
// when the write ends, its leader wakes one of them to lead that group. So a write carries
// everything that arrived while the previous one ran; there is no timer, and a caller with no
// company writes at once, as without grouping. A group takes at most `max_group_entries` entries:
// a caller that would overflow an open group waits for the next one, so a write and its wait stay
// bounded.
//
// All or nothing. A group is one WriteBatch, so a crash or a failed write stores all of its
// members' entries or none of them, and every member of a failed write gets its error. A
// caller's own entries join one group whole: if its `append` fails, they are rolled back and the
// caller alone gets that error; the group goes on without them.
//
// Thread safety: Write() may be called from any number of threads at once. `append` runs under
// the group's lock: it must be short and must not call Write().
#ifndef ANYAI_STORAGE_GROUP_COMMIT_H_
#define ANYAI_STORAGE_GROUP_COMMIT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "storage/database.h"
#include "storage/write_stats.h"

namespace anyai::storage {

class GroupCommit {
 public:
  static constexpr size_t kDefaultMaxGroupEntries = 4096;

  // `db` and `options` are borrowed and must outlive this object. `what` names the writes in the
  // log when one fails, e.g. "recording usage".
  GroupCommit(Database& db, const rocksdb::WriteOptions& options, std::string what,
              size_t max_group_entries = kDefaultMaxGroupEntries);
  ~GroupCommit();
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Appends `entries` entries to a group with `append` and returns once the write that carries
  // them has completed: OK when they are stored, UNAVAILABLE (as Database::Write) when that write
  // failed and stored nothing, or `append`'s own error (nothing of this caller is written).
  // `entries` sizes the group (an entry count above max_group_entries makes a group of its own).
  // The Database's injected write failure applies to each write.
  absl::Status Write(size_t entries, absl::FunctionRef<absl::Status(rocksdb::WriteBatch&)> append);

  // Counters of the RocksDB writes (`writes`, `write_errors`, latency) and of the callers they
  // carried (`calls`; calls / writes is the batching factor). `in_flight` is the backlog in
  // callers: those that appended and have no answer yet.
  WriteStats stats() const;

 private:
  struct Group;

  Database& db_;
  const rocksdb::WriteOptions& options_;
  const std::string what_;
  const size_t max_group_entries_;
  WriteMeter meter_;
  std::atomic<int64_t> waiting_{0};

  absl::Mutex mu_;
  // The group callers append to; never null. A new one replaces it when its leader closes it.
  std::shared_ptr<Group> open_ ABSL_GUARDED_BY(mu_);
  // A leader is writing a closed group; callers of the open one wait.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Signalled when `open_` is replaced, for callers waiting for room in a group.
  absl::CondVar group_opened_;
};

}  // namespace anyai::storage

#endif  // ANYAI_STORAGE_GROUP_COMMIT_H_
