// Loading a model for a campaign, and the per-series prediction: input preparation, the memory
// estimate, sliding windows into the banded stitcher, postprocessing and resampling back.
#include "launch/campaign/predictor.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>

#include "core/byte_size.h"
#include "core/checkpoint.h"
#include "core/errors.h"
#include "core/stopwatch.h"
#include "core/progress.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "models/onednn_unet.h"
#include "models/postprocess.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// Studies with at least this many windows show a progress bar of their own on rank 0.
constexpr std::int64_t kWindowBarFrom = 500;

int mirror_mask(const std::string& axes) {
  int mask = 0;
  if (axes.find('z') != std::string::npos) mask |= 1;
  if (axes.find('y') != std::string::npos) mask |= 2;
  if (axes.find('x') != std::string::npos) mask |= 4;
  return mask;
}

}  // namespace

PredictorOptions PredictorOptions::from(const CampaignConfig& config, c10::Device device, bool show_progress) {
  PredictorOptions o;
  o.overlap = config.overlap;
  o.batch = config.batch;
  o.mirror_axes = mirror_mask(config.mirror_axes);
  o.accumulation = models::accumulation_from_name(config.accumulation, "accumulation");
  o.precision = models::precision_from_name(config.precision, "precision");
  o.channels_last = config.channels_last;
  o.onednn = config.engine == "auto";
  o.memory_limit = parse_byte_size(config.memory_limit, "memory_limit");
  o.device = device;
  o.show_progress = show_progress;
  return o;
}

// ---- LoadedModel ----

struct LoadedModel::Impl {
  fs::path dir;
  models::UNet net{nullptr};
  models::ModelCard card;
  std::string checksum;
  std::unique_ptr<models::OneDnnUNet> onednn;  ///< the CPU engine, where it applies
  PredictorOptions options;
};

LoadedModel::LoadedModel(const fs::path& dir, const PredictorOptions& options, bool log) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.dir = dir;
  m.options = options;
  auto [net, card] = models::load_model(dir);
  m.card = std::move(card);
  net->to(options.device);
  if (models::whole_bfloat16(options.precision, options.device)) net->to(at::kBFloat16);
  if (options.precision == models::Precision::kBFloat16 && options.device.is_cpu() && !models::cpu_bfloat16_convolutions() &&
      log) {
    spdlog::warn("model {}: this CPU has no bfloat16 convolutions (oneDNN needs AVX-512); running it in fp32", dir.string());
  }
  if (options.channels_last) models::to_channels_last_3d(*net);
  net->eval();
  if (options.device.is_cpu() && options.onednn && !options.channels_last) {
    std::string why;
    m.onednn = models::OneDnnUNet::create(*net, &why);
    if (log) {
      if (m.onednn) {
        spdlog::info("model {}: CPU forward on oneDNN's primitives directly", dir.string());
      } else {
        spdlog::info("model {}: CPU forward on LibTorch's ops ({})", dir.string(), why);
      }
    }
  }
  m.net = net;
  m.checksum = file_checksum(dir / "model.pt") + file_checksum(dir / "model.json");
}

LoadedModel::~LoadedModel() = default;

const fs::path& LoadedModel::dir() const { return impl_->dir; }
const models::ModelCard& LoadedModel::card() const { return impl_->card; }
const std::string& LoadedModel::checksum() const { return impl_->checksum; }

at::Tensor LoadedModel::forward(const at::Tensor& windows, std::string& engine) const {
  Impl& m = *impl_;  // the engine plans each new window shape on first use
  const models::Autocast autocast(m.options.precision, m.options.device);
  const bool bf16 = models::whole_bfloat16(m.options.precision, m.options.device);
  const at::Tensor in = windows.to(m.options.device, bf16 ? at::kBFloat16 : windows.scalar_type());
  if (m.onednn && m.onednn->accepts(in)) {
    engine = "onednn";
    return m.onednn->forward(in);
  }
  engine = "libtorch";
  return m.net->forward(m.options.channels_last ? models::channels_last_3d(in) : in)[0];
}

// ---- Predictor ----

/// The network's input on the grid it runs on.
struct Predictor::Input {
  at::Tensor image;              ///< float32 [C, D, H, W], normalised
  data::Geometry geometry;       ///< of `image`
  const data::Volume* reference;  ///< the first channel: the grid the labels end on
  bool resampled = false;
};

Predictor::Predictor(std::shared_ptr<const LoadedModel> model, PredictorOptions options,
                     std::shared_ptr<models::BandPlacement> band_placement)
    : model_(std::move(model)), options_(std::move(options)), band_placement_(std::move(band_placement)) {}

Predictor::Input Predictor::prepare(const std::vector<std::pair<std::string, const data::Volume*>>& channels) const {
  const models::ModelCard& card = model_->card();
  Input input;
  input.reference = channels.front().second;
  const data::Volume& reference = *input.reference;
  // To the model's spacing when the study's differs by more than 2 % on an axis.
  for (int a = 0; a < 3; ++a) {
    if (card.spacing[a] > 0 && std::abs(reference.geometry.spacing[a] / card.spacing[a] - 1) > 0.02) input.resampled = true;
  }
  std::vector<at::Tensor> normalised;
  for (std::size_t ch = 0; ch < channels.size(); ++ch) {
    const auto& [name, volume] = channels[ch];
    if (volume->frames() != 1) {
      throw InputError(name, fmt::format("unsupported geometry: a {}-frame series as input of model {}; expected 3D",
                                         volume->frames(), model_->dir().string()));
    }
    const at::Tensor raw = data::same_grid(*volume, reference)
                               ? volume->voxels
                               : data::resample_onto(*volume, reference.geometry, reference.shape_zyx(), data::Interpolation::kLinear)
                                     .voxels;
    const models::InputChannel& in = card.inputs[ch];
    const data::Normalization n = in.normalization;
    data::IntensityStats ct;
    ct.lower = in.lower, ct.upper = in.upper, ct.mean = in.mean, ct.std = in.std;
    data::Volume channel;  // one 3D volume per channel: a Volume's 4th axis is time, not channels
    channel.voxels = data::normalize_channel(raw, n, ct, n == data::Normalization::kZscore ? data::volume_stats(raw) : data::IntensityStats{});
    channel.type = data::VoxelType::kFloat32;
    channel.geometry = reference.geometry;
    if (input.resampled) channel = data::resample_to_spacing(channel, card.spacing, data::Interpolation::kLinear);
    input.geometry = channel.geometry;
    normalised.push_back(std::move(channel.voxels));
  }
  input.image = normalised.size() == 1 ? normalised[0].unsqueeze(0) : at::stack(normalised);  // one channel: no copy
  return input;
}

void Predictor::check_memory(const Input& input, const std::string& what) const {
  // The estimate: the band, the normalised input (and one padded copy), the labels, and the
  // network's activations for a batch of windows (about eight full-resolution feature maps
  // alive at once: an approximation, not a bound).
  const models::ModelCard& card = model_->card();
  const std::int64_t classes = card.classes.size();
  const std::array<std::int64_t, 3> shape{input.image.size(1), input.image.size(2), input.image.size(3)};
  const double window_voxels = static_cast<double>(card.patch[0] * card.patch[1] * card.patch[2]);
  const double activations = static_cast<double>(options_.batch) * window_voxels * static_cast<double>(card.model.base_features) * 4 * 8;
  const double needed = static_cast<double>(models::band_bytes(shape, classes, card.patch, options_.accumulation)) +
                        2.0 * static_cast<double>(input.image.numel()) * 4 + static_cast<double>(input.reference->voxels.numel()) * 2 +
                        activations;
  if (needed > options_.memory_limit) {
    throw InputError(what, fmt::format("out of memory budget: {:.2f} GB needed for {}x{}x{} voxels and {} classes, "
                                       "memory_limit {:.2f} GB",
                                       needed / 1e9, shape[0], shape[1], shape[2], classes, options_.memory_limit / 1e9));
  }
}

at::Tensor Predictor::stitch(const Input& input, const std::string& study_id, Prediction& out) const {
  const std::int64_t classes = model_->card().classes.size();
  models::SlidingWindowOptions window;
  window.window = model_->card().patch;
  window.overlap = options_.overlap;
  window.batch = options_.batch;
  window.mirror_axes = options_.mirror_axes;
  std::unique_ptr<Progress> bar;
  bool on_onednn = false, on_libtorch = false;  // what ran the forward passes
  torch::NoGradGuard no_grad;
  const auto run = [&](const c10::Device& band_device) {
    return models::sliding_window_labels(
        input.image, classes,
        [&](const at::Tensor& x) {
          std::string engine;
          at::Tensor logits = model_->forward(x, engine);
          (engine == "onednn" ? on_onednn : on_libtorch) = true;
          return logits;
        },
        window, options_.accumulation,
        [&](std::int64_t done, std::int64_t total) {
          out.windows = total;
          // A long study gets its own bar on rank 0 (the campaign's counts studies).
          if (total >= kWindowBarFrom && options_.show_progress) {
            if (!bar) bar = std::make_unique<Progress>("windows of " + study_id, total, true);
            bar->advance(done - bar->done());
          }
        },
        band_device);
  };
  const std::int64_t voxels = input.image.numel();
  const c10::Device band_device = band_placement_->choose(voxels);
  at::Tensor labels;
  try {
    labels = run(band_device);
  } catch (const c10::OutOfMemoryError&) {
    if (band_device.is_cpu()) throw;
    // The GPU is short of memory for this band: this study and every one as large keep it in
    // host memory (the windows still run on the GPU).
    band_placement_->record_out_of_memory(voxels);
    spdlog::warn("study {}: the band of {} voxels did not fit on {}; stitching in host memory from now on for studies this "
                 "large",
                 study_id, voxels, band_device.str());
    bar.reset();
    labels = run(c10::Device(c10::kCPU));
  }
  out.engine = on_onednn && on_libtorch ? "onednn+libtorch" : (on_onednn ? "onednn" : "libtorch");
  return labels;
}

Prediction Predictor::predict(const std::vector<std::pair<std::string, const data::Volume*>>& channels, const Postprocess& post,
                              const std::string& study_id, const std::string& what) const {
  const auto start = Clock::now();
  const Input input = prepare(channels);
  check_memory(input, what);
  Prediction out;
  const auto prepared = Clock::now();
  out.prepare_s = std::chrono::duration<double>(prepared - start).count();
  at::Tensor labels = stitch(input, study_id, out);
  out.predict_s = seconds_since(prepared);
  const auto& names = model_->card().classes.names;
  for (const auto c : post.largest_component) {
    out.postprocess["largest_component_removed_voxels"][names[static_cast<std::size_t>(c)]] = models::keep_largest_component(labels, c);
  }
  for (const auto c : post.fill_holes) {
    out.postprocess["holes_filled_voxels"][names[static_cast<std::size_t>(c)]] = models::fill_holes(labels, c);
  }
  const bool narrow = labels.scalar_type() == at::kByte;
  out.labels.voxels = narrow ? labels : labels.to(at::kInt);
  out.labels.type = narrow ? data::VoxelType::kUInt8 : data::VoxelType::kUInt16;
  out.labels.geometry = input.geometry;
  out.resampled = input.resampled;
  if (input.resampled) {
    const data::Volume& reference = *input.reference;
    out.labels = data::resample_onto(out.labels, reference.geometry, reference.shape_zyx(), data::Interpolation::kNearest);
  }
  return out;
}

}  // namespace vitruvian::campaign
