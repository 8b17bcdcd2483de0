// The exit codes of Vitruvian's programs, shared by the jobs (launch/) and the collective
// watchdog (core/comm), so that a script can tell a failed job from a bad command line.
#pragma once

namespace vitruvian {

/// How a process ends. Values are the process exit status.
enum class ExitCode : int {
  kOk = 0,                  ///< the job did what it was asked
  kFailed = 1,              ///< the job ran and failed (a rank's error, rejected inputs, a failed check)
  kUsage = 2,               ///< bad command line, config or input, reported in one line before any work
  kInterrupted = 3,         ///< stopped by a signal (SIGTERM, SIGUSR1) after saving its state: run it again to go on
  kCollectiveTimeout = 124  ///< a collective outlived runtime.collective_timeout_s (as timeout(1))
};

/// The process exit status of `code`.
constexpr int exit_status(ExitCode code) noexcept { return static_cast<int>(code); }

}  // namespace vitruvian
