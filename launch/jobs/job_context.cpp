// Agreement across ranks on whether a job may go on.
#include "launch/jobs/job_context.h"

#include <iostream>

#include "core/mpi.h"

namespace vitruvian::jobs {

bool all_ranks_ok(const MpiEnvironment& env, const std::string& failure) {
  int failing = failure.empty() ? env.size() : env.rank();
  int first = failing;
  check_mpi(MPI_Allreduce(&failing, &first, 1, MPI_INT, MPI_MIN, env.world().get()), "MPI_Allreduce(status)");
  if (!failure.empty() && first == env.rank()) std::cerr << failure << std::flush;
  return first == env.size();
}

bool agree_all(const JobContext& context, bool ok, const std::string& message) {
  return all_ranks_ok(context.env, ok ? std::string() : "vitruvian: " + message + "\n");
}

bool agree_all(const JobContext& context, const std::string& problem) {
  return agree_all(context, problem.empty(), problem);
}

}  // namespace vitruvian::jobs
