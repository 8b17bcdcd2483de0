// Slice extraction, square-pixel resampling, windowing and label overlays.
#include "data/preview.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/errors.h"

namespace vitruvian::data {

std::array<std::uint8_t, 3> label_colour(int id) {
  static const std::uint8_t palette[][3] = {
      {230, 25, 75},   {60, 180, 75},   {255, 225, 25}, {0, 130, 200},   {245, 130, 48},  {145, 30, 180},
      {70, 240, 240},  {240, 50, 230},  {210, 245, 60}, {250, 190, 212}, {0, 128, 128},   {220, 190, 255},
      {170, 110, 40},  {255, 250, 200}, {128, 0, 0},    {170, 255, 195}, {128, 128, 0},   {255, 215, 180},
      {0, 0, 128},     {255, 99, 71},   {64, 224, 208}, {218, 165, 32},  {100, 149, 237}, {199, 21, 133}};
  constexpr int n = sizeof palette / sizeof palette[0];
  if (id >= 1 && id <= n) return {palette[id - 1][0], palette[id - 1][1], palette[id - 1][2]};
  // Beyond the hand-picked colours: hues a golden angle apart, two brightness levels.
  const double hue = std::fmod(static_cast<double>(id) * 137.508, 360.0) / 60.0;
  const double value = id % 2 == 0 ? 0.95 : 0.7, saturation = 0.75;
  const double chroma = value * saturation, x = chroma * (1 - std::abs(std::fmod(hue, 2.0) - 1)), m = value - chroma;
  const int sector = static_cast<int>(hue) % 6;
  const double rgb[6][3] = {{chroma, x, 0}, {x, chroma, 0}, {0, chroma, x}, {0, x, chroma}, {x, 0, chroma}, {chroma, 0, x}};
  return {static_cast<std::uint8_t>(std::lround(255 * (rgb[sector][0] + m))),
          static_cast<std::uint8_t>(std::lround(255 * (rgb[sector][1] + m))),
          static_cast<std::uint8_t>(std::lround(255 * (rgb[sector][2] + m)))};
}

Window display_window(const at::Tensor& image, const std::string& modality) {
  if (modality == "CT") return {-250, 450};
  const at::Tensor values = image.to(at::kFloat).contiguous();
  const float* v = values.data_ptr<float>();
  const std::int64_t n = values.numel();
  // The quantiles of a strided sample of the nonzero voxels (every step-th of them, in order),
  // which keeps them cheap on large volumes: one pass counts them, a second takes the sample.
  std::int64_t nonzero = 0;
  for (std::int64_t i = 0; i < n; ++i) nonzero += v[i] != 0.f ? 1 : 0;
  if (nonzero == 0) return {0, 1};
  const std::int64_t step = std::max<std::int64_t>(1, nonzero / 200000);
  std::vector<float> taken;
  taken.reserve(static_cast<std::size_t>((nonzero + step - 1) / step));
  for (std::int64_t i = 0, seen = 0; i < n; ++i) {
    if (v[i] == 0.f) continue;
    if (seen++ % step == 0) taken.push_back(v[i]);
  }
  const at::Tensor sample = at::from_blob(taken.data(), {static_cast<std::int64_t>(taken.size())}, at::kFloat);
  const at::Tensor q = at::quantile(sample, at::tensor({0.01, 0.995}, at::kFloat));  // one sort for both
  const double low = q[0].item<double>(), high = q[1].item<double>();
  return {low, high > low ? high : low + 1};
}

namespace {

/// The 2D plane of a 3D tensor for `axis` (rows, columns), oriented for display, and the
/// spacing along its rows and columns.
at::Tensor plane_of(const at::Tensor& volume, SliceAxis axis, std::int64_t index) {
  switch (axis) {
    case SliceAxis::kAxial:
      return volume.select(0, index);  // rows y (anterior first), columns x (patient right first)
    case SliceAxis::kCoronal:
      return volume.select(1, index).flip({0});  // rows z (superior first), columns x
    case SliceAxis::kSagittal:
      return volume.select(2, index).flip({0});  // rows z (superior first), columns y (anterior first)
  }
  return volume.select(0, index);
}

std::array<double, 2> plane_spacing(const std::array<double, 3>& s, SliceAxis axis) {
  switch (axis) {
    case SliceAxis::kAxial:
      return {s[1], s[0]};
    case SliceAxis::kCoronal:
      return {s[2], s[0]};
    case SliceAxis::kSagittal:
      return {s[2], s[1]};
  }
  return {s[1], s[0]};
}

}  // namespace

RgbImage slice_picture(const at::Tensor& image, const at::Tensor& labels, const std::array<double, 3>& spacing_xyz,
                       SliceAxis axis, std::int64_t index, Window window, double alpha, int min_size) {
  if (image.dim() != 3) throw InputError("preview", "slice pictures need a 3D [z,y,x] volume");
  if (labels.defined() && labels.sizes() != image.sizes()) throw InputError("preview", "label map and image differ in shape");
  const std::int64_t axis_size = image.size(axis == SliceAxis::kAxial ? 0 : axis == SliceAxis::kCoronal ? 1 : 2);
  index = std::clamp<std::int64_t>(index, 0, axis_size - 1);
  const at::Tensor grey = plane_of(image, axis, index).to(at::kFloat).contiguous();
  const at::Tensor ids = labels.defined() ? plane_of(labels, axis, index).to(at::kInt).contiguous() : at::Tensor();
  const std::int64_t rows = grey.size(0), cols = grey.size(1);
  const auto spacing = plane_spacing(spacing_xyz, axis);
  double pixel = std::min(spacing[0], spacing[1]);
  const double short_side = std::min(rows * spacing[0], cols * spacing[1]);
  if (short_side / pixel < min_size) pixel = short_side / min_size;
  const double long_side = std::max(rows * spacing[0], cols * spacing[1]);
  constexpr double kLongest = 2048;  // pixels: very anisotropic grids stay viewable
  if (long_side / pixel > kLongest) pixel = long_side / kLongest;
  const int height = std::max(1, static_cast<int>(std::lround(rows * spacing[0] / pixel)));
  const int width = std::max(1, static_cast<int>(std::lround(cols * spacing[1] / pixel)));

  const float* g = grey.data_ptr<float>();
  const std::int32_t* l = ids.defined() ? ids.data_ptr<std::int32_t>() : nullptr;
  std::vector<std::int64_t> row_of(height), col_of(width);
  for (int y = 0; y < height; ++y) row_of[y] = std::min<std::int64_t>(rows - 1, static_cast<std::int64_t>((y + 0.5) * pixel / spacing[0]));
  for (int x = 0; x < width; ++x) col_of[x] = std::min<std::int64_t>(cols - 1, static_cast<std::int64_t>((x + 0.5) * pixel / spacing[1]));
  auto label_at = [&](int x, int y) { return l == nullptr ? 0 : l[row_of[y] * cols + col_of[x]]; };

  RgbImage picture(width, height);
  const double scale = 255.0 / (window.high - window.low);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double v = std::clamp((g[row_of[y] * cols + col_of[x]] - window.low) * scale, 0.0, 255.0);
      std::uint8_t* p = picture.at(x, y);
      p[0] = p[1] = p[2] = static_cast<std::uint8_t>(v);
      const int id = label_at(x, y);
      if (id == 0) continue;
      const auto c = label_colour(id);
      const bool edge = (x + 1 < width && label_at(x + 1, y) != id) || (y + 1 < height && label_at(x, y + 1) != id) ||
                        (x > 0 && label_at(x - 1, y) != id) || (y > 0 && label_at(x, y - 1) != id);
      const double a = edge ? 1.0 : alpha;
      for (int ch = 0; ch < 3; ++ch) p[ch] = static_cast<std::uint8_t>(std::lround((1 - a) * p[ch] + a * c[ch]));
    }
  }
  return picture;
}

RgbImage tile(const std::vector<std::vector<RgbImage>>& rows, int gap) {
  int width = 0, height = gap;
  for (const auto& row : rows) {
    int w = gap, h = 0;
    for (const auto& picture : row) w += picture.width + gap, h = std::max(h, picture.height);
    width = std::max(width, w);
    height += h + gap;
  }
  RgbImage out(std::max(width, 1), std::max(height, 1), 24);
  int y0 = gap;
  for (const auto& row : rows) {
    int x0 = gap, h = 0;
    for (const auto& picture : row) {
      for (int y = 0; y < picture.height; ++y) {
        std::copy(picture.at(0, y), picture.at(0, y) + 3 * picture.width, out.at(x0, y0 + y));
      }
      x0 += picture.width + gap;
      h = std::max(h, picture.height);
    }
    y0 += h + gap;
  }
  return out;
}

std::array<std::int64_t, 3> label_centre(const at::Tensor& labels, const std::vector<int>& ids) {
  at::Tensor mask = ids.empty() ? labels != 0 : labels == ids.front();
  for (std::size_t n = 1; n < ids.size(); ++n) mask = mask | (labels == ids[n]);
  // One pass over the mask's bytes (no list of voxel indices, no widened copy).
  const at::Tensor m = mask.contiguous();
  const bool* v = m.data_ptr<bool>();
  const std::int64_t ny = m.size(1), nx = m.size(2);
  double count = 0, sz = 0, sy = 0, sx = 0;
  for (std::int64_t i = 0; i < m.numel(); ++i) {
    if (!v[i]) continue;
    count += 1;
    sz += static_cast<double>(i / (ny * nx));
    sy += static_cast<double>((i / nx) % ny);
    sx += static_cast<double>(i % nx);
  }
  if (count == 0) return {labels.size(0) / 2, labels.size(1) / 2, labels.size(2) / 2};
  return {static_cast<std::int64_t>(sz / count), static_cast<std::int64_t>(sy / count), static_cast<std::int64_t>(sx / count)};
}

RgbImage study_picture(const std::vector<std::pair<std::string, Volume>>& series, const at::Tensor& labels,
                       const std::array<std::int64_t, 3>& centre) {
  std::vector<std::vector<RgbImage>> rows;
  for (const auto& [name, volume] : series) {
    at::Tensor image = volume.voxels;
    if (image.dim() == 4) {
      std::int64_t brightest = 0;
      double best = -1e300;
      for (std::int64_t t = 0; t < image.size(0); ++t) {
        const double mean = image.select(0, t).sum(at::kDouble).item<double>();
        if (mean > best) best = mean, brightest = t;
      }
      image = image.select(0, brightest);
    }
    const Window window = display_window(image, volume.modality);
    const auto& s = volume.geometry.spacing;
    rows.push_back({slice_picture(image, at::Tensor(), s, SliceAxis::kAxial, centre[0], window),
                    slice_picture(image, labels, s, SliceAxis::kAxial, centre[0], window),
                    slice_picture(image, labels, s, SliceAxis::kCoronal, centre[1], window),
                    slice_picture(image, labels, s, SliceAxis::kSagittal, centre[2], window)});
  }
  return tile(rows);
}

}  // namespace vitruvian::data
