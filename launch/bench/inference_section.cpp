// The inference section: the campaigns' prediction path (sliding window, Gaussian weights,
// labels back on the host) over chest phantoms on every rank at once, and the MLPerf 3D U-Net
// shape (5 levels, 32 → 320 features, 128³ windows over a 256³ volume) per device.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

#include "core/errors.h"
#include "core/exit_code.h"
#include "core/normalization.h"
#include "data/phantom.h"
#include "data/phantom_write.h"
#include "data/volume_store.h"
#include "launch/campaign/campaign_config.h"
#include "launch/jobs/infer.h"
#include "launch/bench/bench.h"
#include "models/onednn_unet.h"
#include "models/precision.h"
#include "models/registry.h"
#include "models/stitcher.h"

#include <fstream>

namespace vitruvian::bench {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr double kMlperfVolumesPerSecond = 6.4;  // one GPU's share of the published 8 x H100 MLPerf Inference figure

/// A network in eval mode on `device` and its forward for sliding_window_labels: oneDNN's
/// primitives on the CPU where they apply (as campaigns), else LibTorch's ops, fp16 autocast on CUDA.
struct Predictor {
  models::UNet net;
  std::unique_ptr<models::OneDnnUNet> onednn;
  c10::Device device;
  std::int64_t classes;

  Predictor(const models::ModelConfig& config, std::int64_t classes_, c10::Device device_)
      : net(models::make_model(config, 1, classes_)), device(device_), classes(classes_) {
    net->to(device);
    net->eval();
    if (device.is_cpu()) onednn = models::OneDnnUNet::create(*net);
  }
  at::Tensor labels(const at::Tensor& volume, std::int64_t window, std::int64_t batch) {
    torch::NoGradGuard no_grad;
    models::SlidingWindowOptions options;
    options.window = {window, window, window};
    options.overlap = 0.5;
    options.batch = batch;
    return models::sliding_window_labels(
        volume, classes,
        [&](const at::Tensor& x) {
          const models::Autocast autocast(models::Precision::kFloat16, device);
          const at::Tensor in = x.to(device);
          if (onednn && onednn->accepts(in)) return onednn->forward(in);
          return net->forward(in)[0];
        },
        options, models::Accumulation::kFloat32, {}, device);
  }
};

double slowest(Communicator& world, double seconds) {
  const at::Tensor t = at::full({1}, seconds, at::kDouble);
  world.allreduce(t, ReduceOp::kMax);
  return t.item<double>();
}

namespace fs = std::filesystem;

struct CampaignShape {
  std::int64_t edge, studies_per_rank, stages, base;
};

CampaignShape campaign_shape(bool quick) { return quick ? CampaignShape{64, 2, 3, 8} : CampaignShape{128, 4, 4, 16}; }

/// Rank 0 writes the chest phantoms and exports a network for them (untrained weights: the work
/// is the same) under OUT/inference, unless they are there.
void prepare_campaign(const fs::path& dir, const CampaignShape& shape, int ranks) {
  const fs::path dataset = dir / fmt::format("phantoms_{}_{}.h5", shape.edge, shape.studies_per_rank * ranks);
  data::PhantomOptions phantoms;
  phantoms.shape_zyx = {shape.edge, shape.edge, shape.edge};
  phantoms.framing = data::PhantomFraming::kCentred;  // the grid is the shape the figures name
  fs::create_directories(dir);
  if (!fs::exists(dataset)) {
    data::VolumeWriter writer(dataset);
    writer.set_label_table(data::phantom_label_table(phantoms.kind));
    for (std::int64_t i = 0; i < shape.studies_per_rank * ranks; ++i) {
      data::write_phantom_study(writer, data::make_phantom_study(phantoms, 1000 + i));
    }
    writer.commit();
  }
  const data::VolumeStore store(dataset);
  models::ModelCard card;
  card.model.stages = static_cast<int>(shape.stages);
  card.model.base_features = shape.base;
  card.inputs = {{store.studies().front().series.front().name, Normalization::kCt, -1000, 1000, 0, 500}};
  card.classes = models::ClassMap::from_labels({"lung_left", "lung_right", "heart_myocardium"}, store.label_table(),
                                               dataset.string());
  card.patch = {64, 64, 64};
  card.dataset = dataset.string();
  card.label_map = store.studies().front().labels.front().name;
  torch::manual_seed(0);
  models::UNet net = models::make_model(card.model, 1, static_cast<std::int64_t>(card.classes.names.size()));
  models::export_model(dir / "model", net, card);
}

/// A whole campaign (`vitruvian infer`'s job: read, predict, post-process, report, write the
/// studies and the summary) over the phantoms on every rank, redone from scratch.
json campaign_figures(BenchContext& context) {
  const CampaignShape shape = campaign_shape(context.options.quick);
  const fs::path dir = context.options.out / "inference";
  if (context.world.rank() == 0) prepare_campaign(dir, shape, context.world.size());
  context.world.barrier();
  campaign::CampaignConfig config;
  config.inputs = {dir / fmt::format("phantoms_{}_{}.h5", shape.edge, shape.studies_per_rank * context.world.size())};
  config.output = dir / "campaign";
  campaign::RouteConfig route;
  route.name = "organs";
  route.model = dir / "model";
  config.routes = {route};
  config.validate();
  const auto start = Clock::now();
  const ExitCode code = jobs::run_infer(context.job, config, true);
  const double seconds = slowest(context.world, std::chrono::duration<double>(Clock::now() - start).count());
  if (code != ExitCode::kOk) {
    throw InternalError("bench inference",
                        fmt::format("the campaign in {} ended with exit status {}", config.output.string(), exit_status(code)));
  }
  json done = nullptr;
  if (context.world.rank() == 0) done = json::parse(std::ifstream(config.output / "campaign.json"))["done"];
  const double total = static_cast<double>(shape.studies_per_rank * context.world.size());
  return {{"studies", total}, {"done", done}, {"edge", shape.edge}, {"window", 64}, {"stages", shape.stages},
          {"base", shape.base}, {"output", config.output.string()}, {"seconds", seconds},
          {"studies_per_hour", total * 3600 / seconds}, {"voxels_per_s", total * static_cast<double>(shape.edge * shape.edge * shape.edge) / seconds}};
}

/// The MLPerf shape on every rank's device at once: windows/s, and volumes/s = windows/s / 27.
json mlperf_figures(BenchContext& context) {
  const c10::Device device = context.job.device;
  models::ModelConfig config;
  config.stages = 5;
  config.base_features = 32;
  config.max_features = 320;
  config.deep_supervision = false;
  torch::manual_seed(0);
  Predictor predictor(config, 3, device);
  // On a GPU the whole 256³ volume (27 windows, batch 4); on a CPU one 128³ window.
  const std::int64_t edge = device.is_cuda() ? 256 : 128;
  const at::Tensor volume = at::randn({1, edge, edge, edge});
  predictor.labels(volume, 128, 4);  // warm-up: cuDNN autotuning, allocator
  const int repeats = device.is_cuda() ? 3 : 1;
  context.world.barrier();
  const auto start = Clock::now();
  for (int r = 0; r < repeats; ++r) predictor.labels(volume, 128, 4);
  const double seconds = slowest(context.world, std::chrono::duration<double>(Clock::now() - start).count());
  const double windows = (edge == 256 ? 27.0 : 1.0) * repeats;
  return {{"device", device.str()}, {"volume_edge", edge}, {"windows", windows}, {"seconds", seconds},
          {"windows_per_s", windows / seconds}, {"volumes_per_s", windows / seconds / 27},
          {"precision", device.is_cuda() ? "fp16 autocast" : "fp32"}};
}

}  // namespace

SectionResult run_inference(BenchContext& context) {
  SectionResult result;
  result.name = "inference";
  result.title = "Inference";
  const json campaign = campaign_figures(context);
  const json mlperf = mlperf_figures(context);
  result.data = {{"campaign", campaign}, {"mlperf_unet", mlperf}};
  result.method = fmt::format(
      "Campaign: `vitruvian infer`'s whole job on {} ranks over {} chest phantoms of {}³ (read, normalise, sliding window "
      "of {}³ windows at overlap 0.5, post-processing, report, label maps and the summary written; redone from scratch) "
      "with an exported U-Net of {} stages and {} base features (untrained weights: the work is the same). MLPerf shape: the 5-level "
      "32 → 320 U-Net, 3 classes, 128³ windows, on every rank's device at once ({}): {}; volumes/s = windows/s ÷ 27 "
      "(a 256³ volume at overlap 0.5). Times: the slowest rank's.",
      context.world.size(), campaign["studies"].get<double>(), campaign["edge"].get<int>(),
      campaign["window"].get<int>(), campaign["stages"].get<int>(), campaign["base"].get<int>(), mlperf["device"].get<std::string>(),
      mlperf["volume_edge"].get<int>() == 256 ? "the whole 256³ volume, batches of 4 windows, fp16 autocast"
                                             : "one 128³ window (a CPU takes seconds per window)");
  result.verdicts.push_back({"campaign on phantoms, all ranks",
                             fmt::format("{:.0f} studies/h, {:.3g} voxels/s", campaign["studies_per_hour"].get<double>(),
                                         campaign["voxels_per_s"].get<double>()),
                             "for information: the figure to compare between machines", "for information"});
  const bool gpu = context.job.device.is_cuda();
  const double volumes = mlperf["volumes_per_s"].get<double>();
  result.verdicts.push_back({"MLPerf 3D U-Net shape, per device",
                             fmt::format("{:.3g} volumes/s ({:.3g} windows/s)", volumes, mlperf["windows_per_s"].get<double>()),
                             fmt::format(">= {} volumes/s: one H100's share of the published MLPerf Inference figure", kMlperfVolumesPerSecond),
                             gpu ? met(volumes >= kMlperfVolumesPerSecond) : "for information"});
  result.tables.push_back(html_table(
      {"what", "studies or windows", "seconds", "studies/h", "voxels/s", "volumes/s"},
      {{"campaign", fmt::format("{:.0f} studies", campaign["studies"].get<double>()), fmt::format("{:.2f}", campaign["seconds"].get<double>()),
        fmt::format("{:.0f}", campaign["studies_per_hour"].get<double>()), fmt::format("{:.3g}", campaign["voxels_per_s"].get<double>()), "-"},
       {"MLPerf U-Net (per device)", fmt::format("{:.0f} windows", mlperf["windows"].get<double>()), fmt::format("{:.2f}", mlperf["seconds"].get<double>()),
        "-", "-", fmt::format("{:.3g}", volumes)}}));
  return result;
}

}  // namespace vitruvian::bench
