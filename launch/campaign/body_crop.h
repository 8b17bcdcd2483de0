// The body crop of a model route: whether it crops (the route's keys, else the model card's
// record), the part of a study's reference grid the network runs on (the body's bounding box,
// data::body_box, grown by a margin in mm), and the labels put back on the whole grid. Wide
// fields of view (air, table, arms around the body) otherwise reach the network as framings it
// never saw in training.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "core/crop_rule.h"
#include "data/preprocess.h"
#include "data/volume.h"
#include "launch/campaign/campaign_config.h"

namespace vitruvian::campaign {

/// The crop a model route applies, and where each part came from.
struct CropChoice {
  bool body = true;
  double margin_mm = kDefaultCropMarginMm;
  std::string from = "default";         ///< the rule's source: "route", "model card" or "default"
  std::string margin_from = "default";  ///< the margin's: "route", "model card" or "default"
};

/// The route's crop and crop_margin_mm where it sets them; else the model card's record
/// (`card`: a body-cropped training set gives "body" with its margin, an uncropped one "none");
/// else "body" with kDefaultCropMarginMm.
CropChoice resolve_crop(const RouteConfig& route, const CropRule& card);

/// Where a study's network input lies on its reference grid.
struct BodyCrop {
  data::Box box;          ///< voxels [z, y, x] of the reference grid
  double fraction = 1.0;  ///< the box's share of the grid's voxels
  double margin_mm = 0;   ///< the margin the body's box was grown by
  bool whole(const data::Volume& reference) const;
  /// {"mode": "body", "margin_mm", "start_zyx", "size_zyx", "fraction"} for the study's report
  /// (the route adds where the rule and margin came from).
  nlohmann::json to_json() const;
};

/// The body's box on `reference` (3D): voxels above data::body_threshold, grown by `margin_mm`
/// (>= 0) rounded up to whole voxels per axis, then about its centre to at least `min_size_zyx`
/// voxels (the network's window: the study's own surroundings rather than the sliding window's
/// zero padding), clamped to the grid; the whole grid when no voxel is above the threshold.
BodyCrop body_crop(const data::Volume& reference, double margin_mm, const std::array<std::int64_t, 3>& min_size_zyx);

}  // namespace vitruvian::campaign
