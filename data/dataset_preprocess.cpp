// preprocess_dataset: study by study, resample → crop → write; and the crop rule read back.
#include "data/dataset_preprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/errors.h"
#include "data/preprocess.h"

namespace vitruvian::data {

void preprocess_dataset(const VolumeStore& input, const std::filesystem::path& output,
                        const DatasetPreprocessOptions& options) {
  if (options.channels.empty()) throw InputError("preprocess", "no channels given; expected series names");
  if (options.crop_margin < 0) throw InputError("preprocess", "the crop margin must be >= 0 voxels");
  VolumeWriter writer(output, options.storage);
  writer.set_label_table(input.label_table());
  for (const auto& study : input.studies()) {
    const std::string where = fmt::format("{}: study '{}'", input.path().string(), study.id);
    for (const auto& channel : options.channels) {
      if (study.find_series(channel) == nullptr) throw InputError(where, "has no series '" + channel + "'");
    }
    if (!options.label.empty() && study.find_label(options.label) == nullptr) {
      throw InputError(where, "has no label map '" + options.label + "'");
    }
    // The reference grid: the first channel, resampled to the target spacing if one is given.
    Volume reference = input.read_series(study.id, options.channels.front());
    if (reference.voxels.dim() != 3) throw InputError(where, "series '" + options.channels.front() + "' is 4D; expected 3D");
    const Geometry source_geometry = reference.geometry;
    const auto source_shape = reference.shape_zyx();
    if (options.spacing) reference = resample_to_spacing(reference, *options.spacing, Interpolation::kLinear);
    const Geometry grid = reference.geometry;
    const auto shape = reference.shape_zyx();

    std::vector<Volume> channels{reference};
    for (std::size_t c = 1; c < options.channels.size(); ++c) {
      Volume v = input.read_series(study.id, options.channels[c]);
      if (v.voxels.dim() != 3) throw InputError(where, "series '" + options.channels[c] + "' is 4D; expected 3D");
      if (v.shape_zyx() != shape || !v.geometry.matches(grid)) {
        // Outside the source's box: its lowest value (air in CT, background in MR).
        const double fill = v.voxels.min().item<double>();
        v = resample_onto(v, grid, shape, Interpolation::kLinear, fill);
      }
      channels.push_back(std::move(v));
    }
    std::optional<Volume> label;
    if (!options.label.empty()) {
      Volume l = input.read_label(study.id, options.label);
      if (l.shape_zyx() != shape || !l.geometry.matches(grid)) l = resample_onto(l, grid, shape, Interpolation::kNearest, 0.0);
      label = std::move(l);
    }

    nlohmann::json meta = study.metadata_json.empty() ? nlohmann::json::object()
                                                      : nlohmann::json::parse(study.metadata_json, nullptr, false);
    if (!meta.is_object()) meta = nlohmann::json::object();
    meta["preprocessed"] = {{"from", input.path().string()},
                            {"source_shape_zyx", source_shape},
                            {"source_spacing_mm", source_geometry.spacing},
                            {"source_origin_lps_mm", source_geometry.origin},
                            {"channels", options.channels}};
    if (options.crop_to_body) {
      const double threshold = body_threshold(reference);
      const Box box = body_box(reference.voxels, threshold, options.crop_margin);
      for (auto& v : channels) v = crop(v, box);
      if (label) label = crop(*label, box);
      std::array<double, 3> margin_mm{};  // [x, y, z], on the written grid
      for (int a = 0; a < 3; ++a) margin_mm[a] = static_cast<double>(options.crop_margin) * grid.spacing[a];
      meta["preprocessed"]["crop"] = {
          {"rule", "body"}, {"threshold", threshold}, {"margin_voxels", options.crop_margin}, {"margin_mm", margin_mm}};
      meta["preprocessed"]["crop_start_zyx"] = box.start_zyx;
      meta["preprocessed"]["crop_size_zyx"] = box.size_zyx;
    } else {
      meta["preprocessed"]["crop"] = {{"rule", "none"}};
    }
    for (std::size_t c = 0; c < channels.size(); ++c) writer.add_series(study.id, options.channels[c], channels[c], where);
    if (label) writer.add_label(study.id, options.label, options.channels.front(), *label, where);
    writer.set_study_metadata(study.id, meta.dump());
    if (options.on_study) options.on_study(study.id);
  }
  writer.commit();
}

CropRule dataset_crop_rule(const VolumeStore& store, const std::vector<std::string>& studies) {
  CropRule out;
  for (const auto& id : studies) {
    const std::string& text = store.study(id).metadata_json;
    const nlohmann::json meta = text.empty() ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
    const nlohmann::json* crop = nullptr;
    if (meta.is_object() && meta.contains("preprocessed") && meta["preprocessed"].is_object() &&
        meta["preprocessed"].contains("crop") && meta["preprocessed"]["crop"].is_object()) {
      crop = &meta["preprocessed"]["crop"];
    }
    const std::string rule = crop != nullptr ? crop->value("rule", std::string()) : std::string();
    if ((rule != "body" && rule != "none") || (out.known() && rule != out.rule)) return {};
    out.rule = rule;
    if (rule != "body") continue;
    const nlohmann::json margin = crop->value("margin_mm", nlohmann::json());
    if (!margin.is_array() || margin.size() != 3) return {};
    for (const auto& m : margin) {
      if (!m.is_number() || !(m.get<double>() >= 0)) return {};
      out.margin_mm = std::max(out.margin_mm, m.get<double>());
    }
  }
  return out;
}

}  // namespace vitruvian::data
