// The control plane: the few host-side exchanges jobs need between ranks (agree on failures,
// broadcast text, maxima, barrier), each bounded by the collective timeout and able to name the
// rank that did not take part, which MPI's own collectives cannot.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/comm/watchdog.h"
#include "core/mpi.h"

namespace vitruvian {

class Outbox;

/// Outcome of ControlPlane::agree(), the same on every rank.
struct Agreement {
  bool ok = true;       ///< every rank passed an empty failure
  int rank = -1;        ///< the lowest failing rank, or -1 when ok
  std::string message;  ///< that rank's failure text, or "" when ok
};

/// Options of a control plane: timeout_s() (runtime.collective_timeout_s; <= 0 waits forever)
/// and on_timeout() (default end_job_on_timeout). A handler that returns (tests) makes the call
/// throw TimeoutError with the same message.
class ControlPlaneOptions : public TimeoutOptions<ControlPlaneOptions> {};

/// Host-side exchanges among the ranks of a communicator, on its own duplicate of it. Every
/// rank makes the same calls in the same order, from one thread at a time; each call is a
/// gather of small point-to-point messages at rank 0, which answers every rank. A wait that
/// outlives the timeout calls the handler with a message naming the call ("agree #4 (campaign
/// set-up)") and, on rank 0, the ranks it had no word from; other ranks learn that text from
/// rank 0, or report that rank 0 itself did not answer. After a timeout the control plane is
/// spent: later calls throw TimeoutError. Calls that differ between ranks (another operation,
/// root or count) throw InternalError on every rank. O(ranks) messages at rank 0 per call:
/// meant for the handful of calls a job makes, not for data.
class ControlPlane {
 public:
  /// Collective over `comm`: duplicates it and exchanges the host names (one MPI_Allgather, the
  /// only wait without a limit).
  explicit ControlPlane(const MpiComm& comm, ControlPlaneOptions options = {});
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  /// Every rank's host name, in rank order.
  const std::vector<std::string>& hosts() const noexcept { return hosts_; }
  const ControlPlaneOptions& options() const noexcept { return options_; }

  /// Collective: ok on every rank when every rank passes an empty `failure`; otherwise every
  /// rank learns the lowest failing rank and its text. `what` names the phase in messages
  /// ("campaign set-up"); a string literal or one that outlives the call.
  Agreement agree(const std::string& failure, const char* what);
  /// Collective: rank `root`'s `bytes` (any length below 2 GiB; ignored elsewhere) on every rank.
  std::string broadcast(std::string bytes, int root, const char* what);
  /// Collective: the elementwise maximum over ranks; every rank passes as many values.
  std::vector<std::int64_t> all_max(std::vector<std::int64_t> values, const char* what);
  /// Collective: the elementwise minimum over ranks; every rank passes as many values.
  std::vector<std::int64_t> all_min(std::vector<std::int64_t> values, const char* what);
  /// Collective: returns once every rank has entered it.
  void barrier(const char* what);

 private:
  enum class Op : std::int32_t { kAgree = 1, kBroadcast, kAllMax, kAllMin, kBarrier };
  struct Call;
  /// Rank 0's combination of every rank's payload (rank order) into the answer.
  using Combine = std::function<std::string(std::vector<std::string>& payloads)>;

  std::string exchange(Op op, std::int64_t arg, const char* what, std::string payload, const Combine& combine);
  std::string serve(const Call& call, std::string payload, const Combine& combine);
  std::vector<std::string> gather(const Call& call, std::string payload, Outbox& outbox);
  std::string await_answer(const Call& call, std::string payload);
  std::vector<std::int64_t> reduce(Op op, std::vector<std::int64_t> values, const char* what);
  [[noreturn]] void time_out(const Call& call, const std::string& detail);

  MpiComm comm_;
  ControlPlaneOptions options_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<std::string> hosts_;
  std::uint64_t sequence_ = 0;
  bool spent_ = false;  ///< a call timed out; the ranks are no longer in step
};

}  // namespace vitruvian
