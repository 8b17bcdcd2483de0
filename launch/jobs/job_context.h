// What every job receives from the CLI: the MPI environment, the resolved runtime config and
// this rank's device.
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
};

/// Collective: true on every rank when `ok` holds on every rank; otherwise the lowest failing
/// rank prints "vitruvian: <message>" (one line for the whole job) and every rank gets false.
bool agree_all(const JobContext& context, bool ok, const std::string& message);

}  // namespace vitruvian::jobs
