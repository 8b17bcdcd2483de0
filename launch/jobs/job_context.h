// What every job receives from the CLI: the MPI environment, the resolved runtime config and
// this rank's device.
#pragma once

#include <c10/core/Device.h>

#include "core/mpi_env.h"
#include "core/runtime.h"

namespace vitruvian::jobs {

struct JobContext {
  const MpiEnvironment& env;
  RuntimeConfig runtime;
  c10::Device device;
};

}  // namespace vitruvian::jobs
