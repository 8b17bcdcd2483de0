// What every job receives from the CLI: the MPI environment, the resolved runtime config, this
// rank's device, the whole resolved config as YAML, and the control plane through which the
// ranks agree (every wait bounded by the collective timeout).
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <string>

#include "core/comm/control_plane.h"
#include "core/mpi_env.h"
#include "core/runtime.h"

namespace vitruvian::jobs {

struct JobContext {
  const MpiEnvironment& env;
  RuntimeConfig runtime;
  c10::Device device;
  std::string resolved_config;  ///< YAML of runtime and the verb's sections, as --save-config writes it
  ControlPlane& control;        ///< timeout runtime.collective_timeout_s
};

/// Collective: true on every rank when every rank passes an empty `failure`; otherwise the
/// lowest failing rank writes its `failure` text to stderr as it is (one report for the whole
/// job, whichever ranks found the problem) and every rank gets false. `what` names the phase.
bool all_ranks_ok(ControlPlane& control, const std::string& failure, const char* what);

/// all_ranks_ok for jobs on a problem found by this rank ("" for none), reported as the line
/// "vitruvian: <problem>": the jobs' one way of agreeing whether they may go on.
bool agree_all(const JobContext& context, const std::string& problem, const char* what = "job set-up");

/// Runs `step`; "" when it returns, else what it threw (for agree_all).
std::string attempt(const std::function<void()>& step);

}  // namespace vitruvian::jobs
