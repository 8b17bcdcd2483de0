// Protocol on the queue's own communicator: a rank sends an empty request (tag 1) to rank 0 and
// receives the item's index (tag 2, int64; −1 when none is left). Rank 0's server thread stops
// after telling every other rank −1.
#include "core/comm/work_queue.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "core/errors.h"

namespace vitruvian {
namespace {
constexpr int kRequestTag = 1;
constexpr int kReplyTag = 2;
}  // namespace

WorkQueue::WorkQueue(const MpiComm& comm, std::int64_t total, bool threads_ok)
    : comm_(comm.dup()), total_(total), dynamic_(threads_ok && comm.size() > 1) {
  round_robin_ = comm_.rank();
  if (dynamic_ && comm_.rank() == 0) {
    server_ = std::thread([this] {
      try {
        serve();
      } catch (const std::exception& e) {
        spdlog::error("work queue server: {}", e.what());
        comm_.abort(1);  // the other ranks would wait for replies forever
      }
    });
  }
}

WorkQueue::~WorkQueue() {
  try {
    finish();
  } catch (const std::exception& e) {
    spdlog::error("work queue: {}", e.what());
  }
}

void WorkQueue::serve() {
  int ended = 0;
  const int others = comm_.size() - 1;
  while (ended < others) {
    int flag = 0;
    MPI_Status status;
    check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, comm_.get(), &flag, &status), "MPI_Iprobe");
    if (!flag) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    check_mpi(MPI_Recv(nullptr, 0, MPI_BYTE, status.MPI_SOURCE, kRequestTag, comm_.get(), MPI_STATUS_IGNORE), "MPI_Recv");
    std::int64_t item = counter_.fetch_add(1);
    if (item >= total_) {
      item = -1;
      ++ended;
    } else {
      handed_.fetch_add(1);
    }
    check_mpi(MPI_Send(&item, 1, MPI_INT64_T, status.MPI_SOURCE, kReplyTag, comm_.get()), "MPI_Send");
  }
}

std::optional<std::int64_t> WorkQueue::next() {
  if (drained_) return std::nullopt;
  std::int64_t item = -1;
  if (!dynamic_) {
    item = round_robin_ < total_ ? round_robin_ : -1;
    round_robin_ += comm_.size();
    if (item >= 0) handed_.fetch_add(1);
  } else if (comm_.rank() == 0) {
    item = counter_.fetch_add(1);
    if (item >= total_) {
      item = -1;
    } else {
      handed_.fetch_add(1);
    }
  } else {
    check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, 0, kRequestTag, comm_.get()), "MPI_Send");
    check_mpi(MPI_Recv(&item, 1, MPI_INT64_T, 0, kReplyTag, comm_.get(), MPI_STATUS_IGNORE), "MPI_Recv");
    if (item >= 0) handed_.fetch_add(1);
  }
  if (item < 0) {
    drained_ = true;
    return std::nullopt;
  }
  return item;
}

void WorkQueue::finish() {
  if (server_.joinable()) server_.join();
}

}  // namespace vitruvian
