// The roll call after a collective timed out: which peers of the communicator wait in a
// collective too and which do not answer (stopped, hung, or busy outside the collectives), so
// the timeout message can name the rank that holds the others up.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "core/comm/p2p.h"
#include "core/comm/watchdog.h"
#include "core/mpi.h"

namespace vitruvian {

/// Roll calls among the ranks of one communicator, on its own duplicate of it. Needs
/// MPI_THREAD_MULTIPLE: answer() runs on the watchdog thread while collectives run on others.
/// Thread-safe (one internal lock).
class RollCall {
 public:
  /// Collective over `comm`: duplicates it and exchanges the host names.
  explicit RollCall(const MpiComm& comm);
  RollCall(const RollCall&) = delete;
  RollCall& operator=(const RollCall&) = delete;

  /// Answers the peers' roll calls that have arrived: this rank waits in `what`. Never blocks;
  /// one MPI_Iprobe when none has. Errors are dropped (the asker then finds this rank silent).
  void answer(const OpDescription& what) noexcept;
  /// Asks every peer what it waits in and answers theirs ("timed out too") until all answered
  /// or `wait_s` passed. Returns e.g. "rank 2 (node-b) did not answer (stopped, or not in a
  /// collective); rank 1 (node-a) waits in allreduce #5 (sum, float32, 8 elements)".
  std::string ask(double wait_s);

 private:
  /// Replies `state` to every roll call that has arrived; the caller holds mutex_.
  void reply_to_arrived(const std::string& state);

  MpiComm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
  std::mutex mutex_;
  Outbox outbox_;
};

}  // namespace vitruvian
