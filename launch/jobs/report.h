// `vitruvian report RUN_DIR`: a training run's loss, throughput and validation curves, and its
// time breakdown, as one HTML page with inline SVG charts (opens in any browser).
#pragma once

#include <string>

#include "core/exit_code.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

struct ReportOptions {
  std::string run_dir;
  std::string output;  ///< default RUN_DIR/report.html
};

/// Rank 0 writes the page (atomically). Exit 0, or 2 when RUN_DIR has no readable metrics.jsonl.
ExitCode run_report(const JobContext& context, const ReportOptions& options);

/// The `report` verb.
std::unique_ptr<Verb> make_report_verb();

}  // namespace vitruvian::jobs
