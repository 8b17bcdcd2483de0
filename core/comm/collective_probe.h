// Timing of one collective through a Communicator and, on the same buffers in the same
// iterations, through the library call underneath it (Communicator::library_collective: MPI's
// or NCCL's own), the nccl-tests way: time = the slowest rank's, bus bandwidth = algbw x the
// op's bus factor, and a result check against the closed form. Buffers live on the
// communicator's device. Used by collectives_bench and `vitruvian bench`.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/comm/communicator.h"

namespace vitruvian {

/// nccl-tests' bus bandwidth factor of `op` ("allreduce", "allgather", "reduce_scatter",
/// "broadcast") over n ranks.
double collective_bus_factor(const std::string& op, int n);

/// The buffers of one (op, element count): `count` elements of the op's main buffer, filled with
/// values whose result has a closed form (see collective_wrong_elements).
struct CollectiveBuffers {
  std::string op;
  at::Tensor a, b;  ///< allreduce/broadcast: a in place; allgather: a in, b out; reduce_scatter: a in, b out
  std::int64_t count = 0;
};
/// InputError for an unknown op; `count` must be a multiple of the communicator's size.
CollectiveBuffers make_collective_buffers(const Communicator& comm, const std::string& op, std::int64_t count,
                                          at::ScalarType dtype);

/// Whether `comm` has a library call to compare with (Communicator::has_library_collective).
bool has_raw_collective(const Communicator& comm);
/// One op through the communicator, or (raw) through the library call underneath it.
void run_collective(Communicator& comm, CollectiveBuffers& buffers, bool raw);
/// One barrier, op and slowest-rank reduction of the elapsed seconds.
double time_collective_once(Communicator& comm, CollectiveBuffers& buffers, bool raw);
/// Runs one fresh op on known data and returns the elements that differ from the closed form,
/// summed over the ranks.
std::int64_t collective_wrong_elements(Communicator& comm, const std::string& op, std::int64_t count,
                                       at::ScalarType dtype, bool raw);

struct CollectiveTiming {
  std::string op;
  std::int64_t bytes = 0;        ///< the main buffer's size (nccl-tests' "size")
  double seconds = 0;            ///< the communicator's median over iterations
  double raw_seconds = 0;        ///< the raw call's median; 0 without one
  double busbw = 0, raw_busbw = 0;  ///< bytes/s
  std::int64_t wrong = 0;        ///< elements off the closed form, both paths
};
/// `iterations` rounds (after 2 warm-up rounds), each timing the raw call and the communicator
/// back to back, alternating which goes first. `bytes` is rounded to whole elements per rank.
CollectiveTiming time_collective(Communicator& comm, const std::string& op, std::int64_t bytes, int iterations,
                                 at::ScalarType dtype = at::kFloat);

double median_of(std::vector<double> values);

}  // namespace vitruvian
