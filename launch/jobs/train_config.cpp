// The training config's keys (sections data, model, optimizer, train) and their checks: apart
// from the job, so that what reads and checks a config needs nothing of the training itself.
#include "launch/jobs/train.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "core/normalization.h"

namespace vitruvian::jobs {

void TrainConfig::visit(ConfigVisitor& v) {
  v.section("data", [&](ConfigVisitor& d) {
    d.field("dataset", dataset, "HDF5 dataset or shard index");
    d.field("channels", channels, "input series, in order");
    d.field("label_map", label_map, "the label map to learn");
    d.field("classes", classes, "label names to learn, or name=a+b+c to learn labels a, b, c as one (others: background)");
    d.field("normalization", normalization, "per channel: ct, zscore or none; empty: by modality");
    d.field("validation_studies", validation_studies, "the last N studies (by id) are held out for validation");
    d.field("patch", patch, "patch size [z, y, x]");
    d.field("batch_size", batch_size, "patches per rank per step");
    d.field("foreground_fraction", foreground_fraction, "share of patches forced onto a foreground class");
    d.field("workers", workers, "loader threads per rank");
    d.field("augment", augment, "nnunet or none");
    d.field("mirror_axes", mirror_axes, "axes mirrored at random, any of zyx (none by default: left and right differ)");
    d.field("on_bad_study", on_bad_study,
            "a training study that cannot be read (corrupt chunk): stop (the run ends naming it) or skip (left out, with a warning)");
  });
  v.section("model", [&](ConfigVisitor& m) { model.visit(m); });
  v.section("optimizer", [&](ConfigVisitor& o) { optimizer.visit(o); });
  v.section("train", [&](ConfigVisitor& t) {
    t.field("steps", steps, "optimiser steps");
    t.field("accumulate", accumulate, "micro-batches per step (gradient accumulation)");
    t.field("seed", seed, "seed of weights, sampling and augmentation");
    t.field("steps_per_epoch", steps_per_epoch, "batches per epoch (the shard changes every epoch)");
    t.field("validate_every", validate_every, "steps between validations (0: only at the end)");
    t.field("checkpoint_every", checkpoint_every, "steps between checkpoints");
    t.field("keep_checkpoints", keep_checkpoints, "checkpoints kept");
    t.field("max_bad_steps", max_bad_steps, "consecutive non-finite steps that stop the run");
    t.field("validation_overlap", validation_overlap, "sliding-window overlap for validation");
    t.field("bf16", bf16, "bfloat16 autocast for forward passes on CUDA (ignored on CPU)");
    t.field("channels_last", channels_last, "channels-last 3D weights and inputs (measure before turning on)");
    t.field("engine", engine, "CPU convolutions: auto (oneDNN called directly where it keeps activations channels-last) or libtorch");
    t.field("first_bucket_mb", first_bucket_mb, "first gradient bucket (MB)");
    t.field("bucket_mb", bucket_mb, "gradient buckets after the first (MB)");
    t.field("last_bucket_mb", last_bucket_mb, "the first layers' gradients, sent last, in a bucket of their own (MB; 0: none)");
    t.field("run_dir", run_dir, "folder for checkpoints, metrics and the model");
  });
}

void TrainConfig::validate() const {
  if (dataset.empty()) throw ConfigError("data.dataset", "no dataset; set data.dataset");
  if (channels.empty()) throw ConfigError("data.channels", "no input channels; set data.channels, e.g. [ct]");
  if (!normalization.empty() && normalization.size() != channels.size()) {
    throw ConfigError("data.normalization", fmt::format("{} entries for {} channels", normalization.size(), channels.size()));
  }
  if (patch.size() != 3 || *std::min_element(patch.begin(), patch.end()) < 4) {
    throw ConfigError("data.patch", "expected three sizes [z, y, x] of at least 4");
  }
  if (batch_size < 1) throw ConfigError("data.batch_size", fmt::format("{}; expected at least 1", batch_size));
  if (workers < 1) throw ConfigError("data.workers", fmt::format("{}; expected at least 1", workers));
  if (!(foreground_fraction >= 0 && foreground_fraction <= 1)) {
    throw ConfigError("data.foreground_fraction", fmt::format("{}; expected a share from 0 to 1", foreground_fraction));
  }
  for (const auto& name : normalization) normalization_from_name(name, "data.normalization");
  if (augment != "nnunet" && augment != "none") throw ConfigError("data.augment", "'" + augment + "'; expected nnunet or none");
  if (mirror_axes.find_first_not_of("zyx") != std::string::npos) {
    throw ConfigError("data.mirror_axes", "'" + mirror_axes + "'; expected a subset of zyx, e.g. zy");
  }
  if (on_bad_study != "stop" && on_bad_study != "skip") {
    throw ConfigError("data.on_bad_study", "'" + on_bad_study + "'; expected stop or skip");
  }
  if (validation_studies < 0) throw ConfigError("data.validation_studies", "expected 0 or more");
  if (steps < 1 || accumulate < 1 || steps_per_epoch < 1) {
    throw ConfigError("train.steps", "steps, accumulate and steps_per_epoch must be at least 1");
  }
  if (checkpoint_every < 1) throw ConfigError("train.checkpoint_every", "expected at least 1");
  if (validate_every < 0) throw ConfigError("train.validate_every", "expected 0 or more");
  if (keep_checkpoints < 1) throw ConfigError("train.keep_checkpoints", "expected at least 1");
  if (engine != "auto" && engine != "libtorch") throw ConfigError("train.engine", "'" + engine + "'; expected auto or libtorch");
  if (!(validation_overlap >= 0 && validation_overlap < 1)) throw ConfigError("train.validation_overlap", "expected [0, 1)");
  if (!(first_bucket_mb > 0 && bucket_mb > 0)) throw ConfigError("train.bucket_mb", "bucket sizes must be positive");
  if (!(last_bucket_mb >= 0)) throw ConfigError("train.last_bucket_mb", "expected 0 or a positive size");
  optimizer.validate();
}

}  // namespace vitruvian::jobs
