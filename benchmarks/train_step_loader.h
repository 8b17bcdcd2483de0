// The training-step benchmark's loader comparison, built where the data library is
// (VITRUVIAN_PARTS=all): the patch loader's batches/s on chest phantoms against the batches/s
// the measured training step consumes.
#pragma once

#include <cstdint>
#include <filesystem>

#include "core/comm/communicator.h"
#include "core/mpi_env.h"

namespace vitruvian::bench {

struct LoaderBenchShape {
  std::int64_t patch = 48, batch = 2;
  std::filesystem::path dir;  // where rank 0 writes the phantoms (kept between runs)
};

/// Writes the phantoms (rank 0, once), waits for them on every rank and registers
/// loader_vs_step/1 and /2 (workers). `step_s` is the mean step time that the train_step
/// benchmark leaves behind; it is read when the loader benchmarks run, after it.
void register_loader_vs_step(const LoaderBenchShape& shape, const MpiEnvironment& env, Communicator& comm,
                             const double* step_s);

}  // namespace vitruvian::bench
