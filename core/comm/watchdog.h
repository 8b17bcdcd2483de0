// Watchdog for collectives: each communicator registers the operations in flight; a background
// thread, polling every limit/10 (5 ms to 250 ms), calls the timeout handler (which ends the
// job) when one outlives the limit. Registering never wakes the thread, so it costs ~100 ns.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "core/exit_code.h"

namespace vitruvian {

/// Exit code of a job ended by a collective timeout (as timeout(1)).
constexpr int kCollectiveTimeoutExitCode = exit_status(ExitCode::kCollectiveTimeout);

/// A watched operation as plain values, turned into text only when it times out: building the
/// text for every collective would put string work on each call's path.
struct OpDescription {
  const char* name = "";        ///< "allreduce", ... (a string literal)
  std::uint64_t sequence = 0;   ///< the communicator's count of operations, from 1
  const char* op = nullptr;     ///< "sum", ... or nullptr
  int root = -1;                ///< broadcast root, or -1
  const char* dtype = nullptr;  ///< "float32", ... or nullptr without a tensor
  std::int64_t numel = 0;
  /// "allreduce #3 (sum, float32, 8 elements)", "broadcast #2 (root 0, int64, 1 element)",
  /// "barrier #5".
  std::string str() const;
};

/// Logs `message` as critical (and to stderr) and ends the whole job with MPI_Abort and exit
/// code kCollectiveTimeoutExitCode. The default timeout handler.
[[noreturn]] void end_job_on_timeout(const std::string& message);

/// Receives the full message of a timeout ("rank 1/3 on node-a waited 5.0 s for ...").
using TimeoutHandler = std::function<void(const std::string& message)>;

/// "20.1 s": seconds as timeout messages write them.
std::string format_seconds(double seconds);
/// "(limit 20.0 s, runtime.collective_timeout_s)": the limit a timeout message refers to.
std::string limit_note(double limit_s);

/// The timeout settings of the control plane and the work queue, shared by their options
/// classes (fluent setters returning the derived options).
template <class Derived>
class TimeoutOptions {
 public:
  /// Seconds a wait on other ranks may last (runtime.collective_timeout_s); <= 0: no limit.
  Derived& timeout_s(double seconds) {
    timeout_s_ = seconds;
    return static_cast<Derived&>(*this);
  }
  double timeout_s() const noexcept { return timeout_s_; }
  /// Called with the message when a wait outlives the limit; the default ends the job.
  Derived& on_timeout(TimeoutHandler handler) {
    on_timeout_ = std::move(handler);
    return static_cast<Derived&>(*this);
  }
  const TimeoutHandler& on_timeout() const noexcept { return on_timeout_; }

 private:
  double timeout_s_ = 600.0;
  TimeoutHandler on_timeout_ = end_job_on_timeout;
};

class Watchdog {
 public:
  using TimeoutHandler = vitruvian::TimeoutHandler;
  /// Polled for device-side work: true once the operation has finished.
  using DoneProbe = std::function<bool()>;

  /// `context` ends the message, e.g. "on communicator 'world' (mpi, 3 ranks)". timeout_s <= 0
  /// disables watching. `thread_setup`, if given, runs first on the watchdog thread (e.g. to
  /// make the communicator's CUDA device current there before probes query its events).
  Watchdog(std::string context, double timeout_s, TimeoutHandler on_timeout = end_job_on_timeout,
           std::function<void()> thread_setup = nullptr);
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog();

  /// Starts watching `what`. With `done`, the entry ends by itself once done() is true.
  std::uint64_t begin(const OpDescription& what, DoneProbe done = nullptr);
  /// Stops watching entry `id`.
  void end(std::uint64_t id);

  /// Watches for the lifetime of the scope.
  class Scope {
   public:
    Scope(Watchdog& dog, const OpDescription& what) : dog_(dog), id_(dog.begin(what)) {}
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() { dog_.end(id_); }

   private:
    Watchdog& dog_;
    std::uint64_t id_;
  };

  double timeout_s() const noexcept { return timeout_s_; }

 private:
  struct Entry {
    OpDescription what;
    std::chrono::steady_clock::time_point start;
    DoneProbe done;
  };
  void loop();

  std::string context_;
  double timeout_s_;
  TimeoutHandler on_timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::uint64_t, Entry> entries_;
  std::uint64_t next_id_ = 1;
  bool stop_ = false;
  bool fired_ = false;
  std::thread thread_;
};

}  // namespace vitruvian
