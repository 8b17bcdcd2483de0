// Offline preprocessing of a dataset for one task (nnU-Net's way): the channel series of each
// study resampled to a target spacing and onto the first channel's grid, the label map onto the
// same grid (nearest), optionally cropped to the body; written as a new dataset that the loader
// reads patch by patch. Intensities keep their units; normalisation happens in the loader.
#pragma once

#include <array>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/crop_rule.h"
#include "data/volume_store.h"

namespace vitruvian::data {

struct DatasetPreprocessOptions {
  std::vector<std::string> channels;  ///< series names; the first is the reference grid
  std::string label;                  ///< label map name ("" for none: inference datasets)
  /// Target spacing (mm along x, y, z); unset keeps the reference series' spacing.
  std::optional<std::array<double, 3>> spacing;
  /// Crop every study to the box of the reference channel's voxels above the threshold (CT:
  /// -500 HU; otherwise its minimum, i.e. the non-background region), plus a margin.
  bool crop_to_body = false;
  std::int64_t crop_margin = 2;
  StorageOptions storage;
  std::function<void(const std::string& study)> on_study;
};

/// Writes the preprocessed dataset to `output` (atomically). Each study's metadata records its
/// source grid, the crop rule (`preprocessed.crop`: {"rule": "body", "threshold", "margin_voxels",
/// "margin_mm" [x, y, z]} or {"rule": "none"}) and the crop box. Throws InputError naming the
/// study for a missing series or label.
void preprocess_dataset(const VolumeStore& input, const std::filesystem::path& output,
                        const DatasetPreprocessOptions& options);

/// How `studies` of `store` were cropped, from their `preprocessed.crop` records: "body" with
/// the largest margin (mm, over axes and studies) when every study was cut to its body, "none"
/// when none was, unknown when a study has no record or the studies disagree.
CropRule dataset_crop_rule(const VolumeStore& store, const std::vector<std::string>& studies);

}  // namespace vitruvian::data
