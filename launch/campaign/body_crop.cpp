// A route's crop rule, the body's box on a reference grid in mm, and labels pasted back onto the
// whole grid.
#include "launch/campaign/body_crop.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace vitruvian::campaign {

CropChoice resolve_crop(const RouteConfig& route, const CropRule& card) {
  CropChoice c;
  if (!route.crop.empty()) {
    c.body = route.crop == "body";
    c.from = "route";
  } else if (card.known()) {
    c.body = card.rule == "body";
    c.from = "model card";
  }
  if (route.crop_margin_mm != kCropMarginFromCard) {
    c.margin_mm = route.crop_margin_mm;
    c.margin_from = "route";
  } else if (card.rule == "body") {
    c.margin_mm = card.margin_mm;
    c.margin_from = "model card";
  }
  return c;
}

bool BodyCrop::whole(const data::Volume& reference) const {
  const auto shape = reference.shape_zyx();
  for (int d = 0; d < 3; ++d) {
    if (box.start_zyx[d] != 0 || box.size_zyx[d] != shape[d]) return false;
  }
  return true;
}

nlohmann::json BodyCrop::to_json() const {
  return {{"mode", "body"},
          {"margin_mm", margin_mm},
          {"start_zyx", box.start_zyx},
          {"size_zyx", box.size_zyx},
          {"fraction", std::round(fraction * 1e4) / 1e4}};
}

BodyCrop body_crop(const data::Volume& reference, double margin_mm, const std::array<std::int64_t, 3>& min_size_zyx) {
  if (!(margin_mm >= 0) || !std::isfinite(margin_mm)) {
    throw InputError("body_crop", fmt::format("margin {} mm; expected a finite value >= 0", margin_mm));
  }
  std::array<std::int64_t, 3> margin_zyx{};
  for (int d = 0; d < 3; ++d) {
    const double spacing = reference.geometry.spacing[2 - d];  // spacing is x, y, z
    margin_zyx[d] = spacing > 0 ? static_cast<std::int64_t>(std::ceil(margin_mm / spacing - 1e-9)) : 0;
  }
  BodyCrop out;
  out.margin_mm = margin_mm;
  out.box = data::body_box(reference.voxels, data::body_threshold(reference), margin_zyx);
  double inside = 1, all = 1;
  const auto shape = reference.shape_zyx();
  for (int d = 0; d < 3; ++d) {
    std::int64_t& start = out.box.start_zyx[d];
    std::int64_t& size = out.box.size_zyx[d];
    const std::int64_t want = std::min(shape[d], min_size_zyx[d]);
    if (size < want) {
      start = std::clamp<std::int64_t>(start - (want - size) / 2, 0, shape[d] - want);
      size = want;
    }
    inside *= static_cast<double>(out.box.size_zyx[d]);
    all *= static_cast<double>(shape[d]);
  }
  out.fraction = inside / all;
  return out;
}

}  // namespace vitruvian::campaign
