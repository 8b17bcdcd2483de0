// Perfusion pictures: axial slices at square pixels (nearest voxel), radiological orientation as
// data/preview.h draws them, coloured by value or overlaid with the tissue classes.
#include "data/perfusion/perfusion_pictures.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/errors.h"
#include "data/preview.h"

namespace vitruvian::data {

namespace {

constexpr int kMinSize = 160;  // pixels on a slice's short side

/// An axial slice of [z, y, x] `values` (float32) drawn with `colour(value)` per pixel.
RgbImage axial(const at::Tensor& values, const std::array<double, 3>& spacing, std::int64_t z,
               const std::function<std::array<std::uint8_t, 3>(float, std::int64_t)>& colour) {
  const at::Tensor plane = values[z].to(at::kFloat).contiguous();
  const std::int64_t rows = plane.size(0), cols = plane.size(1);
  double pixel = std::min(spacing[0], spacing[1]);
  const double short_side = std::min(rows * spacing[1], cols * spacing[0]);
  if (short_side / pixel < kMinSize) pixel = short_side / kMinSize;
  const int height = std::max(1, static_cast<int>(std::lround(rows * spacing[1] / pixel)));
  const int width = std::max(1, static_cast<int>(std::lround(cols * spacing[0] / pixel)));
  const float* v = plane.data_ptr<float>();
  RgbImage out(width, height);
  for (int y = 0; y < height; ++y) {
    const auto row = std::min<std::int64_t>(rows - 1, static_cast<std::int64_t>((y + 0.5) * pixel / spacing[1]));
    for (int x = 0; x < width; ++x) {
      const auto col = std::min<std::int64_t>(cols - 1, static_cast<std::int64_t>((x + 0.5) * pixel / spacing[0]));
      const auto c = colour(v[row * cols + col], row * cols + col);
      std::copy(c.begin(), c.end(), out.at(x, y));
    }
  }
  return out;
}

std::array<std::uint8_t, 3> blend(std::array<std::uint8_t, 3> under, const std::array<std::uint8_t, 3>& over,
                                  double alpha) {
  for (int c = 0; c < 3; ++c)
    under[c] = static_cast<std::uint8_t>(std::lround((1 - alpha) * under[c] + alpha * over[c]));
  return under;
}

}  // namespace

const std::vector<MapStyle>& perfusion_map_styles() {
  static const std::vector<MapStyle> styles{{"cbf", "CBF", "mL/100 g/min", 0, 80},
                                            {"cbv", "CBV", "mL/100 g", 0, 8},
                                            {"mtt", "MTT", "s", 0, 16},
                                            {"tmax", "Tmax", "s", 0, 14}};
  return styles;
}

std::array<std::uint8_t, 3> map_colour(double fraction) {
  static constexpr double kStops[6][3] = {{0, 0, 90},    {0, 60, 255},  {0, 220, 255},
                                          {40, 220, 40}, {255, 230, 0}, {230, 20, 0}};
  const double f = std::clamp(fraction, 0.0, 1.0) * 5;
  const int i = std::min(4, static_cast<int>(f));
  const double t = f - i;
  std::array<std::uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k)
    c[k] = static_cast<std::uint8_t>(std::lround((1 - t) * kStops[i][k] + t * kStops[i + 1][k]));
  return c;
}

std::vector<std::int64_t> perfusion_slices(const at::Tensor& map, int count) {
  const at::Tensor any = map.ne(0).flatten(1).any(1).nonzero().squeeze(1);
  if (any.numel() == 0 || count < 1) return {map.size(0) / 2};
  const std::int64_t first = any[0].item<std::int64_t>(), last = any[-1].item<std::int64_t>();
  std::vector<std::int64_t> slices;
  for (int k = 0; k < count; ++k) {
    const auto z = static_cast<std::int64_t>(std::lround(first + (last - first) * (k + 0.5) / count));
    if (slices.empty() || slices.back() != z) slices.push_back(z);
  }
  return slices;
}

RgbImage perfusion_summary_picture(const Volume& cbf, const Volume& tissue, const std::vector<std::int64_t>& slices) {
  const MapStyle& style = perfusion_map_styles().front();
  std::vector<RgbImage> row;
  for (const std::int64_t z : slices) {
    const at::Tensor classes = tissue.voxels[z].to(at::kInt).contiguous();
    const std::int32_t* cls = classes.data_ptr<std::int32_t>();
    row.push_back(axial(cbf.voxels, cbf.geometry.spacing, z, [&](float v, std::int64_t i) {
      const auto g = static_cast<std::uint8_t>(
          std::lround(std::clamp((v - style.low) / (style.high - style.low), 0.0, 1.0) * 255));
      const std::array<std::uint8_t, 3> grey{g, g, g};
      if (cls[i] == 1) return blend(grey, kCoreColour, 0.75);
      if (cls[i] == 2) return blend(grey, kHypoperfusedColour, 0.6);
      return grey;
    }));
  }
  return tile({row});
}

RgbImage colour_bar(int width, int height) {
  RgbImage bar(width, height);
  for (int y = 0; y < height; ++y) {
    const auto c = map_colour(1.0 - (y + 0.5) / height);
    for (int x = 0; x < width; ++x) std::copy(c.begin(), c.end(), bar.at(x, y));
  }
  return bar;
}

RgbImage perfusion_maps_picture(const std::vector<const Volume*>& maps, const std::vector<std::int64_t>& slices) {
  const auto& styles = perfusion_map_styles();
  if (maps.size() != styles.size()) throw InternalError("perfusion pictures", "one map per style expected");
  std::vector<std::vector<RgbImage>> rows;
  for (std::size_t m = 0; m < maps.size(); ++m) {
    const MapStyle& s = styles[m];
    std::vector<RgbImage> row;
    for (const std::int64_t z : slices) {
      row.push_back(axial(maps[m]->voxels, maps[m]->geometry.spacing, z, [&](float v, std::int64_t) {
        return v == 0 ? std::array<std::uint8_t, 3>{0, 0, 0} : map_colour((v - s.low) / (s.high - s.low));
      }));
    }
    row.push_back(colour_bar(16, row.front().height));
    rows.push_back(std::move(row));
  }
  return tile(rows);
}

}  // namespace vitruvian::data
