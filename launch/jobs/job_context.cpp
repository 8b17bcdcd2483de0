// Agreement across ranks on whether a job may go on.
#include "launch/jobs/job_context.h"

#include <exception>
#include <iostream>

namespace vitruvian::jobs {

bool all_ranks_ok(ControlPlane& control, const std::string& failure, const char* what) {
  const Agreement agreement = control.agree(failure, what);
  if (!agreement.ok && agreement.rank == control.rank()) std::cerr << failure << std::flush;
  return agreement.ok;
}

bool agree_all(const JobContext& context, const std::string& problem, const char* what) {
  return all_ranks_ok(context.control, problem.empty() ? std::string() : "vitruvian: " + problem + "\n", what);
}

std::string attempt(const std::function<void()>& step) {
  try {
    step();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace vitruvian::jobs
