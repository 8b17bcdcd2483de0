// `vitruvian plan DATASET`: the dataset's fingerprint (spacings, sizes, intensities per channel,
// class frequencies) turned into a training config that fits a memory budget (docs/PLANS.md).
#pragma once

#include <string>
#include <vector>

#include "core/exit_code.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

struct PlanOptions {
  std::string dataset;
  std::string task = "task";              ///< names the run folder (runs/<task>)
  std::vector<std::string> channels;      ///< input series; empty: the first study's first series
  std::string label_map = "anatomy";
  std::vector<std::string> classes;       ///< empty: every label of the table
  std::string memory = "8G";              ///< budget per rank: 8G, 512M, or bytes
  std::string model = "unet";
  std::int64_t validation_studies = 1;
  std::string output;                     ///< the config (YAML); fingerprint JSON beside it
  bool force = false;
};

/// Rank 0 plans and writes; 0 on success, 2 for bad input (one line).
ExitCode run_plan(const JobContext& context, const PlanOptions& options);

/// The `plan` verb.
std::unique_ptr<Verb> make_plan_verb();

}  // namespace vitruvian::jobs
