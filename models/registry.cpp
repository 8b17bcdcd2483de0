// Model names, the config section, and the export format (model.pt + model.json).
#include "models/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/json_numbers.h"

namespace vitruvian::models {
namespace fs = std::filesystem;
using json = nlohmann::json;

void ModelConfig::visit(ConfigVisitor& v) {
  v.field("name", name, "network: unet, resenc_unet or sk_unet");
  v.field("stages", stages, "resolution stages (the deepest is stage stages-1)");
  v.field("base_features", base_features, "channels of stage 0, doubling per stage");
  v.field("max_features", max_features, "cap on channels per stage");
  v.field("strides", strides, "[z,y,x] downsampling into stages 1.. flattened; empty: 2 everywhere");
  v.field("kernels", kernels, "[z,y,x] kernel per stage flattened; empty: 3 everywhere");
  v.field("convs_per_stage", convs_per_stage, "convolutions (or residual/SK blocks) per stage");
  v.field("deep_supervision", deep_supervision, "loss heads on the coarser decoder stages");
}

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"unet", "resenc_unet", "sk_unet"};
  return names;
}

UNetOptions ModelConfig::options(std::int64_t in_channels, std::int64_t classes) const {
  BlockType block = BlockType::kPlain;
  if (name == "resenc_unet") {
    block = BlockType::kResidual;
  } else if (name == "sk_unet") {
    block = BlockType::kSelectiveKernel;
  } else if (name != "unet") {
    throw ConfigError("model.name", "'" + name + "' is not a network; expected " + fmt::format("{}", fmt::join(model_names(), ", ")));
  }
  if (stages < 2 || stages > 8) throw ConfigError("model.stages", fmt::format("{}; expected 2 to 8", stages));
  if (base_features < 1 || max_features < base_features) {
    throw ConfigError("model.base_features", fmt::format("{} with max_features {}; expected 1 <= base <= max", base_features,
                                                         max_features));
  }
  if (!strides.empty() && strides.size() != static_cast<std::size_t>(3 * (stages - 1))) {
    throw ConfigError("model.strides", fmt::format("{} numbers; expected 3 per stage after the first ({})", strides.size(),
                                                   3 * (stages - 1)));
  }
  if (!kernels.empty() && kernels.size() != static_cast<std::size_t>(3 * stages)) {
    throw ConfigError("model.kernels", fmt::format("{} numbers; expected 3 per stage ({})", kernels.size(), 3 * stages));
  }
  UNetOptions o = UNetOptions::standard(in_channels, classes, stages);
  std::vector<std::int64_t> features;
  for (int s = 0; s < stages; ++s) features.push_back(std::min<std::int64_t>(base_features << s, max_features));
  StageAxes stride_axes = o.strides(), kernel_axes = o.kernels();
  for (int s = 1; s < stages && !strides.empty(); ++s) {
    stride_axes[s] = {strides[3 * (s - 1)], strides[3 * (s - 1) + 1], strides[3 * (s - 1) + 2]};
  }
  for (int s = 0; s < stages && !kernels.empty(); ++s) kernel_axes[s] = {kernels[3 * s], kernels[3 * s + 1], kernels[3 * s + 2]};
  return o.features(features)
      .strides(stride_axes)
      .kernels(kernel_axes)
      .convs_per_stage(convs_per_stage)
      .block(block)
      .deep_supervision(deep_supervision);
}

UNet make_model(const ModelConfig& config, std::int64_t in_channels, std::int64_t classes) {
  return UNet(config.options(in_channels, classes));
}

namespace {

/// The card's per-channel lists (channels, normalization, ct_stats) as typed inputs.
std::vector<InputChannel> inputs_from_json(const json& j, const std::string& source) {
  const auto channels = j.at("channels").get<std::vector<std::string>>();
  const auto normalization = j.at("normalization").get<std::vector<std::string>>();
  const auto ct_stats = j.at("ct_stats").get<std::vector<std::array<double, 4>>>();
  if (channels.empty() ||
      json_whole<std::int64_t>(j.at("in_channels"), source, "in_channels") !=
          static_cast<std::int64_t>(channels.size()) ||
      normalization.size() != channels.size() || ct_stats.size() != channels.size()) {
    throw InputError(source, "inconsistent card: in_channels, channels, normalization and ct_stats disagree");
  }
  std::vector<InputChannel> inputs;
  for (std::size_t ch = 0; ch < channels.size(); ++ch) {
    const auto& s = ct_stats[ch];
    inputs.push_back({channels[ch], normalization_from_name(normalization[ch], source), s[0], s[1], s[2], s[3]});
  }
  return inputs;
}

/// The card's `crop` ({"rule": "body", "margin_mm": M} or {"rule": "none"}); unknown when absent.
CropRule crop_from_json(const json& j, const std::string& source) {
  CropRule crop;
  if (!j.contains("crop")) return crop;
  const json& c = j.at("crop");
  const std::string expected = "expected {\"rule\": \"body\", \"margin_mm\": 0..500} or {\"rule\": \"none\"}";
  if (!c.is_object() || !c.contains("rule") || !c.at("rule").is_string()) {
    throw InputError(source, "crop " + c.dump() + "; " + expected);
  }
  crop.rule = c.at("rule").get<std::string>();
  if (crop.rule == "none" && c.size() == 1) return crop;
  if (crop.rule != "body" || c.size() != 2 || !c.contains("margin_mm") || !c.at("margin_mm").is_number()) {
    throw InputError(source, "crop " + c.dump() + "; " + expected);
  }
  crop.margin_mm = c.at("margin_mm").get<double>();
  if (!(crop.margin_mm >= 0 && crop.margin_mm <= 500)) throw InputError(source, "crop " + c.dump() + "; " + expected);
  return crop;
}

}  // namespace

std::vector<std::string> ModelCard::channel_names() const {
  std::vector<std::string> names;
  for (const auto& in : inputs) names.push_back(in.series);
  return names;
}

std::string card_to_json(const ModelCard& c) {
  std::vector<std::string> normalization;
  std::vector<std::array<double, 4>> ct_stats;  // lower, upper, mean, std
  for (const auto& in : c.inputs) {
    normalization.push_back(normalization_name(in.normalization));
    ct_stats.push_back({in.lower, in.upper, in.mean, in.std});
  }
  const ModelConfig& m = c.model;
  json j = {{"format", "vitruvian-model"},
            {"format_version", 1},
            {"model",
             {{"name", m.name},
              {"stages", m.stages},
              {"base_features", m.base_features},
              {"max_features", m.max_features},
              {"strides", m.strides},
              {"kernels", m.kernels},
              {"convs_per_stage", m.convs_per_stage},
              {"deep_supervision", m.deep_supervision}}},
            {"in_channels", c.inputs.size()},
            {"channels", c.channel_names()},
            {"normalization", normalization},
            {"ct_stats", ct_stats},
            {"class_names", c.classes.names},
            {"class_label_ids", c.classes.label_ids},
            {"patch", c.patch},
            {"dataset", c.dataset},
            {"label_map", c.label_map},
            {"spacing", c.spacing},
            {"step", c.step}};
  if (c.crop.rule == "body") {
    j["crop"] = {{"rule", "body"}, {"margin_mm", c.crop.margin_mm}};
  } else if (c.crop.known()) {
    j["crop"] = {{"rule", c.crop.rule}};
  }
  return j.dump(2);
}

ModelCard card_from_json(const std::string& text, const std::string& source) {
  try {
    const json j = json::parse(text);
    if (j.at("format") != "vitruvian-model") throw InputError(source, "not a Vitruvian model card (format)");
    if (json_whole<int>(j.at("format_version"), source, "format_version") > 1)
      throw InputError(source, "written by a newer Vitruvian (format_version)");
    ModelCard c;
    const json& m = j.at("model");
    c.model.name = m.at("name");
    c.model.stages = json_whole<int>(m.at("stages"), source, "model.stages");
    c.model.base_features = json_whole<std::int64_t>(m.at("base_features"), source, "model.base_features");
    c.model.max_features = json_whole<std::int64_t>(m.at("max_features"), source, "model.max_features");
    c.model.strides = json_wholes(m.at("strides"), source, "model.strides");
    c.model.kernels = json_wholes(m.at("kernels"), source, "model.kernels");
    c.model.convs_per_stage = json_whole<int>(m.at("convs_per_stage"), source, "model.convs_per_stage");
    c.model.deep_supervision = m.at("deep_supervision");
    c.inputs = inputs_from_json(j, source);
    const json& label_ids = j.at("class_label_ids");
    if (!label_ids.is_array()) throw InputError(source, "class_label_ids is not a list of lists of label ids");
    std::vector<std::vector<std::int64_t>> ids;
    for (const json& one : label_ids) ids.push_back(json_wholes(one, source, "class_label_ids"));
    c.classes = ClassMap::from_lists(j.at("class_names").get<std::vector<std::string>>(), ids, source);
    const std::vector<std::int64_t> patch = json_wholes(j.at("patch"), source, "patch");
    if (patch.size() != 3) throw InputError(source, fmt::format("patch has {} sizes; expected three", patch.size()));
    std::copy(patch.begin(), patch.end(), c.patch.begin());
    for (const std::int64_t p : c.patch) {
      if (p < 1 || p > 4096) throw InputError(source, fmt::format("patch {}; expected three sizes of 1 to 4096 voxels", p));
    }
    c.dataset = j.at("dataset");
    c.step = json_whole<std::int64_t>(j.at("step"), source, "step");
    if (c.step < 0) throw InputError(source, fmt::format("step {}; expected the training steps done (>= 0)", c.step));
    c.label_map = j.value("label_map", std::string());
    c.spacing = j.value("spacing", std::array<double, 3>{0, 0, 0});
    for (const double s : c.spacing) {
      if (!(s >= 0 && s < 1e3)) throw InputError(source, "spacing must be three numbers of mm (0: unknown)");
    }
    c.crop = crop_from_json(j, source);
    return c;
  } catch (const json::exception& e) {
    throw InputError(source, std::string("not a readable model card: ") + e.what());
  }
}

void export_model(const fs::path& dir, UNet& net, const ModelCard& card) {
  try {
    write_atomically(dir, [&](const fs::path& temporary) {
      fs::create_directory(temporary);
      torch::save(net, (temporary / "model.pt").string());
      write_file_atomic(temporary / "model.json", card_to_json(card));
    });
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(dir.string(), std::string("cannot export the model: ") + e.what());
  }
}

std::pair<UNet, ModelCard> load_model(const fs::path& dir) {
  std::ifstream in(dir / "model.json");
  if (!in) throw InputError((dir / "model.json").string(), "cannot be read; expected an exported model folder");
  std::stringstream text;
  text << in.rdbuf();
  ModelCard card = card_from_json(text.str(), (dir / "model.json").string());
  UNet net = make_model(card.model, static_cast<std::int64_t>(card.inputs.size()), card.classes.size());
  try {
    torch::load(net, (dir / "model.pt").string(), c10::Device(c10::kCPU));  // saved from any device
  } catch (const std::exception& e) {
    throw InputError((dir / "model.pt").string(), std::string("weights do not load into the network of model.json: ") + e.what());
  }
  net->eval();
  return {net, card};
}

}  // namespace vitruvian::models
