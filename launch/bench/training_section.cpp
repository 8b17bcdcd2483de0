// The training section: the training step's voxels/s on 1, 2, 4 ... N ranks with the same work
// per rank (weak scaling), its exposed communication, and whether the storage keeps it fed.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "data/loader.h"
#include "data/volume_store.h"
#include "launch/bench/bench.h"
#include "launch/svg_chart.h"
#include "models/registry.h"
#include "models/trainer.h"

namespace vitruvian::bench {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr double kTargetEfficiency = 0.9;

struct TrainShape {
  std::int64_t patch, batch, stages, base, steps;
};

TrainShape shape_of(bool quick, bool cuda) {
  if (cuda) return {128, 2, 5, 32, quick ? 5 : 20};
  return quick ? TrainShape{32, 2, 3, 8, 3} : TrainShape{64, 2, 4, 16, 8};
}

std::vector<int> rank_counts(int world) {
  std::vector<int> out;
  for (int k = 1; k < world; k *= 2) out.push_back(k);
  out.push_back(world);
  return out;
}

struct StepFigures {
  double step_s = 0, exposed_s = 0, comm_s = 0, wait_s = 0;
  std::int64_t parameters = 0;
};

/// Where the steps' batches come from: the patch loader over the storage section's dataset
/// (one worker per rank, every rank drawing from every study with its own seed), or one batch
/// held in memory when that dataset is not there.
class BatchSource {
 public:
  BatchSource(const std::string& dataset, const TrainShape& shape, int rank, c10::Device device)
      : device_(device) {
    if (!dataset.empty()) {
      auto store = std::make_shared<const data::VolumeStore>(dataset);
      data::TaskSpec task;
      task.channels = {store->studies().front().series.front().name};
      task.label = store->studies().front().labels.front().name;
      for (const auto& [id, name] : store->label_table()) classes_ = std::max(classes_, static_cast<std::int64_t>(id) + 1);
      data::LoaderOptions options;
      options.patch_size = {shape.patch, shape.patch, shape.patch};
      options.batch_size = shape.batch;
      options.workers = 1;
      options.queue_depth = 2;
      options.seed = static_cast<std::uint64_t>(rank);
      loader_ = std::make_unique<data::PatchLoader>(store, task, options);
      return;
    }
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1 + rank);
    const std::int64_t p = shape.patch;
    image_ = at::randn({shape.batch, 1, p, p, p}, gen).to(device);
    label_ = at::randint(0, classes_, {shape.batch, p, p, p}, gen, at::kLong).to(device);
  }
  std::int64_t classes() const { return classes_; }
  bool loads() const { return loader_ != nullptr; }
  double wait_seconds() const { return loader_ ? loader_->wait_seconds() : 0.0; }
  models::MicroBatch next() {
    if (!loader_) return {image_, label_};
    data::Batch batch = loader_->next();
    return {batch.image.to(device_, true), batch.label.to(device_, true)};
  }

 private:
  c10::Device device_;
  std::int64_t classes_ = 4;
  std::unique_ptr<data::PatchLoader> loader_;
  at::Tensor image_, label_;
};

/// `shape.steps` steps (after one warm-up) on `comm`'s ranks; the slowest rank's mean step.
StepFigures time_steps(Communicator& comm, const TrainShape& shape, c10::Device device, const std::string& dataset) {
  BatchSource source(dataset, shape, comm.rank(), device);
  models::ModelConfig config;
  config.stages = static_cast<int>(shape.stages);
  config.base_features = shape.base;
  models::UNet net = models::make_model(config, 1, source.classes());
  net->to(device);
  models::TrainerOptions options;
  options.steps = 1000000;
  models::Trainer trainer(net, comm, options);
  trainer.step({source.next()});
  StepFigures f;
  const double wait_before = source.wait_seconds();
  comm.barrier();
  const auto start = Clock::now();
  for (std::int64_t s = 0; s < shape.steps; ++s) {
    const models::StepResult r = trainer.step({source.next()});
    f.exposed_s += r.comm.exposed_s, f.comm_s += r.comm.total_s;
  }
  const at::Tensor t = at::tensor({std::chrono::duration<double>(Clock::now() - start).count(), f.exposed_s, f.comm_s,
                                   source.wait_seconds() - wait_before},
                                  at::kDouble);
  comm.allreduce(t, ReduceOp::kMax);
  const double n = static_cast<double>(shape.steps);
  f.step_s = t[0].item<double>() / n, f.exposed_s = t[1].item<double>() / n, f.comm_s = t[2].item<double>() / n;
  f.wait_s = t[3].item<double>() / n;
  f.parameters = models::parameter_count(*net);
  return f;
}

}  // namespace

SectionResult run_training(BenchContext& context, const SectionResult* storage) {
  SectionResult result;
  result.name = "training";
  result.title = "Training";
  const c10::Device device = context.job.device;
  const TrainShape shape = shape_of(context.options.quick, device.is_cuda());
  const double voxels_per_rank = static_cast<double>(shape.batch * shape.patch * shape.patch * shape.patch);
  const std::string dataset = storage != nullptr && storage->data.contains("path") ? storage->data["path"].get<std::string>() : "";
  json rows = json::array();
  double single = 0;
  for (const int k : rank_counts(context.world.size())) {
    const bool in = context.world.rank() < k;
    auto group = context.world.split(in ? 0 : 1, context.world.rank(), fmt::format("bench_train_{}", k));
    StepFigures f;
    if (in) f = time_steps(*group, shape, device, dataset);
    context.world.barrier();
    if (context.world.rank() != 0) continue;
    const double voxels_s = k * voxels_per_rank / f.step_s;
    if (k == 1) single = voxels_s;
    rows.push_back({{"ranks", k}, {"step_s", f.step_s}, {"voxels_per_s", voxels_s}, {"efficiency", voxels_s / (k * single)},
                    {"comm_s", f.comm_s}, {"exposed_s", f.exposed_s}, {"data_wait_s", f.wait_s}, {"parameters", f.parameters}});
  }
  result.method = fmt::format(
      "Vitruvian's training step (U-Net, {} stages, {} base features, Dice + cross-entropy, SGD, gradients averaged in "
      "buckets during backward) on batches of {} × {}³ per rank {}, {} steps after one warm-up, on {}; first 1 rank, "
      "then 2, 4 ... up to all {} ranks with the same work per rank. Time: the slowest rank's mean step; data wait: the "
      "slowest rank's time blocked on its loader.",
      shape.stages, shape.base, shape.batch, shape.patch,
      dataset.empty() ? "held in memory (no storage section: no data wait)"
                      : "from the patch loader (one worker per rank) over the storage section's dataset, with its label ids as classes",
      shape.steps, device.str(), context.world.size());
  result.data = {{"device", device.str()}, {"patch", shape.patch}, {"batch", shape.batch}, {"stages", shape.stages},
                 {"base_features", shape.base}, {"rows", rows}};
  if (context.world.rank() != 0) return result;

  std::vector<std::vector<std::string>> cells;
  ChartSeries measured{"measured", {}, "#1f77b4"}, ideal{"linear", {}, "#999999", true};
  for (const auto& r : rows) {
    cells.push_back({std::to_string(r["ranks"].get<int>()), fmt::format("{:.1f}", r["step_s"].get<double>() * 1e3),
                     fmt::format("{:.3g}", r["voxels_per_s"].get<double>()), fmt::format("{:.1f} %", 100 * r["efficiency"].get<double>()),
                     fmt::format("{:.1f}", r["comm_s"].get<double>() * 1e3), fmt::format("{:.1f}", r["exposed_s"].get<double>() * 1e3),
                     fmt::format("{:.1f}", r["data_wait_s"].get<double>() * 1e3)});
    measured.points.emplace_back(r["ranks"].get<double>(), r["voxels_per_s"].get<double>());
    ideal.points.emplace_back(r["ranks"].get<double>(), r["ranks"].get<double>() * single);
  }
  result.tables.push_back(html_table({"ranks", "step (ms)", "voxels/s", "weak-scaling efficiency", "communication (ms)", "exposed (ms)", "data wait (ms)"}, cells));
  ChartAxes axes;
  axes.x_label = "ranks", axes.y_label = "voxels/s";
  result.charts.push_back(svg_line_chart("Training step, weak scaling", axes, {measured, ideal}));
  const json& last = rows.back();
  result.verdicts.push_back({fmt::format("weak-scaling efficiency, {} ranks", last["ranks"].get<int>()),
                             fmt::format("{:.1f} %", 100 * last["efficiency"].get<double>()),
                             fmt::format(">= {:.0f} % of 1 rank's voxels/s × ranks", 100 * kTargetEfficiency),
                             met(last["efficiency"].get<double>() >= kTargetEfficiency)});
  const double exposed = last["step_s"].get<double>() > 0 ? last["exposed_s"].get<double>() / last["step_s"].get<double>() : 0;
  result.verdicts.push_back({fmt::format("exposed communication, {} ranks", last["ranks"].get<int>()),
                             fmt::format("{:.1f} % of the step", 100 * exposed), "<= 10 % of the step", met(exposed <= 0.10)});
  if (!dataset.empty()) {
    const double wait = last["data_wait_s"].get<double>() / last["step_s"].get<double>();
    result.verdicts.push_back({fmt::format("data wait, {} ranks", last["ranks"].get<int>()),
                               fmt::format("{:.1f} % of the step ({:.1f} ms)", 100 * wait, last["data_wait_s"].get<double>() * 1e3),
                               "<= 5 % of the step: the loader keeps the step fed", met(wait <= 0.05)});
  }
  return result;
}

}  // namespace vitruvian::bench
