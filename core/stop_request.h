// A request to stop, made by a signal: the scheduler's SIGTERM (preemption, scancel, the end of
// the time limit) or SIGUSR1 (its warning before the time limit). The handlers only record the
// signal; jobs ask at points where stopping is safe and save their state before they end.
#pragma once

namespace vitruvian {

/// Installs the handlers for SIGTERM and SIGUSR1 in this process (again: no effect). They do
/// nothing but record the first such signal, so the process no longer ends on SIGTERM by
/// itself: call it only from jobs that poll stop_signal() and end on their own.
void install_stop_handlers();

/// The first signal that asked this process to stop (SIGTERM or SIGUSR1), or 0 for none yet.
/// Async-signal-safe; any thread.
int stop_signal() noexcept;

/// True once a stop was requested (stop_signal() != 0).
inline bool stop_requested() noexcept { return stop_signal() != 0; }

/// "SIGTERM", "SIGUSR1", ... for log lines; "another signal" for others.
const char* signal_name(int signal) noexcept;

/// Records `signal` as a handler would (tests, and code that stops for another reason);
/// 0 forgets an earlier request.
void set_stop_signal(int signal) noexcept;

}  // namespace vitruvian
