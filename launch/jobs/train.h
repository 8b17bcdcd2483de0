// `vitruvian train`: data-parallel training of an organ network on an HDF5 dataset, one rank
// per GPU (or per CPU core): sharded patch loading, bucketed gradient averaging overlapped with
// backward, validation by sliding windows, atomic checkpoints, exact resumption, metrics.jsonl.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/exit_code.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"
#include "models/registry.h"
#include "models/trainer.h"

namespace vitruvian::jobs {

/// The training config: sections data, model, optimizer, train (launch/configs/quickstart.yaml).
struct TrainConfig {
  // data
  std::string dataset;
  std::vector<std::string> channels;       ///< input series, in order
  std::string label_map = "anatomy";
  /// Label names to learn, or "name=a+b+c" for one class made of labels a, b and c; others are
  /// background. Empty: every label of the table.
  std::vector<std::string> classes;
  std::vector<std::string> normalization;  ///< per channel: ct, zscore or none; empty: by modality
  std::int64_t validation_studies = 1;     ///< the last N studies (by id) are held out
  std::vector<std::int64_t> patch{64, 64, 64};
  std::int64_t batch_size = 2;  ///< per rank
  double foreground_fraction = 0.33;
  int workers = 2;
  std::string augment = "nnunet";  ///< nnunet | none
  /// Axes mirrored at random (p 0.5 each) when augmenting, any of "zyx"; empty by default:
  /// mirroring along x turns left organs into right ones.
  std::string mirror_axes;
  /// A training study whose voxels cannot be read (a corrupt chunk): "stop" ends the run naming
  /// the file, study and series; "skip" leaves it out with a warning and trains on the others.
  std::string on_bad_study = "stop";
  // model, optimizer
  models::ModelConfig model;
  models::OptimizerConfig optimizer;
  // train
  std::int64_t steps = 250;
  std::int64_t accumulate = 1;
  std::int64_t seed = 0;
  std::int64_t steps_per_epoch = 50;
  std::int64_t validate_every = 50;  ///< 0: only at the end
  std::int64_t checkpoint_every = 50;
  int keep_checkpoints = 3;
  int max_bad_steps = 5;
  double validation_overlap = 0.5;
  bool bf16 = true;  ///< bfloat16 autocast for forward passes on CUDA (ignored on CPU)
  bool channels_last = false;  ///< channels-last 3D weights and inputs
  std::string engine = "auto";  ///< CPU convolutions: auto (oneDNN directly where it keeps channels-last) | libtorch
  double first_bucket_mb = 1;
  double bucket_mb = 25;
  double last_bucket_mb = 1;
  std::string run_dir = "runs/train";

  void visit(ConfigVisitor& v);
  /// ConfigError naming the key of the first bad value.
  void validate() const;
};

/// What `train` does with the checkpoints already in run_dir.
enum class ResumeMode {
  kNo,      ///< a new run: a folder holding checkpoints is refused (unless --force)
  kLatest,  ///< --resume: continue from the newest complete checkpoint; none is an error
  kAuto,    ///< --resume auto: continue from the newest complete checkpoint, or start fresh without one
};

struct TrainFlags {
  ResumeMode resume = ResumeMode::kNo;
  bool force = false;  ///< start over: an existing run's checkpoints, metrics, model and report go
};

/// Collective. kOk when training finished, kUsage for bad config or input (one line), kFailed
/// when a run failed (non-finite steps beyond the limit, a rank's error), kInterrupted when a
/// rank received SIGTERM or SIGUSR1 (core/stop_request.h): the ranks agree on it at the next step
/// boundary, write that step's checkpoint and end (rerun with --resume auto to go on). The
/// context's resolved config is saved as RUN_DIR/config.yaml.
ExitCode run_train(const JobContext& context, const TrainConfig& config, const TrainFlags& flags);

/// The `train` verb: its flags --run-dir and --steps stand for train.run_dir and train.steps.
std::unique_ptr<Verb> make_train_verb();

}  // namespace vitruvian::jobs
