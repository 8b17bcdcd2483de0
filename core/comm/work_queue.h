// A dynamic work queue over MPI ranks: items 0, 1, 2, ... handed out one at a time to whichever
// rank asks first, so fast ranks take more and none idles while work remains. Rank 0 serves the
// others from a thread and takes its own items from the same counter. Ranks and rank 0 exchange
// heartbeats, so a rank that goes silent while holding an item (stopped, dead, gone) ends the
// job with a message naming it, however long a legitimate item may take.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/comm/watchdog.h"
#include "core/mpi.h"

namespace vitruvian {

class Outbox;

/// Options of a work queue: timeout_s() (runtime.collective_timeout_s: how long a rank may be
/// silent; <= 0 disables the liveness checks) and on_timeout() (default end_job_on_timeout).
/// The handler runs on the queue's background thread, at most once per queue; if it returns
/// (tests), the queue goes on without further checks.
class WorkQueueOptions : public TimeoutOptions<WorkQueueOptions> {
 public:
  /// For tests of the liveness check only: false stops this rank's heartbeats, so rank 0 sees
  /// it silent while it holds an item (it still asks for items and says when it is done).
  WorkQueueOptions& heartbeats(bool on) {
    heartbeats_ = on;
    return *this;
  }
  bool heartbeats() const noexcept { return heartbeats_; }

 private:
  bool heartbeats_ = true;
};

class WorkQueue {
 public:
  /// Collective over `comm` (duplicated for the queue's messages; host names exchanged). With
  /// one rank, or without MPI_THREAD_MULTIPLE (`threads_ok` false), items go round-robin
  /// instead (item i to rank i mod N), with no threads and so no liveness check.
  WorkQueue(const MpiComm& comm, std::int64_t total, bool threads_ok, WorkQueueOptions options = {});
  /// Calls finish(); never throws (logs).
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  /// The next item for this rank, or nothing when all are handed out (this rank has then
  /// finished its items). Each item goes to exactly one rank; each rank receives its items in
  /// increasing order.
  std::optional<std::int64_t> next();
  /// Items handed out so far to all ranks (rank 0 knows; elsewhere those this rank received).
  std::int64_t handed_out() const noexcept { return handed_.load(); }
  /// Collective: this rank takes no more items; returns on every rank once every rank has
  /// finished its items (rank 0 then tells each rank the queue is drained), so a control-plane
  /// call right after it is quick. A rank waiting here hears from rank 0 every timeout/4 and
  /// never times out because another rank's item takes long. Round-robin: an MPI_Barrier
  /// (unbounded). Calling it again does nothing.
  void finish();

 private:
  struct Peer;
  void serve();
  void monitor();
  /// Handles one message to rank 0; true when it says rank `source` has finished its items.
  bool serve_message(const std::string& bytes, int source, std::vector<Peer>& peers, Outbox& outbox);
  void check_peers(const std::vector<Peer>& peers);
  /// Rank 0: the next item from the shared counter, or -1 when none is left.
  std::int64_t take();
  /// Sends {kind, value} to rank 0 (other ranks), in order with every other such message.
  void tell_root(std::int64_t kind, std::int64_t value);
  /// Calls the handler once per queue with "<this process>: <detail> <limit>".
  void report(const std::string& detail);
  /// Runs `body` on the queue's thread; an error there ends the job (peers would wait forever).
  void run_thread(void (WorkQueue::*body)());

  MpiComm comm_;
  WorkQueueOptions options_;
  std::int64_t total_;
  bool dynamic_;
  std::vector<std::string> hosts_;
  std::atomic<std::int64_t> counter_{0};
  std::atomic<std::int64_t> handed_{0};
  std::int64_t round_robin_ = 0;
  bool drained_ = false;                   ///< next() has returned nothing
  bool finished_ = false;                  ///< finish() has run
  std::atomic<bool> root_done_{false};     ///< rank 0: its own items are finished
  std::atomic<std::int64_t> holding_{-1};  ///< the item this rank works on, for messages
  std::atomic<bool> reported_{false};      ///< the handler has been called
  std::mutex send_mutex_;                  ///< other ranks: orders messages to rank 0
  std::unique_ptr<Outbox> outbox_;         ///< other ranks: messages to rank 0 (under send_mutex_)
  bool said_done_ = false;                 ///< other ranks: told rank 0 (under send_mutex_)
  std::thread thread_;                     ///< rank 0: the server; other ranks: the monitor
};

}  // namespace vitruvian
