// The roll call's protocol on its duplicate communicator: a query (tag 1, empty) to every peer;
// each peer that waits in a collective replies (tag 2) with the operation's description.
#include "core/comm/roll_call.h"

#include <memory>

namespace vitruvian {
namespace {
constexpr int kQueryTag = 1;
constexpr int kReplyTag = 2;
}  // namespace

RollCall::RollCall(const MpiComm& comm) : comm_(comm.dup()), rank_(comm_.rank()), size_(comm_.size()) {
  hosts_ = exchange_host_names(comm_);
}

void RollCall::reply_to_arrived(const std::string& state) {
  std::shared_ptr<const std::string> bytes;
  while (auto query = receive_if_arrived(comm_.get(), MPI_ANY_SOURCE, kQueryTag)) {
    if (!bytes) bytes = std::make_shared<const std::string>(state);
    outbox_.send(comm_.get(), query->source, kReplyTag, bytes);
  }
  outbox_.poll();
}

void RollCall::answer(const OpDescription& what) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  try {
    int arrived = 0;
    check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, comm_.get(), &arrived, MPI_STATUS_IGNORE), "MPI_Iprobe");
    if (arrived) reply_to_arrived("waits in " + what.str());
  } catch (const std::exception&) {  // best effort: the asker then reports this rank as silent
  }
}

std::string RollCall::ask(double wait_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto query = std::make_shared<const std::string>();
  for (int r = 0; r < size_; ++r) {
    if (r != rank_) outbox_.send(comm_.get(), r, kQueryTag, query);
  }
  std::vector<std::string> replies(static_cast<std::size_t>(size_));
  int missing = size_ - 1;
  const auto deadline = deadline_after(SteadyClock::now(), wait_s);
  Backoff backoff;
  while (missing > 0 && SteadyClock::now() < deadline) {
    reply_to_arrived("timed out too");
    if (auto reply = receive_if_arrived(comm_.get(), MPI_ANY_SOURCE, kReplyTag)) {
      auto& slot = replies[static_cast<std::size_t>(reply->source)];
      if (slot.empty()) --missing;
      slot = reply->bytes.empty() ? "answered" : std::move(reply->bytes);
      backoff.reset();
      continue;
    }
    backoff.wait();
  }
  std::string silent, waiting;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    const std::string& reply = replies[static_cast<std::size_t>(r)];
    if (reply.empty()) {
      silent += (silent.empty() ? "" : ", ") + rank_on_host(r, hosts_);
    } else {
      waiting += "; " + rank_on_host(r, hosts_) + " " + reply;
    }
  }
  const std::string head = silent.empty() ? std::string("every peer answered")
                                          : silent + " did not answer within " + format_seconds(wait_s) +
                                                " (stopped, or not in a collective)";
  return head + waiting;
}

}  // namespace vitruvian
