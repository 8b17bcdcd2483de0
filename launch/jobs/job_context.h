// What every job receives from the CLI: the MPI environment, the resolved runtime config,
// this rank's device and the whole resolved config as YAML.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "core/mpi_env.h"
#include "core/runtime.h"

namespace vitruvian::jobs {

struct JobContext {
  const MpiEnvironment& env;
  RuntimeConfig runtime;
  c10::Device device;
  std::string resolved_config;  ///< YAML of runtime and the verb's sections, as --save-config writes it
};

/// Collective: true on every rank when every rank passes an empty `failure`; otherwise the
/// lowest failing rank writes its `failure` text to stderr as it is (one report for the whole
/// job, whichever ranks found the problem) and every rank gets false.
bool all_ranks_ok(const MpiEnvironment& env, const std::string& failure);

/// all_ranks_ok for jobs: a failure is reported as the line "vitruvian: <message>".
bool agree_all(const JobContext& context, bool ok, const std::string& message);
/// agree_all on a problem found by this rank ("" for none): the jobs' one way of agreeing
/// whether they may go on.
bool agree_all(const JobContext& context, const std::string& problem);

}  // namespace vitruvian::jobs
