// Watchdog thread for collectives.
#include "core/comm/watchdog.h"

#include <mpi.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "core/errors.h"

namespace vitruvian {

std::string OpDescription::str() const {
  std::string text = std::string(name) + " #" + std::to_string(sequence);
  std::string details;
  auto add = [&](const std::string& part) { details += (details.empty() ? "" : ", ") + part; };
  if (op != nullptr) add(op);
  if (root >= 0) add("root " + std::to_string(root));
  if (dtype != nullptr) add(std::string(dtype) + ", " + std::to_string(numel) + (numel == 1 ? " element" : " elements"));
  return details.empty() ? text : text + " (" + details + ")";
}

std::string format_seconds(double seconds) {
  char text[48];
  std::snprintf(text, sizeof text, "%.1f s", seconds);
  return text;
}

std::string limit_note(double limit_s) { return "(limit " + format_seconds(limit_s) + ", runtime.collective_timeout_s)"; }

void end_job_on_timeout(const std::string& message) {
  spdlog::critical("{}", message);
  std::fprintf(stderr, "vitruvian: %s\n", message.c_str());
  std::fflush(stderr);
  // Straight to MPI_Abort: aborting an NCCL communicator could block on the stuck operation
  // (or race with a thread inside NCCL); process exit tears device kernels down anyway.
  MPI_Abort(MPI_COMM_WORLD, kCollectiveTimeoutExitCode);
  std::_Exit(kCollectiveTimeoutExitCode);  // MPI_Abort does not return; this is for a broken MPI
}

Watchdog::Watchdog(std::string context, double timeout_s, TimeoutHandler on_timeout,
                   std::function<void()> thread_setup)
    : context_(std::move(context)), timeout_s_(timeout_s), on_timeout_(std::move(on_timeout)) {
  if (timeout_s_ > 0) {
    thread_ = std::thread([this, setup = std::move(thread_setup)] {
      if (setup) setup();
      loop();
    });
  }
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t Watchdog::begin(const OpDescription& what, DoneProbe done) {
  if (timeout_s_ <= 0) return 0;
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t id = next_id_++;
  // No notify: waking the watchdog thread on every collective costs a context switch, which
  // shows as microseconds per small collective. It polls on its own schedule instead.
  entries_.emplace(id, Entry{what, std::chrono::steady_clock::now(), std::move(done)});
  return id;
}

void Watchdog::end(std::uint64_t id) {
  if (id == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.erase(id);
}

void Watchdog::loop() {
  using Clock = std::chrono::steady_clock;
  const auto limit = std::chrono::duration<double>(timeout_s_);
  // Poll often enough to fire within ~10% of the limit, never busier than every 5 ms.
  const auto poll = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::clamp(timeout_s_ / 10.0, 0.005, 0.25)));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, poll, [&] { return stop_; });
    if (stop_ || fired_) break;
    const auto now = Clock::now();
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.done && it->second.done()) {
        it = entries_.erase(it);
        continue;
      }
      if (now - it->second.start > limit) {
        const double waited = std::chrono::duration<double>(now - it->second.start).count();
        const std::string message = describe_process() + " waited " + format_seconds(waited) + " " +
                                    limit_note(timeout_s_) + " for " + it->second.what.str() + " " + context_ +
                                    "; a peer never joined or is stuck. Ending the job";
        fired_ = true;
        lock.unlock();
        on_timeout_(message);
        return;
      }
      ++it;
    }
  }
}

}  // namespace vitruvian
