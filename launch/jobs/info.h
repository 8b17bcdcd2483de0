// `vitruvian info`: every rank reports its host, local rank, device and thread counts; rank 0
// prints them with the versions of every library and backend, after checking that an
// allreduce over all ranks gives the right answer on each available backend. `info --model`
// describes a network of the `model:` config section instead.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/exit_code.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::models {
struct ModelConfig;
}  // namespace vitruvian::models

namespace vitruvian::jobs {

struct InfoOptions {
  bool json = false;   ///< print JSON instead of the table
  std::string output;  ///< also write the JSON report here (atomically); "" for none
  /// `--model NAME`: describe that network (parameters, forward FLOPs per voxel) instead; it
  /// stands for model.name, as `--stages` for model.stages.
  std::string model;
  std::int64_t in_channels = 1;
  std::int64_t classes = 2;
  int stages = 5;
  std::vector<std::int64_t> patch{128, 128, 128};
};

/// Rank 0 prints the stages, parameters and forward FLOPs per voxel (or JSON) of `network`
/// (the resolved `model:` section) for the options' input channels, classes and patch.
ExitCode run_model_info(const JobContext& context, const InfoOptions& options, const models::ModelConfig& network);

/// Collective over the world. Returns the process exit code (0, or 1 if a check failed).
ExitCode run_info(const JobContext& context, const InfoOptions& options);

/// The `info` verb; with --model it reads the `model:` config section.
std::unique_ptr<Verb> make_info_verb();

}  // namespace vitruvian::jobs
