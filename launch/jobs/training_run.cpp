// The training run: config checks agreed across ranks, the study split, the class map, the
// loader on this rank's shard, the Trainer, validation by sliding windows spread over ranks,
// checkpoints from rank 0, metrics.jsonl and the exported model; run_train takes its steps.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

#include "core/atomic_file.h"
#include "core/checkpoint.h"
#include "core/errors.h"
#include "core/fault_injection.h"
#include "core/stopwatch.h"
#include "core/progress.h"
#include "core/stop_request.h"
#include "data/dataset_preprocess.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "data/volume_store.h"
#include "launch/jobs/train.h"
#include "models/class_map.h"
#include "models/metrics.h"
#include "models/sliding_window.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr const char* kCheckpointPrefix = "step_";

/// What the run works with once the config has been checked against the dataset.
struct Setup {
  std::shared_ptr<const data::VolumeStore> store;
  std::vector<std::string> training, validation;  ///< study ids
  models::ClassMap classes;
  at::Tensor lookup;                              ///< dataset label id → class index (int64)
};

/// The study split and class map, checked against the dataset.
Setup make_setup(const TrainConfig& c, int world) {
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
  for (std::size_t ch = 0; ch < c.channels.size(); ++ch) {
    const auto& stats = loader.ct_stats()[ch];
    card.inputs.push_back({c.channels[ch], loader.task().normalization[ch], stats.lower, stats.upper, stats.mean, stats.std});
  }
  card.classes = s.classes;
  card.patch = {c.patch[0], c.patch[1], c.patch[2]};
  card.dataset = c.dataset;
  card.label_map = c.label_map;
  card.spacing = training_spacing(*s.store, s.training, c.channels.front());
  card.step = step;
  card.crop = data::dataset_crop_rule(*s.store, s.training);
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
  o.skip_bad_studies = config.on_bad_study == "skip";
  if (config.augment == "nnunet") {
    o.augment = data::AugmentOptions::nnunet_like();
    const auto& m = config.mirror_axes;
    o.augment.flip({m.find('z') != std::string::npos ? 0.5 : 0.0, m.find('y') != std::string::npos ? 0.5 : 0.0,
                    m.find('x') != std::string::npos ? 0.5 : 0.0});
  }
  return o;
}


/// Running sums of a run's step times, for the closing summary.
struct StepTotals {
  double total_s = 0, wait_s = 0, exposed_s = 0, comm_s = 0;
  double stop_check_s = 0;  ///< the step boundaries' agreement on a stop request
};

/// One run of `vitruvian train` on this rank, as the steps run_train takes in order.
class TrainingRun {
 public:
  TrainingRun(const JobContext& context, const TrainConfig& config, const TrainFlags& flags)
      : context_(context),
        config_(config),
        flags_(flags),
        rank_(context.env.rank()),
        world_(context.env.size()),
        run_dir_(config.run_dir),
        checkpoints_(run_dir_ / "checkpoints") {}

  /// Collective. Checks the config against the dataset, finds the checkpoint to resume from and
  /// starts the loader on this rank's shard (the loader checks the task against the dataset, so
  /// a mistake there is one line like any other config error). False on every rank when any
  /// rank found a problem.
  bool prepare() {
    std::string problem;
    try {
      config_.validate();
      config_.model.options(static_cast<std::int64_t>(config_.channels.size()), 2);  // checks the model section
      setup_ = make_setup(config_, world_);
      find_checkpoint();
      loader_ = std::make_unique<data::PatchLoader>(
          setup_.store, task_of(config_, setup_),
          loader_options_of(config_, rank_, world_, resume_step_ * config_.accumulate));
    } catch (const Error& e) {
      problem = e.what();
    }
    return agree_all(context_, problem);
  }

  /// Rank 0, with --force: removes what an earlier run wrote; anything else in the folder stays.
  void clear_earlier_run() const {
    if (!flags_.force || rank_ != 0) return;
    std::error_code ignored;
    for (const char* entry : {"checkpoints", "model", "metrics.jsonl", "report.html", "config.yaml"}) {
      fs::remove_all(run_dir_ / entry, ignored);
    }
  }

  /// Rank 0: removes the temporaries that writers killed in an earlier run left in the run folder
  /// and its checkpoints (core/atomic_file.h); nothing else of this run writes there yet.
  void remove_leftovers() const {
    if (rank_ != 0) return;
    for (const fs::path& folder : {run_dir_, checkpoints_}) {
      std::string names;
      for (const fs::path& path : remove_leftover_temporaries(folder)) names += " " + path.filename().string();
      if (!names.empty()) spdlog::info("train: removed leftovers of an interrupted write from {}:{}", folder.string(), names);
    }
  }

  /// The communicator, the network (seeded by train.seed) and its trainer.
  void build() {
    comm_ = make_communicator(context_.env.world(), context_.device,
                              CommunicatorOptions().timeout_s(context_.runtime.collective_timeout_s).name("world"));
    torch::manual_seed(static_cast<std::uint64_t>(config_.seed));
    models::UNet net = models::make_model(config_.model, static_cast<std::int64_t>(config_.channels.size()), classes());
    net->to(context_.device);
    models::TrainerOptions options;
    options.optimizer = config_.optimizer;
    options.steps = config_.steps;
    options.max_bad_steps = config_.max_bad_steps;
    options.bf16 = config_.bf16;
    options.channels_last = config_.channels_last;
    options.onednn = config_.engine == "auto";
    options.buckets = GradientReducerOptions{static_cast<std::int64_t>(config_.first_bucket_mb * (1 << 20)),
                                             static_cast<std::int64_t>(config_.bucket_mb * (1 << 20)),
                                             static_cast<std::int64_t>(config_.last_bucket_mb * (1 << 20))};
    trainer_ = std::make_unique<models::Trainer>(net, *comm_, options);
  }

  /// Collective, with --resume: loads the checkpoint. A checkpoint of another network or
  /// optimiser is a usage error; and every rank must continue from the same step (each found the
  /// newest checkpoint on its own). False on every rank when either fails.
  bool resume() {
    if (resume_from_) {
      std::string problem;
      try {
        trainer_->load(*resume_from_);
        if (trainer_->steps_done() != resume_step_) {
          problem = fmt::format("{}: trainer.json changed while loading (step {} then {})", resume_from_->string(),
                                resume_step_, trainer_->steps_done());
        }
      } catch (const Error& e) {
        problem = e.what();
      }
      if (!agree_all(context_, problem)) return false;
      const auto [lowest, highest] = resume_steps(resume_step_);
      if (!agree_all(context_,
                     lowest == highest ? ""
                                       : fmt::format("ranks found different newest checkpoints in {} (steps {} to {}); "
                                                     "is the folder shared and up to date on every node?",
                                                     checkpoints_.string(), lowest, highest),
                     "train resume step")) {
        return false;
      }
      if (rank_ == 0) spdlog::info("train: resuming from {} (step {})", resume_from_->string(), trainer_->steps_done());
    }
    start_step_ = trainer_->steps_done();
    if (resume_from_) checkpointed_step_ = start_step_;
    return true;
  }

  /// Rank 0: config.yaml, metrics.jsonl (a resumed run's cut back to its step) and the run's
  /// first lines; then the progress bar on every rank (shown by rank 0).
  void open_metrics() {
    const fs::path metrics_path = run_dir_ / "metrics.jsonl";
    if (rank_ == 0) {
      fs::create_directories(run_dir_);
      write_file_atomic(run_dir_ / "config.yaml", context_.resolved_config);
      if (resume_from_) truncate_metrics(metrics_path, start_step_);
      metrics_.open(metrics_path, resume_from_ ? std::ios::app : std::ios::trunc);
      if (!metrics_) throw InputError(metrics_path.string(), "cannot be written");
      spdlog::info(
          "train: {} on {} ({} training, {} validation studies), {} classes, {} ranks x batch {}, patch {}x{}x{}, "
          "{} parameters",
          config_.model.name, config_.dataset, setup_.training.size(), setup_.validation.size(), classes() - 1, world_,
          config_.batch_size, config_.patch[0], config_.patch[1], config_.patch[2],
          models::parameter_count(*trainer_->net()));
      if (context_.device.is_cpu()) {
        spdlog::info("train: CPU convolutions on {}",
                     trainer_->net()->uses_onednn() ? "oneDNN directly, activations channels-last" : "LibTorch's ops");
      }
    }
    progress_ = std::make_unique<Progress>("steps", config_.steps - start_step_, rank_ == 0);
  }

  bool done() const { return trainer_->steps_done() >= config_.steps; }

  /// Collective, at a step boundary: the signal that asked any rank to stop (the highest
  /// number when ranks got different ones), or 0. One allreduce of one value on the
  /// communicator's device.
  int agreed_stop() {
    const auto start = std::chrono::steady_clock::now();
    const c10::Device on = comm_->device_type() == c10::kCPU ? c10::Device(c10::kCPU) : context_.device;
    at::Tensor signal = at::full({1}, stop_signal(), at::TensorOptions().dtype(at::kInt).device(on));
    comm_->allreduce(signal, ReduceOp::kMax);
    const int agreed = signal.item<int>();
    totals_.stop_check_s += seconds_since(start);
    return agreed;
  }

  /// Collective, once the ranks agreed to stop on `signal`: the checkpoint of the steps done (unless
  /// the schedule just wrote it), agreed written, and rank 0's line on how to go on. False when
  /// the checkpoint could not be written (reported as agree_all does).
  bool stop(int signal) {
    const std::int64_t step = trainer_->steps_done();
    progress_->finish();
    const bool fresh = checkpointed_step_ != step;
    if (!agree_all(context_, fresh ? attempt([&] { checkpoint(step); }) : "", "train checkpoint on stop")) return false;
    if (rank_ == 0) {
      spdlog::info("train: stopped by {} at step {}; checkpoint step {} {} ({}); rerun with --resume auto to continue",
                   signal_name(signal), step, step, fresh ? "written" : "already written",
                   (checkpoints_ / checkpoint_name(step)).string());
    }
    return true;
  }

  /// Collective: one optimiser step and its metrics line, then validation and a checkpoint when due.
  void step() {
    fault_point("train.step");
    const auto step_start = std::chrono::steady_clock::now();
    const double wait_before = loader_->wait_seconds();
    std::vector<std::string> samples;
    const std::vector<models::MicroBatch> micro = next_micro_batches(samples);
    const double data_wait = loader_->wait_seconds() - wait_before;
    const models::StepResult r = trainer_->step(micro, [&](const std::string& why) {
      spdlog::warn("{}; skipped on every rank; this rank's samples: {}", why, fmt::join(samples, " "));
    });
    const double step_s = seconds_since(step_start);
    totals_.total_s += step_s;
    totals_.wait_s += data_wait;
    totals_.exposed_s += r.comm.exposed_s;
    totals_.comm_s += r.comm.total_s;
    log({{"step", r.step},
         {"loss", r.skipped ? json(nullptr) : json(r.loss)},
         {"lr", r.lr},
         {"skipped", r.skipped},
         {"voxels_per_s", voxels_per_step() / step_s},
         {"step_s", step_s},
         {"data_wait_s", data_wait},
         {"forward_s", r.forward_s},
         {"backward_s", r.backward_s},
         {"optimizer_s", r.optimizer_s},
         {"comm_total_s", r.comm.total_s},
         {"comm_exposed_s", r.comm.exposed_s}});
    progress_->advance(1, r.skipped
                              ? "skipped (non-finite)"
                              : fmt::format("loss {:.4f}, {:.2f} Mvox/s", r.loss, voxels_per_step() / step_s / 1e6));
    const bool last = r.step == config_.steps;
    if (!setup_.validation.empty() && (last || (config_.validate_every > 0 && r.step % config_.validate_every == 0))) {
      validate_now(r.step);
    }
    if (last || r.step % config_.checkpoint_every == 0) {
      checkpoint(r.step);
      checkpointed_step_ = r.step;
    }
  }

  /// Rank 0: exports the model and logs the run's totals.
  void finish() {
    progress_->finish();
    if (rank_ != 0) return;
    models::export_model(run_dir_ / "model", trainer_->net(),
                         card_of(config_, setup_, *loader_, trainer_->steps_done()));
    const std::int64_t done = config_.steps - start_step_;
    const StepTotals& t = totals_;
    spdlog::info(
        "train: {} steps in {:.1f} s, {:.2f} Mvox/s; data wait {:.1f} %, communication {:.2f} s of which exposed "
        "{:.2f} s; model in {}",
        done, t.total_s, done > 0 ? voxels_per_step() * done / t.total_s / 1e6 : 0.0,
        t.total_s > 0 ? 100 * t.wait_s / t.total_s : 0.0, t.comm_s, t.exposed_s, (run_dir_ / "model").string());
    spdlog::debug("train: the stop checks at step boundaries took {:.4f} s in all", t.stop_check_s);
  }

 private:
  /// Collective: the lowest and highest of every rank's `step`.
  std::pair<std::int64_t, std::int64_t> resume_steps(std::int64_t step) const {
    const auto steps = context_.control.all_max({step, -step}, "train resume step");
    return {-steps[1], steps[0]};
  }

  /// The checkpoint --resume continues from (and its step; --resume auto: none in an empty
  /// folder); an existing run is refused without --resume or --force. A train.steps below the
  /// checkpoint's step is refused; above it, the run is extended.
  void find_checkpoint() {
    if (flags_.resume != ResumeMode::kNo && flags_.force) {
      throw InputError("train", "--resume and --force contradict each other; give one");
    }
    if (flags_.resume != ResumeMode::kNo) {
      resume_from_ =
          latest_checkpoint(checkpoints_, kCheckpointPrefix, [&](const fs::path& dir, const std::string& why) {
            if (rank_ == 0) spdlog::warn("checkpoint {} is skipped: {}; taking an earlier one", dir.string(), why);
          });
      if (!resume_from_ && flags_.resume == ResumeMode::kLatest) {
        throw InputError(checkpoints_.string(),
                         "has no complete checkpoint to resume from (--resume auto starts fresh then)");
      }
    } else if (latest_checkpoint(checkpoints_, kCheckpointPrefix) && !flags_.force) {
      throw InputError(
          run_dir_.string(),
          "already holds checkpoints; pass --resume to continue it, --force to start over, or choose another run_dir");
    }
    if (!resume_from_) return;
    resume_step_ = models::Trainer::saved_step(*resume_from_);
    if (resume_step_ > config_.steps) {
      throw ConfigError("train.steps", fmt::format("{} is below the step of the checkpoint to resume from ({}, {}); "
                                                   "raise it to extend the run",
                                                   config_.steps, resume_step_, resume_from_->string()));
    }
  }

  std::int64_t classes() const { return setup_.classes.size(); }

  static std::string checkpoint_name(std::int64_t step) { return fmt::format("{}{:08d}", kCheckpointPrefix, step); }

  double voxels_per_step() const {
    return static_cast<double>(config_.batch_size * config_.patch[0] * config_.patch[1] * config_.patch[2] *
                               config_.accumulate * world_);
  }

  /// The step's micro-batches on the device, targets as class indices; `samples` names their patches.
  std::vector<models::MicroBatch> next_micro_batches(std::vector<std::string>& samples) {
    std::vector<models::MicroBatch> micro;
    for (std::int64_t m = 0; m < config_.accumulate; ++m) {
      data::Batch batch = loader_->next();
      const at::Tensor target = setup_.lookup.index({batch.label});
      micro.emplace_back(batch.image.to(context_.device, /*non_blocking=*/true), target.to(context_.device, true));
      for (std::size_t i = 0; i < batch.studies.size(); ++i) {
        samples.push_back(fmt::format("{}@{},{},{}", batch.studies[i], batch.origins[i][0], batch.origins[i][1],
                                      batch.origins[i][2]));
      }
    }
    return micro;
  }

  /// Collective: validation after `step`, logged.
  void validate_now(std::int64_t step) {
    const json result = validate(config_, setup_, *loader_, trainer_->net(), *comm_, context_.device);
    log({{"step", step}, {"validation", result}});
    if (rank_ == 0) spdlog::info("train: step {} validation mean Dice {:.3f}", step, result["mean_dice"].get<double>());
  }

  /// Rank 0: the checkpoint of `step` (weights, optimiser, model card), keeping the newest few.
  void checkpoint(std::int64_t step) {
    if (rank_ != 0) return;
    write_checkpoint(
        checkpoints_, checkpoint_name(step),
        [&](const fs::path& dir) {
          trainer_->save(dir);
          write_file_atomic(dir / "model.json", models::card_to_json(card_of(config_, setup_, *loader_, step)));
        },
        kCheckpointPrefix, config_.keep_checkpoints);
  }

  /// Rank 0: one line of metrics.jsonl, flushed.
  void log(const json& line) {
    if (rank_ != 0) return;
    metrics_ << line.dump() << "\n";
    metrics_.flush();
    if (!metrics_) throw InputError((run_dir_ / "metrics.jsonl").string(), "cannot be written (disk full?)");
  }

  const JobContext& context_;
  const TrainConfig& config_;
  const TrainFlags flags_;
  const int rank_, world_;
  const fs::path run_dir_, checkpoints_;
  Setup setup_;
  std::optional<fs::path> resume_from_;
  std::int64_t resume_step_ = 0, start_step_ = 0;
  std::int64_t checkpointed_step_ = -1;  ///< the step of the newest checkpoint in place, -1: none yet
  std::unique_ptr<data::PatchLoader> loader_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<models::Trainer> trainer_;
  std::ofstream metrics_;
  std::unique_ptr<Progress> progress_;
  StepTotals totals_;
};

}  // namespace

ExitCode run_train(const JobContext& context, const TrainConfig& config, const TrainFlags& flags) {
  install_stop_handlers();  // from here SIGTERM and SIGUSR1 end the run at the next step boundary
  TrainingRun run(context, config, flags);
  if (!run.prepare()) return ExitCode::kUsage;
  run.clear_earlier_run();
  std::string failure;
  try {
    run.remove_leftovers();
    run.build();
    if (!run.resume()) return ExitCode::kUsage;
    run.open_metrics();
    while (!run.done()) {
      if (const int signal = run.agreed_stop(); signal != 0) {
        return run.stop(signal) ? ExitCode::kInterrupted : ExitCode::kFailed;
      }
      run.step();
    }
    run.finish();
  } catch (const std::exception& e) {
    failure = fmt::format("training failed on rank {} ({}): {}", context.env.rank(), context.env.host(), e.what());
  }
  // A rank that failed cannot take part in collectives any more: end the job from here.
  if (!failure.empty()) {
    std::cerr << "vitruvian: " + failure + "\n" << std::flush;  // one write: not split by mpirun's own lines
    if (context.env.size() > 1) context.env.abort(exit_status(ExitCode::kFailed));
    return ExitCode::kFailed;
  }
  return ExitCode::kOk;
}

}  // namespace vitruvian::jobs
