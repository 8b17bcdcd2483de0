// Point-to-point helpers: host names, probing receives, outboxes and back-off.
#include "core/comm/p2p.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <thread>

#include "core/errors.h"

namespace vitruvian {

SteadyClock::time_point deadline_after(SteadyClock::time_point start, double seconds) {
  if (seconds <= 0) return SteadyClock::time_point::max();
  return start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

std::vector<std::string> exchange_host_names(const MpiComm& comm) {
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  check_mpi(MPI_Get_processor_name(name, &length), "MPI_Get_processor_name");
  const int size = comm.size();
  std::vector<int> lengths(static_cast<std::size_t>(size)), offsets(static_cast<std::size_t>(size), 0);
  check_mpi(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm.get()),
            "MPI_Allgather(host name lengths)");
  std::partial_sum(lengths.begin(), lengths.end() - 1, offsets.begin() + 1);
  std::string all(static_cast<std::size_t>(offsets.back() + lengths.back()), '\0');
  check_mpi(MPI_Allgatherv(name, length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comm.get()),
            "MPI_Allgatherv(host names)");
  std::vector<std::string> hosts;
  for (int r = 0; r < size; ++r) {
    hosts.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                               static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
  }
  return hosts;
}

std::string rank_on_host(int rank, const std::vector<std::string>& hosts) {
  const bool known = rank >= 0 && static_cast<std::size_t>(rank) < hosts.size();
  return "rank " + std::to_string(rank) + " (" + (known ? hosts[static_cast<std::size_t>(rank)] : "?") + ")";
}

std::optional<PeerMessage> receive_if_arrived(MPI_Comm comm, int source, int tag) {
  int arrived = 0;
  MPI_Message handle = MPI_MESSAGE_NULL;
  MPI_Status status;
  check_mpi(MPI_Improbe(source, tag, comm, &arrived, &handle, &status), "MPI_Improbe");
  if (!arrived) return std::nullopt;
  int count = 0;
  check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  PeerMessage message;
  message.source = status.MPI_SOURCE;
  message.bytes.resize(static_cast<std::size_t>(count));
  check_mpi(MPI_Mrecv(message.bytes.data(), count, MPI_BYTE, &handle, MPI_STATUS_IGNORE), "MPI_Mrecv");
  return message;
}

Outbox::~Outbox() {
  if (!mpi_is_active()) return;
  for (Pending& p : pending_) {
    int done = 0;
    MPI_Test(&p.request, &done, MPI_STATUS_IGNORE);
    if (done) continue;
    MPI_Request_free(&p.request);
    new std::shared_ptr<const std::string>(std::move(p.bytes));  // leaked: MPI may still read it
  }
}

void Outbox::send(MPI_Comm comm, int destination, int tag, std::shared_ptr<const std::string> bytes) {
  if (bytes->size() > static_cast<std::size_t>(INT_MAX)) {
    throw InputError("point-to-point message", std::to_string(bytes->size()) + " bytes exceed MPI's 32-bit counts (" +
                                                   std::to_string(INT_MAX) + ")");
  }
  Pending p{MPI_REQUEST_NULL, destination, std::move(bytes)};
  check_mpi(MPI_Isend(p.bytes->data(), static_cast<int>(p.bytes->size()), MPI_BYTE, destination, tag, comm, &p.request),
            "MPI_Isend");
  pending_.push_back(std::move(p));
}

void Outbox::poll() {
  auto finished = [](Pending& p) {
    int done = 0;
    check_mpi(MPI_Test(&p.request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  };
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(), finished), pending_.end());
}

std::vector<int> Outbox::flush(SteadyClock::time_point deadline) {
  Backoff backoff;
  for (poll(); !pending_.empty() && SteadyClock::now() < deadline; poll()) backoff.wait();
  std::vector<int> late;
  for (const Pending& p : pending_) late.push_back(p.destination);
  return late;
}

void Backoff::wait() {
  std::this_thread::sleep_for(delay_);
  delay_ = std::min(delay_ * 2, kLast);
}

bool LoopGap::exceeded(double limit_s) {
  const auto now = SteadyClock::now();
  const bool gap = limit_s > 0 && std::chrono::duration<double>(now - last_).count() > limit_s;
  last_ = now;
  return gap;
}

}  // namespace vitruvian
