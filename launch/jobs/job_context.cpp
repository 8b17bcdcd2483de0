// Agreement across ranks on whether a job may go on.
#include "launch/jobs/job_context.h"

#include <iostream>

#include "core/mpi.h"

namespace vitruvian::jobs {

bool agree_all(const JobContext& context, bool ok, const std::string& message) {
  int failing = ok ? context.env.size() : context.env.rank();
  int first = failing;
  check_mpi(MPI_Allreduce(&failing, &first, 1, MPI_INT, MPI_MIN, context.env.world().get()), "MPI_Allreduce(job status)");
  if (!ok && first == context.env.rank()) std::cerr << "vitruvian: " << message << std::endl;
  return first == context.env.size();
}

}  // namespace vitruvian::jobs
