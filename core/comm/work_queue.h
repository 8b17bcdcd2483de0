// A dynamic work queue over MPI ranks: items 0, 1, 2, ... handed out one at a time to whichever
// rank asks first, so fast ranks take more and none idles while work remains. Rank 0 serves the
// others from a thread that polls for requests (sleeping between polls, so it does not take a
// core from the work) and takes its own items from the same counter.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>

#include "core/mpi.h"

namespace vitruvian {

class WorkQueue {
 public:
  /// Collective over `comm` (duplicated for the queue's messages). With one rank, or without
  /// MPI_THREAD_MULTIPLE (`threads_ok` false), items go round-robin instead: item i to rank i mod N.
  WorkQueue(const MpiComm& comm, std::int64_t total, bool threads_ok);
  /// Calls finish(); never throws (logs).
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  /// The next item for this rank, or nothing when all are handed out. Each item goes to exactly
  /// one rank; each rank receives its items in increasing order.
  std::optional<std::int64_t> next();
  /// Items handed out so far to all ranks (rank 0 knows; elsewhere those this rank received).
  std::int64_t handed_out() const noexcept { return handed_.load(); }
  /// Rank 0 waits until every rank has been told the queue is empty. Not a barrier elsewhere.
  void finish();

 private:
  void serve();

  MpiComm comm_;
  std::int64_t total_;
  bool dynamic_;
  std::atomic<std::int64_t> counter_{0};
  std::atomic<std::int64_t> handed_{0};
  std::int64_t round_robin_ = 0;
  bool drained_ = false;
  std::thread server_;  ///< rank 0 with several ranks only
};

}  // namespace vitruvian
