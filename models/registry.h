// Networks by name: a config section (`model:`) → the U-Net family member it names, plus the
// documented export format (weights + a JSON model card) that inference loads.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/crop_rule.h"
#include "core/normalization.h"
#include "models/class_map.h"
#include "models/unet.h"

namespace vitruvian::models {

/// The `model:` config section.
struct ModelConfig {
  std::string name = "unet";  ///< unet | resenc_unet | sk_unet
  int stages = 5;
  std::int64_t base_features = 32;
  std::int64_t max_features = 320;
  /// [z, y, x] downsampling into each stage from stage 1 on, flattened (3 per stage); empty:
  /// 2 on every axis.
  std::vector<std::int64_t> strides;
  /// [z, y, x] kernel of every stage, flattened (3 per stage); empty: 3 on every axis.
  std::vector<std::int64_t> kernels;
  int convs_per_stage = 2;
  bool deep_supervision = true;

  void visit(ConfigVisitor& v);
  /// The network's options; ConfigError naming the key for a bad name or list length.
  UNetOptions options(std::int64_t in_channels, std::int64_t classes) const;
};

/// "unet" (plain nnU-Net-style), "resenc_unet" (residual encoder), "sk_unet" (selective kernel).
const std::vector<std::string>& model_names();
UNet make_model(const ModelConfig& config, std::int64_t in_channels, std::int64_t classes);

/// One input channel of an exported network: the series it takes and how its intensities are
/// normalised first (the rule the training loader applied).
struct InputChannel {
  std::string series;
  Normalization normalization = Normalization::kCt;
  /// kCt: clip to [lower, upper] (the 0.5th and 99.5th percentiles of the training foreground,
  /// HU), then (x − mean) / std with that foreground's mean and standard deviation.
  double lower = 0, upper = 0, mean = 0, std = 1;
};

/// Everything an exported network needs, besides its weights, to run on new studies.
struct ModelCard {
  ModelConfig model;
  std::vector<InputChannel> inputs;  ///< in channel order
  /// The classes it predicts and the dataset label ids each stands for (e.g. heart = the four
  /// chambers and the myocardium); class 0 is background.
  ClassMap classes;
  std::array<std::int64_t, 3> patch{64, 64, 64};  ///< training patch [z, y, x]: the inference window
  std::string dataset;                           ///< what it was trained on
  std::string label_map;                         ///< the dataset's label map it learned ("" unknown)
  /// Spacing [x, y, z] mm of the grids it was trained on (the median over training studies);
  /// inference resamples other grids to it. {0, 0, 0}: unknown, images are taken as they come.
  std::array<double, 3> spacing{0, 0, 0};
  std::int64_t step = 0;                         ///< training steps done
  /// How the training studies were cropped (`preprocess --crop-body`): campaigns crop the same
  /// way when a route names no crop. Unknown for cards written before it was recorded.
  CropRule crop;

  /// The input series names, in channel order.
  std::vector<std::string> channel_names() const;
};

/// Writes DIR/model.pt (the weights, LibTorch's serialisation) and DIR/model.json (the card),
/// through write_atomically (core/atomic_file.h): a temporary folder synced and put in place (an
/// existing DIR is replaced whole).
void export_model(const std::filesystem::path& dir, UNet& net, const ModelCard& card);
/// Loads an exported model onto the CPU (in eval mode; move it where it runs); InputError naming
/// the file when it is missing, unreadable or does not match its card.
std::pair<UNet, ModelCard> load_model(const std::filesystem::path& dir);

/// The card as JSON text, and back (InputError naming `source` and the bad field). `crop` is
/// written as {"rule": "body", "margin_mm": M} or {"rule": "none"}, and left out when unknown.
std::string card_to_json(const ModelCard& card);
ModelCard card_from_json(const std::string& text, const std::string& source);

}  // namespace vitruvian::models
