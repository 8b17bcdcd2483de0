// Fault injection for tests of failure handling: named points in the code where the environment
// variable VITRUVIAN_FAULT can make one rank exit, leave the job, stop, die or throw.
//
//   VITRUVIAN_FAULT=<point>@<rank>[#<N>]:<action>[,<point>@<rank>[#<N>]:<action>...]
//     point   the name passed to fault_point(), e.g. "campaign.setup", "control_plane"
//     rank    this process's world rank (process_identity()), or * for every rank
//     N       act the N-th time this rank hits the point (default 1, the first time)
//     action  exit   _exit(kInjectedExitCode) without MPI_Finalize: a rank that crashes
//             leave  MPI_Finalize, then exit 0: a rank that quits the job early, leaving its
//                    peers waiting (the hang only our timeouts catch)
//             stop   raise(SIGSTOP): a rank that hangs (until SIGCONT)
//             kill   raise(SIGKILL)
//             throw  throw InternalError naming the point
//   e.g. VITRUVIAN_FAULT=campaign.setup@1:exit   VITRUVIAN_FAULT=work_queue.item@2#3:stop
//
// The variable is read and parsed once, at the first fault point reached; when it is unset a
// fault point costs one load and one branch. Acting prints one line to stderr saying what.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace vitruvian {

/// Exit code of the `exit` action: none of ExitCode's (core/exit_code.h), so that a crash is
/// never taken for one of the jobs' own endings.
constexpr int kInjectedExitCode = 87;

/// One parsed entry of VITRUVIAN_FAULT.
struct FaultSpec {
  enum class Action { kExit, kLeave, kStop, kKill, kThrow };
  std::string point;
  int rank = -1;         ///< -1: every rank (*)
  std::int64_t hit = 1;  ///< act on the hit-th time the point is reached
  Action action = Action::kExit;
};

/// Parses a VITRUVIAN_FAULT value (the format above); throws ConfigError naming the bad entry.
std::vector<FaultSpec> parse_fault_specs(const std::string& text);

namespace detail {
/// 0: VITRUVIAN_FAULT not read yet; 1: unset (fault points do nothing); 2: armed.
extern std::atomic<int> fault_state;
void fault_point_slow(const char* name);
}  // namespace detail

/// A named point where VITRUVIAN_FAULT may inject a fault on this rank (see above).
inline void fault_point(const char* name) {
  if (detail::fault_state.load(std::memory_order_relaxed) != 1) detail::fault_point_slow(name);
}

}  // namespace vitruvian
