// Access to the MPI environment set up by the MPI-aware GoogleTest main.
#pragma once

#include "core/mpi_env.h"

namespace vitruvian::testing {

/// The process's MPI environment (initialized before any test runs).
const MpiEnvironment& mpi();

}  // namespace vitruvian::testing
