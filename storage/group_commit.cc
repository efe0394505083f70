#include "storage/group_commit.h"

#include <utility>

#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace anyai::storage {

struct GroupCommit::Group {
  rocksdb::WriteBatch batch;
  size_t entries = 0;
  size_t members = 0;
  bool done = false;  // its write completed; `status` is its outcome
  absl::Status status;
  absl::CondVar changed;  // signalled when `done` is set, and to wake the next group's leader
};

GroupCommit::GroupCommit(Database& db, const rocksdb::WriteOptions& options, std::string what,
                         size_t max_group_entries)
    : db_(db),
      options_(options),
      what_(std::move(what)),
      max_group_entries_(max_group_entries),
      open_(std::make_shared<Group>()) {}

GroupCommit::~GroupCommit() = default;

WriteStats GroupCommit::stats() const {
  WriteStats stats = meter_.Snapshot();
  stats.in_flight = waiting_.load(std::memory_order_relaxed);
  return stats;
}

absl::Status GroupCommit::Write(size_t entries,
                                absl::FunctionRef<absl::Status(rocksdb::WriteBatch&)> append) {
  mu_.Lock();
  // Only a group that is waiting for a write in progress can be full (an idle one is written by
  // the caller that finds it so), and a caller alone in a group is never turned away.
  while (open_->entries > 0 && open_->entries + entries > max_group_entries_) {
    group_opened_.Wait(&mu_);
  }
  std::shared_ptr<Group> group = open_;
  group->batch.SetSavePoint();
  if (absl::Status s = append(group->batch); !s.ok()) {
    group->batch.RollbackToSavePoint().PermitUncheckedError();
    mu_.Unlock();
    return s;
  }
  group->batch.PopSavePoint().PermitUncheckedError();
  group->entries += entries;
  ++group->members;
  waiting_.fetch_add(1, std::memory_order_relaxed);
  // Wait while another group is being written: this one is either written by then (done) or
  // becomes writable, and the first of its members to wake leads it.
  while (writing_ && !group->done) group->changed.Wait(&mu_);
  if (group->done) {
    absl::Status status = group->status;
    mu_.Unlock();
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    return status;
  }

  // Lead: close the group, write it unlocked, hand its outcome to its members.
  writing_ = true;
  open_ = std::make_shared<Group>();
  group_opened_.SignalAll();
  const size_t members = group->members;
  mu_.Unlock();

  const WriteMeter::TimePoint started = meter_.Start();
  absl::Status status = db_.CheckInjectedFailure(/*write=*/true);
  if (status.ok() && group->batch.Count() > 0) {
    status = db_.Write(options_, group->batch, what_);
  }
  meter_.Finish(started, status.ok(), members);

  mu_.Lock();
  group->status = status;
  group->done = true;
  writing_ = false;
  group->changed.SignalAll();
  open_->changed.Signal();  // one member of the next group (if any) leads it
  mu_.Unlock();
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  return status;
}

}  // namespace anyai::storage
