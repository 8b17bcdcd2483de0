// The stop request: one process-wide flag written by the signal handlers, read by the jobs.
#include "core/stop_request.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <initializer_list>

namespace vitruvian {
namespace {

// A lock-free atomic is async-signal-safe to store from a handler (and visible to every thread).
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free to be set by a signal handler");

extern "C" void record_stop_signal(int signal) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signal);  // the first signal wins; nothing else here
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (MPI, file I/O) go on rather than fail with EINTR
  for (const int signal : {SIGTERM, SIGUSR1}) sigaction(signal, &action, nullptr);
}

int stop_signal() noexcept { return g_stop_signal.load(std::memory_order_relaxed); }

void set_stop_signal(int signal) noexcept { g_stop_signal.store(signal); }

const char* signal_name(int signal) noexcept {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "another signal";
  }
}

}  // namespace vitruvian
