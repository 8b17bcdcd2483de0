// One exported model on one study's channels: the model loaded once per rank (the network on its
// device, its card, the CPU engine where it applies), and the Predictor that turns a study's
// channel series into labels — normalisation from the card, resampling to the card's spacing
// and back, the memory estimate, the banded stitcher, postprocessing.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "data/volume.h"
#include "launch/campaign/campaign_config.h"
#include "models/precision.h"
#include "models/registry.h"
#include "models/stitcher.h"

namespace vitruvian::campaign {

/// How every model of a campaign runs on this rank.
struct PredictorOptions {
  double overlap = 0.5;
  std::int64_t batch = 2;  ///< windows per forward call
  int mirror_axes = 0;     ///< bit 0 z, bit 1 y, bit 2 x (models::SlidingWindowOptions)
  models::Accumulation accumulation = models::Accumulation::kFloat32;
  models::Precision precision = models::Precision::kFloat32;
  bool channels_last = false;
  bool onednn = true;           ///< CPU: plain fp32 U-Nets on models/onednn_unet.h
  double memory_limit = 3e9;    ///< bytes per study (the estimate, see Predictor::predict)
  c10::Device device{c10::kCPU};
  bool show_progress = false;  ///< a bar for studies of many windows (rank 0)

  /// From a validated campaign.
  static PredictorOptions from(const CampaignConfig& config, c10::Device device, bool show_progress);
};

/// An exported model (model.pt + model.json) loaded on this rank, ready to run.
class LoadedModel {
 public:
  /// Loads `dir` onto options.device, in eval mode, in the options' precision and layout, with
  /// the CPU engine where it applies. `log`: say which engine runs it (rank 0). InputError naming
  /// the file when the model is missing or broken.
  LoadedModel(const std::filesystem::path& dir, const PredictorOptions& options, bool log);
  ~LoadedModel();
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  const std::filesystem::path& dir() const;
  const models::ModelCard& card() const;
  /// Checksum of model.pt and model.json (part of the campaign's fingerprint).
  const std::string& checksum() const;

  /// Logits [B, K, wz, wy, wx] of a batch of windows [B, C, wz, wy, wx] (any device and
  /// dtype: moved and converted here). Records in `engine` what ran: "onednn" or "libtorch".
  at::Tensor forward(const at::Tensor& windows, std::string& engine) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Classes (indices into the card's class names) cleaned after prediction.
struct Postprocess {
  std::set<std::int64_t> largest_component;  ///< voxels outside the class's largest component become background
  std::set<std::int64_t> fill_holes;         ///< background enclosed by the class becomes the class
};

struct Prediction {
  /// Class indices on the first channel's grid: uint8 (kUInt8), or int32 holding kUInt16 when
  /// there are more than 256 classes.
  data::Volume labels;
  bool resampled = false;  ///< the channels went to the card's spacing (and the labels back)
  nlohmann::json postprocess = nlohmann::json::object();  ///< voxels changed per class name
  std::string engine;                                       ///< "onednn", "libtorch" or "onednn+libtorch"
  std::int64_t windows = 0;
  double prepare_s = 0, predict_s = 0;
};

/// Runs one model; shares with the rank's other predictors where stitching bands fit (GPU).
class Predictor {
 public:
  Predictor(std::shared_ptr<const LoadedModel> model, PredictorOptions options,
            std::shared_ptr<models::BandPlacement> band_placement);

  /// `channels`: (series name, volume) in the card's channel order, 3D, on any grids — the
  /// first is the reference, the others are resampled onto it (trilinear). Each is normalised
  /// as the card says; the stack goes to the card's spacing when the study's differs by more
  /// than 2 % on an axis. InputError naming `what` (the route) when the estimate exceeds the
  /// memory limit, or naming a series that is not 3D.
  Prediction predict(const std::vector<std::pair<std::string, const data::Volume*>>& channels, const Postprocess& post,
                     const std::string& study_id, const std::string& what) const;

  const LoadedModel& model() const { return *model_; }

 private:
  struct Input;
  Input prepare(const std::vector<std::pair<std::string, const data::Volume*>>& channels) const;
  void check_memory(const Input& input, const std::string& what) const;
  at::Tensor stitch(const Input& input, const std::string& study_id, Prediction& out) const;

  std::shared_ptr<const LoadedModel> model_;
  PredictorOptions options_;
  std::shared_ptr<models::BandPlacement> band_placement_;
};

}  // namespace vitruvian::campaign
