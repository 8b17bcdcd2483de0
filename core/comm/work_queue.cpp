// Protocol on the queue's own communicator; every message is two int64 {kind, value}:
//   rank r -> 0, tag kToRoot:  kRequest (an item, please), kBeat (alive; every timeout/4 from r's
//                              monitor thread), kDone (r has finished its items; its last message)
//   0 -> rank r, tag kItem:    the item's index, -1 when none is left
//   0 -> rank r, tag kNews:    kBeat (every timeout/4), then kDrained once every rank is done
// Messages to rank 0 go out under one lock, so kDone arrives after r's last beat; kDrained is
// rank 0's last message to r on its tag, so both sides end with nothing left on the wire.
#include "core/comm/work_queue.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "core/comm/p2p.h"
#include "core/errors.h"
#include "core/fault_injection.h"

namespace vitruvian {
namespace {
constexpr int kToRootTag = 1;
constexpr int kItemTag = 2;
constexpr int kNewsTag = 3;
enum Kind : std::int64_t { kRequest = 1, kBeat, kDone, kDrained };

std::shared_ptr<const std::string> message(std::int64_t kind, std::int64_t value) {
  const std::int64_t words[2] = {kind, value};
  return std::make_shared<const std::string>(reinterpret_cast<const char*>(words), sizeof words);
}

/// The two words of a message (zeros for a malformed one).
std::pair<std::int64_t, std::int64_t> words(const std::string& bytes) {
  std::int64_t w[2] = {0, 0};
  std::memcpy(w, bytes.data(), std::min(bytes.size(), sizeof w));
  return {w[0], w[1]};
}

std::string holding_text(std::int64_t item) {
  return item >= 0 ? "while holding item " + std::to_string(item) : "while holding no item";
}
}  // namespace

/// What rank 0's server knows of another rank.
struct WorkQueue::Peer {
  SteadyClock::time_point heard;
  std::int64_t holding = -1;
  bool done = false;
};

WorkQueue::WorkQueue(const MpiComm& comm, std::int64_t total, bool threads_ok, WorkQueueOptions options)
    : comm_(comm.dup()), options_(std::move(options)), total_(total), dynamic_(threads_ok && comm.size() > 1) {
  if (!options_.on_timeout()) {
    throw InputError("WorkQueueOptions::on_timeout", "empty handler; keep the default end_job_on_timeout or pass one");
  }
  round_robin_ = comm_.rank();
  if (!dynamic_) return;
  hosts_ = exchange_host_names(comm_);
  if (comm_.rank() == 0) {
    thread_ = std::thread([this] { run_thread(&WorkQueue::serve); });
  } else {
    outbox_ = std::make_unique<Outbox>();
    thread_ = std::thread([this] { run_thread(&WorkQueue::monitor); });
  }
}

WorkQueue::~WorkQueue() {
  try {
    finish();
  } catch (const std::exception& e) {
    spdlog::error("work queue: {}", e.what());
  }
}

void WorkQueue::run_thread(void (WorkQueue::*body)()) {
  try {
    (this->*body)();
  } catch (const std::exception& e) {
    spdlog::error("work queue {}: {}", comm_.rank() == 0 ? "server" : "monitor", e.what());
    comm_.abort(1);  // the other ranks would wait for this one forever
  }
}

void WorkQueue::report(const std::string& detail) {
  if (reported_.exchange(true)) return;
  const std::string text =
      describe_process() + ", on the work queue: " + detail + " " + limit_note(options_.timeout_s());
  try {
    options_.on_timeout()(text);
  } catch (const std::exception& e) {
    spdlog::error("work queue timeout handler: {}", e.what());
  }
}

void WorkQueue::serve() {
  const int size = comm_.size();
  std::vector<Peer> peers(static_cast<std::size_t>(size), Peer{SteadyClock::now(), -1, false});
  peers[0].done = true;  // rank 0's own items: root_done_
  int done = 1;
  Outbox outbox;
  const double period = options_.timeout_s() / 4;
  const auto beat = message(kBeat, 0);
  auto next_beat = SteadyClock::now();
  Backoff backoff;
  LoopGap gap;
  while (done < size || !root_done_.load()) {
    bool progress = false;
    while (auto received = receive_if_arrived(comm_.get(), MPI_ANY_SOURCE, kToRootTag)) {
      if (serve_message(received->bytes, received->source, peers, outbox)) ++done;
      progress = true;
    }
    if (period > 0 && SteadyClock::now() >= next_beat) {
      for (int r = 1; r < size; ++r) outbox.send(comm_.get(), r, kNewsTag, beat);
      next_beat = deadline_after(SteadyClock::now(), period);
    }
    if (gap.exceeded(period)) {
      for (Peer& peer : peers) peer.heard = SteadyClock::now();  // this process did not run
    }
    if (options_.timeout_s() > 0 && !reported_.load()) check_peers(peers);
    outbox.poll();
    if (progress) {
      backoff.reset();
    } else {
      backoff.wait();
    }
  }
  const auto drained = message(kDrained, 0);
  for (int r = 1; r < size; ++r) outbox.send(comm_.get(), r, kNewsTag, drained);
  if (!outbox.flush(deadline_after(SteadyClock::now(), options_.timeout_s())).empty()) {
    spdlog::warn("work queue: not every rank took the news that the queue is drained");
  }
}

bool WorkQueue::serve_message(const std::string& bytes, int source, std::vector<Peer>& peers, Outbox& outbox) {
  Peer& peer = peers[static_cast<std::size_t>(source)];
  peer.heard = SteadyClock::now();
  const std::int64_t kind = words(bytes).first;
  if (kind == kRequest) {
    const std::int64_t item = take();
    peer.holding = item;
    outbox.send(comm_.get(), source, kItemTag, message(item, 0));
  } else if (kind == kDone && !peer.done) {
    peer.holding = -1;
    peer.done = true;
    return true;
  }
  return false;
}

void WorkQueue::check_peers(const std::vector<Peer>& peers) {
  const auto now = SteadyClock::now();
  for (std::size_t r = 1; r < peers.size(); ++r) {
    const double silent = std::chrono::duration<double>(now - peers[r].heard).count();
    if (peers[r].done || silent <= options_.timeout_s()) continue;
    report(rank_on_host(static_cast<int>(r), hosts_) + " has been silent for " + format_seconds(silent) + " " +
           holding_text(peers[r].holding));
    return;
  }
}

void WorkQueue::monitor() {
  const double period = options_.timeout_s() / 4;
  auto heard = SteadyClock::now();
  auto next_beat = heard;
  Backoff backoff;
  LoopGap gap;
  while (true) {
    if (gap.exceeded(period)) heard = SteadyClock::now();  // this process did not run
    bool progress = false;
    while (auto received = receive_if_arrived(comm_.get(), 0, kNewsTag)) {
      heard = SteadyClock::now();
      if (words(received->bytes).first == kDrained) return;
      progress = true;
    }
    if (period > 0 && options_.heartbeats() && SteadyClock::now() >= next_beat) {
      tell_root(kBeat, holding_.load());
      next_beat = deadline_after(SteadyClock::now(), period);
    }
    bool waiting_for_the_end = false;
    {
      std::lock_guard<std::mutex> lock(send_mutex_);
      outbox_->poll();
      waiting_for_the_end = said_done_;
    }
    const double silent = seconds_since(heard);
    if (options_.timeout_s() > 0 && silent > options_.timeout_s() && !reported_.load()) {
      report("no word from " + rank_on_host(0, hosts_) + " for " + format_seconds(silent) + " " +
             (waiting_for_the_end ? "while waiting for the other ranks to finish" : holding_text(holding_.load())));
    }
    if (progress) {
      backoff.reset();
    } else {
      backoff.wait();
    }
  }
}

std::int64_t WorkQueue::take() {
  const std::int64_t item = counter_.fetch_add(1);
  if (item >= total_) return -1;
  handed_.fetch_add(1);
  return item;
}

void WorkQueue::tell_root(std::int64_t kind, std::int64_t value) {
  std::lock_guard<std::mutex> lock(send_mutex_);
  if (said_done_) return;
  outbox_->send(comm_.get(), 0, kToRootTag, message(kind, value));
  said_done_ = kind == kDone;
}

std::optional<std::int64_t> WorkQueue::next() {
  if (drained_) return std::nullopt;
  std::int64_t item = -1;
  if (!dynamic_) {
    item = round_robin_ < total_ ? round_robin_ : -1;
    round_robin_ += comm_.size();
    if (item >= 0) handed_.fetch_add(1);
  } else if (comm_.rank() == 0) {
    item = take();
  } else {
    holding_ = -1;
    tell_root(kRequest, 0);
    Backoff backoff;
    std::optional<PeerMessage> reply;
    while (!(reply = receive_if_arrived(comm_.get(), 0, kItemTag))) backoff.wait();
    item = words(reply->bytes).first;
    if (item >= 0) handed_.fetch_add(1);
  }
  holding_ = item;
  if (item < 0) {
    drained_ = true;
    if (dynamic_ && comm_.rank() != 0) tell_root(kDone, 0);
    if (comm_.rank() == 0) root_done_ = true;
    return std::nullopt;
  }
  fault_point("work_queue.item");
  return item;
}

void WorkQueue::finish() {
  if (finished_) return;
  finished_ = true;
  holding_ = -1;
  drained_ = true;
  if (!dynamic_) {
    if (comm_.size() > 1) check_mpi(MPI_Barrier(comm_.get()), "MPI_Barrier(work queue)");
    return;
  }
  if (comm_.rank() == 0) {
    root_done_ = true;
  } else {
    tell_root(kDone, 0);
  }
  if (thread_.joinable()) thread_.join();                       // rank 0: every rank is done; others: rank 0 said so
  if (outbox_) outbox_->flush(SteadyClock::time_point::max());  // rank 0 has had every message
}

}  // namespace vitruvian
