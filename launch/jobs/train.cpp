// The training job: config checks agreed across ranks, the study split, the class map, the
// loader on this rank's shard, the Trainer, validation by sliding windows spread over ranks,
// checkpoints from rank 0, metrics.jsonl and the exported model.
#include "launch/jobs/train.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "core/atomic_file.h"
#include "core/checkpoint.h"
#include "core/errors.h"
#include "core/mpi.h"
#include "core/progress.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "data/volume_store.h"
#include "models/class_map.h"
#include "models/metrics.h"
#include "models/sliding_window.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr const char* kCheckpointPrefix = "step_";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// What the run works with once the config has been checked against the dataset.
struct Setup {
  std::shared_ptr<const data::VolumeStore> store;
  std::vector<std::string> training, validation;  ///< study ids
  models::ClassMap classes;
  at::Tensor lookup;                              ///< dataset label id → class index (int64)
};

Setup prepare(const TrainConfig& c, int world) {
  Setup s;
  s.store = std::make_shared<const data::VolumeStore>(c.dataset);
  std::vector<std::string> ids;
  for (const auto& study : s.store->studies()) ids.push_back(study.id);
  std::sort(ids.begin(), ids.end());
  const auto held_out = static_cast<std::size_t>(c.validation_studies);
  if (ids.size() < held_out + static_cast<std::size_t>(world)) {
    throw InputError(c.dataset, fmt::format("{} studies for {} held out and {} ranks; every rank needs a training study",
                                            ids.size(), held_out, world));
  }
  s.training.assign(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(held_out));
  s.validation.assign(ids.end() - static_cast<std::ptrdiff_t>(held_out), ids.end());
  s.classes = models::ClassMap::from_labels(c.classes, s.store->label_table(), c.dataset);
  s.lookup = s.classes.lookup();
  return s;
}

data::TaskSpec task_of(const TrainConfig& c, const Setup& s) {
  data::TaskSpec task;
  task.channels = c.channels;
  task.label = c.label_map;
  for (const auto& name : c.normalization) task.normalization.push_back(data::normalization_from_name(name, "data.normalization"));
  task.studies = s.training;
  return task;
}

/// The median spacing [x, y, z] of `series` over `studies` (the grid inference should resample to).
std::array<double, 3> training_spacing(const data::VolumeStore& store, const std::vector<std::string>& studies,
                                       const std::string& series) {
  std::array<std::vector<double>, 3> values;
  for (const auto& id : studies) {
    const data::SeriesInfo* info = store.study(id).find_series(series);
    if (info == nullptr) continue;
    for (int a = 0; a < 3; ++a) values[a].push_back(info->geometry.spacing[a]);
  }
  std::array<double, 3> median{0, 0, 0};
  for (int a = 0; a < 3; ++a) {
    if (values[a].empty()) continue;
    std::sort(values[a].begin(), values[a].end());
    median[a] = values[a][values[a].size() / 2];
  }
  return median;
}

models::ModelCard card_of(const TrainConfig& c, const Setup& s, const data::PatchLoader& loader, std::int64_t step) {
  models::ModelCard card;
  card.model = c.model;
  card.in_channels = static_cast<std::int64_t>(c.channels.size());
  card.channels = c.channels;
  for (std::size_t ch = 0; ch < c.channels.size(); ++ch) {
    card.normalization.push_back(data::normalization_name(loader.task().normalization[ch]));
    const auto& stats = loader.ct_stats()[ch];
    card.ct_stats.push_back({stats.lower, stats.upper, stats.mean, stats.std});
  }
  card.class_names = s.classes.names;
  card.class_label_ids = s.classes.label_ids;
  card.patch = {c.patch[0], c.patch[1], c.patch[2]};
  card.dataset = c.dataset;
  card.label_map = c.label_map;
  card.spacing = training_spacing(*s.store, s.training, c.channels.front());
  card.step = step;
  return card;
}

/// A study's channels normalised as the loader does, [C, D, H, W].
at::Tensor normalized_input(const data::VolumeStore& store, const std::string& study, const data::PatchLoader& loader) {
  const auto& task = loader.task();
  std::vector<at::Tensor> channels;
  for (std::size_t ch = 0; ch < task.channels.size(); ++ch) {
    const at::Tensor raw = store.read_series(study, task.channels[ch]).voxels;
    const data::Normalization n = task.normalization[ch];
    channels.push_back(data::normalize_channel(raw, n, loader.ct_stats()[ch],
                                               n == data::Normalization::kZscore ? data::volume_stats(raw) : data::IntensityStats{}));
  }
  return at::stack(channels);
}

/// Sliding-window validation of this rank's share of the held-out studies; per-class Dice and
/// HD95 reduced over ranks.
json validate(const TrainConfig& c, const Setup& s, const data::PatchLoader& loader, models::UNet& net, Communicator& comm,
              c10::Device device) {
  const auto classes = static_cast<std::int64_t>(s.classes.names.size());
  at::Tensor counts = at::zeros({classes - 1, 3}, at::kDouble);
  at::Tensor hd = at::zeros({classes - 1, 3}, at::kDouble);  // sum, studies, studies where the class was missed
  net->eval();
  {
    torch::NoGradGuard no_grad;
    models::SlidingWindowOptions window;
    window.window = {c.patch[0], c.patch[1], c.patch[2]};
    window.overlap = c.validation_overlap;
    window.batch = c.batch_size;
    for (std::size_t i = static_cast<std::size_t>(comm.rank()); i < s.validation.size(); i += static_cast<std::size_t>(comm.size())) {
      const std::string& study = s.validation[i];
      const at::Tensor image = normalized_input(*s.store, study, loader);
      const at::Tensor logits = models::sliding_window_logits(
          image, classes, [&](const at::Tensor& x) { return net->forward(x.to(device))[0].cpu(); }, window);
      const at::Tensor prediction = logits.argmax(0);
      const data::Volume label = s.store->read_label(study, c.label_map);
      const at::Tensor truth = s.lookup.index({label.voxels.to(at::kLong)});
      counts += models::dice_counts(prediction, truth, classes);
      const auto& sp = label.geometry.spacing;
      const auto distances = models::hausdorff95(prediction, truth, classes, {sp[2], sp[1], sp[0]});
      const at::Tensor present = at::bincount(truth.flatten(), {}, classes).slice(0, 1, classes) > 0;
      for (std::int64_t k = 0; k + 1 < classes; ++k) {
        if (std::isnan(distances[k])) {
          if (present[k].item<bool>()) hd[k][2] += 1;  // in the truth, not predicted: no distance, counted as missed
          continue;
        }
        hd[k][0] += distances[k];
        hd[k][1] += 1;
      }
    }
  }
  net->train();
  // The communicator takes tensors on its own device (NCCL: the rank's GPU).
  const c10::Device on = comm.device_type() == c10::kCPU ? c10::Device(c10::kCPU) : device;
  at::Tensor sums = at::cat({counts, hd}, 1).to(on);
  comm.allreduce(sums, ReduceOp::kSum);
  sums = sums.cpu();
  counts = sums.slice(1, 0, 3);
  hd = sums.slice(1, 3, 6);
  const auto dice = models::dice_from_counts(counts);
  json per_class = json::object(), hd95 = json::object(), missed = json::object();
  double sum = 0;
  int n = 0;
  for (std::int64_t k = 0; k + 1 < classes; ++k) {
    if (!std::isnan(dice[k])) {
      per_class[s.classes.names[k + 1]] = dice[k];
      sum += dice[k];
      ++n;
    }
    if (hd[k][1].item<double>() > 0) hd95[s.classes.names[k + 1]] = hd[k][0].item<double>() / hd[k][1].item<double>();
    if (hd[k][2].item<double>() > 0) missed[s.classes.names[k + 1]] = hd[k][2].item<std::int64_t>();
  }
  return {{"dice", per_class},
          {"mean_dice", n > 0 ? sum / n : 0.0},
          {"hd95_mm", hd95},
          {"missed_studies", missed},  // HD95 is averaged over the studies where the class was found
          {"studies", s.validation.size()}};
}

/// metrics.jsonl without the lines of steps after `step` (a resumed run redoes them).
void truncate_metrics(const fs::path& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (json::parse(line).value("step", std::int64_t{0}) <= step) kept += line + "\n";
    } catch (const std::exception&) {  // a line cut short by the interruption
    }
  }
  write_file_atomic(path, kept);
}

data::LoaderOptions loader_options_of(const TrainConfig& config, int rank, int world, std::int64_t first_batch) {
  data::LoaderOptions o;
  o.patch_size = {config.patch[0], config.patch[1], config.patch[2]};
  o.batch_size = config.batch_size;
  o.foreground_fraction = config.foreground_fraction;
  o.workers = config.workers;
  o.seed = static_cast<std::uint64_t>(config.seed);
  o.steps_per_epoch = config.steps_per_epoch;
  o.rank = rank;
  o.world = world;
  o.first_batch = first_batch;
  if (config.augment == "nnunet") {
    o.augment = data::AugmentOptions::nnunet_like();
    const auto& m = config.mirror_axes;
    o.augment.flip({m.find('z') != std::string::npos ? 0.5 : 0.0, m.find('y') != std::string::npos ? 0.5 : 0.0,
                    m.find('x') != std::string::npos ? 0.5 : 0.0});
  }
  return o;
}

}  // namespace

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
  for (const auto& name : normalization) data::normalization_from_name(name, "data.normalization");
  if (augment != "nnunet" && augment != "none") throw ConfigError("data.augment", "'" + augment + "'; expected nnunet or none");
  if (mirror_axes.find_first_not_of("zyx") != std::string::npos) {
    throw ConfigError("data.mirror_axes", "'" + mirror_axes + "'; expected a subset of zyx, e.g. zy");
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

ExitCode run_train(const JobContext& context, const TrainConfig& config, const TrainFlags& flags) {
  const int rank = context.env.rank(), world = context.env.size();
  const fs::path run_dir(config.run_dir);
  const fs::path checkpoints = run_dir / "checkpoints";
  Setup setup;
  std::optional<fs::path> resume_from;
  std::int64_t resume_step = 0;
  std::unique_ptr<data::PatchLoader> loader_ptr;
  std::string problem;
  try {
    config.validate();
    config.model.options(static_cast<std::int64_t>(config.channels.size()), 2);  // checks the model section
    setup = prepare(config, world);
    if (flags.resume) {
      resume_from = latest_checkpoint(checkpoints, kCheckpointPrefix, [&](const fs::path& dir, const std::string& why) {
        if (rank == 0) spdlog::warn("checkpoint {} is skipped: {}; taking an earlier one", dir.string(), why);
      });
      if (!resume_from) throw InputError(checkpoints.string(), "has no complete checkpoint to resume from");
    } else if (latest_checkpoint(checkpoints, kCheckpointPrefix) && !flags.force) {
      throw InputError(run_dir.string(),
                       "already holds checkpoints; pass --resume to continue it, --force to start over, or choose another run_dir");
    }
    if (flags.resume && flags.force) throw InputError("train", "--resume and --force contradict each other; give one");
    if (resume_from) resume_step = models::Trainer::saved_step(*resume_from);
    // The loader checks the task against the dataset (channels, label map, grids) here, so a
    // mistake there is one line and exit 2 like any other config error.
    loader_ptr = std::make_unique<data::PatchLoader>(setup.store, task_of(config, setup),
                                                     loader_options_of(config, rank, world, resume_step * config.accumulate));
  } catch (const Error& e) {
    problem = e.what();
  }
  if (!agree_all(context, problem.empty(), problem)) return ExitCode::kUsage;
  data::PatchLoader& loader = *loader_ptr;
  if (flags.force && rank == 0) {
    std::error_code ignored;  // only what a run writes; anything else in the folder stays
    for (const char* entry : {"checkpoints", "model", "metrics.jsonl", "report.html", "config.yaml"}) {
      fs::remove_all(run_dir / entry, ignored);
    }
  }

  std::string failure;
  try {
    auto comm = make_communicator(context.env.world(), context.device,
                                  CommunicatorOptions().timeout_s(context.runtime.collective_timeout_s).name("world"));
    torch::manual_seed(static_cast<std::uint64_t>(config.seed));
    const auto classes = static_cast<std::int64_t>(setup.classes.names.size());
    models::UNet net = models::make_model(config.model, static_cast<std::int64_t>(config.channels.size()), classes);
    net->to(context.device);
    models::TrainerOptions trainer_options;
    trainer_options.optimizer = config.optimizer;
    trainer_options.steps = config.steps;
    trainer_options.max_bad_steps = config.max_bad_steps;
    trainer_options.bf16 = config.bf16;
    trainer_options.channels_last = config.channels_last;
    trainer_options.onednn = config.engine == "auto";
    trainer_options.buckets = GradientReducerOptions{static_cast<std::int64_t>(config.first_bucket_mb * (1 << 20)),
                                                     static_cast<std::int64_t>(config.bucket_mb * (1 << 20)),
                                                     static_cast<std::int64_t>(config.last_bucket_mb * (1 << 20))};
    models::Trainer trainer(net, *comm, trainer_options);
    if (resume_from) {
      // A checkpoint of another network or optimiser is a usage error; and every rank must
      // continue from the same step (each found the newest checkpoint on its own).
      std::string load_problem;
      try {
        trainer.load(*resume_from);
        if (trainer.steps_done() != resume_step) {
          load_problem = fmt::format("{}: trainer.json changed while loading (step {} then {})", resume_from->string(),
                                     resume_step, trainer.steps_done());
        }
      } catch (const Error& e) {
        load_problem = e.what();
      }
      if (!agree_all(context, load_problem.empty(), load_problem)) return ExitCode::kUsage;
      std::int64_t steps[2] = {resume_step, -resume_step};
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, steps, 2, MPI_INT64_T, MPI_MAX, context.env.world().get()), "MPI_Allreduce(resume step)");
      if (!agree_all(context, steps[0] == -steps[1],
                     fmt::format("ranks found different newest checkpoints in {} (steps {} to {}); is the folder shared and "
                                 "up to date on every node?",
                                 checkpoints.string(), -steps[1], steps[0]))) {
        return ExitCode::kUsage;
      }
      if (rank == 0) spdlog::info("train: resuming from {} (step {})", resume_from->string(), trainer.steps_done());
    }
    const std::int64_t start_step = trainer.steps_done();

    const fs::path metrics_path = run_dir / "metrics.jsonl";
    std::ofstream metrics;
    if (rank == 0) {
      fs::create_directories(run_dir);
      write_file_atomic(run_dir / "config.yaml", context.resolved_config);
      if (resume_from) truncate_metrics(metrics_path, start_step);
      metrics.open(metrics_path, resume_from ? std::ios::app : std::ios::trunc);
      if (!metrics) throw InputError(metrics_path.string(), "cannot be written");
      spdlog::info("train: {} on {} ({} training, {} validation studies), {} classes, {} ranks x batch {}, patch {}x{}x{}, "
                   "{} parameters",
                   config.model.name, config.dataset, setup.training.size(), setup.validation.size(), classes - 1, world,
                   config.batch_size, config.patch[0], config.patch[1], config.patch[2], models::parameter_count(*net));
      if (context.device.is_cpu()) {
        spdlog::info("train: CPU convolutions on {}", net->uses_onednn() ? "oneDNN directly, activations channels-last"
                                                                         : "LibTorch's ops");
      }
    }
    auto log = [&](const json& line) {
      if (rank != 0) return;
      metrics << line.dump() << "\n";
      metrics.flush();
    };
    auto checkpoint = [&](std::int64_t step) {
      if (rank != 0) return;
      write_checkpoint(checkpoints, fmt::format("{}{:08d}", kCheckpointPrefix, step), [&](const fs::path& dir) {
        trainer.save(dir);
        write_file_atomic(dir / "model.json", models::card_to_json(card_of(config, setup, loader, step)));
      }, kCheckpointPrefix, config.keep_checkpoints);
    };

    const double voxels_per_step = static_cast<double>(config.batch_size * config.patch[0] * config.patch[1] * config.patch[2] *
                                                       config.accumulate * world);
    Progress progress("steps", config.steps - start_step, rank == 0);
    double total_s = 0, wait_s = 0, exposed_s = 0, comm_s = 0;
    json last_validation;
    for (std::int64_t step = start_step; step < config.steps; ++step) {
      const auto step_start = std::chrono::steady_clock::now();
      const double wait_before = loader.wait_seconds();
      std::vector<models::MicroBatch> micro;
      std::vector<std::string> samples;
      for (std::int64_t m = 0; m < config.accumulate; ++m) {
        data::Batch batch = loader.next();
        const at::Tensor target = setup.lookup.index({batch.label});
        micro.emplace_back(batch.image.to(context.device, /*non_blocking=*/true), target.to(context.device, true));
        for (std::size_t i = 0; i < batch.studies.size(); ++i) {
          samples.push_back(fmt::format("{}@{},{},{}", batch.studies[i], batch.origins[i][0], batch.origins[i][1], batch.origins[i][2]));
        }
      }
      const double data_wait = loader.wait_seconds() - wait_before;
      const models::StepResult r = trainer.step(micro, [&](const std::string& why) {
        spdlog::warn("{}; skipped on every rank; this rank's samples: {}", why, fmt::join(samples, " "));
      });
      const double step_s = seconds_since(step_start);
      total_s += step_s;
      wait_s += data_wait;
      exposed_s += r.comm.exposed_s;
      comm_s += r.comm.total_s;
      log({{"step", r.step},
           {"loss", r.skipped ? json(nullptr) : json(r.loss)},
           {"lr", r.lr},
           {"skipped", r.skipped},
           {"voxels_per_s", voxels_per_step / step_s},
           {"step_s", step_s},
           {"data_wait_s", data_wait},
           {"forward_s", r.forward_s},
           {"backward_s", r.backward_s},
           {"optimizer_s", r.optimizer_s},
           {"comm_total_s", r.comm.total_s},
           {"comm_exposed_s", r.comm.exposed_s}});
      progress.advance(1, r.skipped ? "skipped (non-finite)"
                                    : fmt::format("loss {:.4f}, {:.2f} Mvox/s", r.loss, voxels_per_step / step_s / 1e6));
      const bool last = r.step == config.steps;
      const bool validate_now = !setup.validation.empty() &&
                                (last || (config.validate_every > 0 && r.step % config.validate_every == 0));
      if (validate_now) {
        last_validation = validate(config, setup, loader, trainer.net(), *comm, context.device);
        log({{"step", r.step}, {"validation", last_validation}});
        if (rank == 0) spdlog::info("train: step {} validation mean Dice {:.3f}", r.step, last_validation["mean_dice"].get<double>());
      }
      if (last || r.step % config.checkpoint_every == 0) checkpoint(r.step);
    }
    progress.finish();
    if (rank == 0) {
      models::export_model(run_dir / "model", trainer.net(), card_of(config, setup, loader, trainer.steps_done()));
      const std::int64_t done = config.steps - start_step;
      spdlog::info("train: {} steps in {:.1f} s, {:.2f} Mvox/s; data wait {:.1f} %, communication {:.2f} s of which exposed "
                   "{:.2f} s; model in {}",
                   done, total_s, done > 0 ? voxels_per_step * done / total_s / 1e6 : 0.0, total_s > 0 ? 100 * wait_s / total_s : 0.0,
                   comm_s, exposed_s, (run_dir / "model").string());
    }
  } catch (const std::exception& e) {
    failure = fmt::format("training failed on rank {} ({}): {}", rank, context.env.host(), e.what());
  }
  // A rank that failed cannot take part in collectives any more: end the job from here.
  if (!failure.empty()) {
    std::cerr << "vitruvian: " << failure << std::endl;
    if (world > 1) context.env.abort(exit_status(ExitCode::kFailed));
    return ExitCode::kFailed;
  }
  return ExitCode::kOk;
}

namespace {

class TrainVerb final : public Verb {
 public:
  CLI::App* add_to(CLI::App& app) override {
    CLI::App* train = add_verb_command(
        app, "train", "Train an organ network on an HDF5 dataset, data-parallel over the ranks (config sections data, model, "
                      "optimizer, train; launch/configs/quickstart.yaml)");
    train->add_flag("--resume", flags_.resume, "Continue from the newest complete checkpoint in train.run_dir");
    train->add_flag("--force", flags_.force, "Start over: remove an existing run's checkpoints, metrics and model");
    train->add_option("--run-dir", run_dir_, "Run folder (train.run_dir)");
    train->add_option("--steps", steps_, "Optimiser steps (train.steps)");
    return train;
  }
  std::vector<ConfigVisit> sections() override {
    return {[this](ConfigVisitor& v) { config_.visit(v); }};
  }
  std::vector<std::string> overrides() const override {
    std::vector<std::string> keys;
    if (run_dir_) keys.push_back("train.run_dir=" + *run_dir_);
    if (steps_) keys.push_back("train.steps=" + std::to_string(*steps_));
    return keys;
  }
  ExitCode run(const JobContext& context) override { return run_train(context, config_, flags_); }

 private:
  TrainConfig config_;
  TrainFlags flags_;
  std::optional<std::string> run_dir_;
  std::optional<std::int64_t> steps_;
};

}  // namespace

std::unique_ptr<Verb> make_train_verb() { return std::make_unique<TrainVerb>(); }

}  // namespace vitruvian::jobs
