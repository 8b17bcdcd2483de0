// Point-to-point helpers of the control plane and the work queue: every rank's host name, whole
// messages taken only once they have arrived, sends kept alive until delivered, and polling that
// backs off so a waiting rank does not take a core.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mpi.h"
#include "core/stopwatch.h"

namespace vitruvian {

/// The time `seconds` after `start`; never (time_point::max()) when seconds <= 0.
SteadyClock::time_point deadline_after(SteadyClock::time_point start, double seconds);

/// Collective over `comm`: every rank's host name (MPI_Get_processor_name), in rank order.
std::vector<std::string> exchange_host_names(const MpiComm& comm);
/// "rank 1 (node-a)": a peer as timeout messages name it; `hosts` from exchange_host_names().
std::string rank_on_host(int rank, const std::vector<std::string>& hosts);

/// A whole message taken off the wire.
struct PeerMessage {
  int source = -1;
  std::string bytes;
};

/// Takes one message from `source` (or MPI_ANY_SOURCE) with `tag` if one has arrived, else
/// returns nothing at once. Matched with MPI_Improbe + MPI_Mrecv, so threads polling the same
/// source and tag never take each other's messages.
std::optional<PeerMessage> receive_if_arrived(MPI_Comm comm, int source, int tag);

/// Non-blocking sends (MPI_Isend) whose buffers live until MPI has sent them, so a stopped or
/// vanished peer never blocks the sender. Not thread-safe: one thread (or one lock) per outbox.
class Outbox {
 public:
  Outbox() = default;
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;
  /// Frees the requests of sends still pending and leaks their buffers on purpose (MPI may still
  /// read them); only a peer that never received, after a timeout, leaves such sends.
  ~Outbox();

  /// Starts sending `bytes` (at most INT_MAX) to `destination`; several sends may share bytes.
  void send(MPI_Comm comm, int destination, int tag, std::shared_ptr<const std::string> bytes);
  /// Drops the sends that have finished. Never blocks.
  void poll();
  /// Waits (polling with Backoff) until every send has finished or `deadline` passes; returns
  /// the destinations of the sends still pending, empty when all went out.
  std::vector<int> flush(SteadyClock::time_point deadline);

 private:
  struct Pending {
    MPI_Request request;
    int destination;
    std::shared_ptr<const std::string> bytes;
  };
  std::vector<Pending> pending_;
};

/// Sleeps between polls for rare messages: 50 µs at first, doubling up to 10 ms; reset() once
/// something arrived, so a busy exchange stays quick and a long wait costs ~100 wake-ups a second.
class Backoff {
 public:
  void wait();
  void reset() noexcept { delay_ = kFirst; }

 private:
  static constexpr std::chrono::microseconds kFirst{50};
  static constexpr std::chrono::microseconds kLast{10000};
  std::chrono::microseconds delay_ = kFirst;
};

/// When a polling loop last ran: a gap longer than the limit means this process was stopped or
/// starved, which says nothing about whether its peers went silent.
class LoopGap {
 public:
  /// True when more than `limit_s` (> 0) passed since the previous call (or construction).
  bool exceeded(double limit_s);

 private:
  SteadyClock::time_point last_ = SteadyClock::now();
};

}  // namespace vitruvian
