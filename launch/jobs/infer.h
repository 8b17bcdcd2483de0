// `vitruvian infer`: bulk inference campaigns over MPI ranks. Every rank loads each routed model
// once; studies are handed out dynamically, largest first; each study's series go through their
// models (sliding windows, stitching under a memory limit, postprocessing, resampling back) and
// the study ends as label maps, a report JSON and a thumbnail, written atomically with a
// checksum manifest (the ledger). Rerunning skips verified studies; failures are recorded and
// the campaign goes on. Rank 0 writes the campaign summary (JSON) and an HTML page.
#pragma once

#include <string>
#include <vector>

#include "launch/jobs/campaign.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

struct InferOptions {
  std::string campaign;             ///< campaign YAML; flags below override or replace it
  std::vector<std::string> inputs;  ///< replaces the campaign's inputs
  std::string output;               ///< replaces the campaign's output folder
  std::vector<std::string> models;  ///< NAME=DIR or DIR (name "organs"): routes by the model cards' series
  std::vector<std::string> studies;
  std::string series_name, modality;  ///< for plain NIfTI inputs
  std::string mirror_axes, accumulation, precision, memory_limit, engine;
  bool channels_last = false;
  double overlap = -1;  ///< < 0: the campaign's
  std::int64_t batch = 0;  ///< 0: the campaign's
  bool nifti = false;
  bool force = false;   ///< redo every study (outputs of an earlier run are removed)
};

/// The campaign the options describe (a file with overrides, or flags alone). ConfigError or
/// InputError on bad options.
CampaignConfig campaign_from_options(const InferOptions& options);

/// Collective. Exit 0 when every study is done, 1 when some failed (each recorded with its
/// reason in campaign.json), 2 for bad options or inputs (one line).
int run_infer(const JobContext& context, const InferOptions& options);

/// The `infer` verb.
std::unique_ptr<Verb> make_infer_verb();

}  // namespace vitruvian::jobs
