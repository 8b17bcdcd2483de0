// The `vitruvian` command line: global options (config files, --set overrides, runtime flags)
// and one verb per job. Usage errors (CLI11's included), config errors and input errors exit
// with code 2, job failures with 1, a collective timeout with 124 (core/exit_code.h).
#pragma once

namespace vitruvian {

/// Runs the CLI in an MPI job (or a lone process). Returns the exit code.
int run_cli(int argc, char** argv);

}  // namespace vitruvian
