// The TIPS bilateral filter of concentration curves (perfusion_smoothing.h): plain loops over a
// slice's pixels, their neighbours and the frames.
#include <algorithm>
#include <cmath>
#include <vector>

#include "data/perfusion/perfusion_smoothing.h"

namespace vitruvian::data::perfusion {

namespace {

/// Σ (a − b)² over n values, in eight partial sums (which the compiler vectorises; one running
/// float sum it may not reorder).
float squared_distance(const float* a, const float* b, std::int64_t n) {
  float part[8] = {};
  std::int64_t t = 0;
  for (; t + 8 <= n; t += 8) {
    for (int k = 0; k < 8; ++k) part[k] += (a[t + k] - b[t + k]) * (a[t + k] - b[t + k]);
  }
  float sum = 0;
  for (; t < n; ++t) sum += (a[t] - b[t]) * (a[t] - b[t]);
  for (const float p : part) sum += p;
  return sum;
}

}  // namespace

TipsFilter::TipsFilter(double spacing_x_mm, double spacing_y_mm, double sigma_mm, double similarity,
                       double guide_variance) {
  // Neighbours up to 2σ. On pixels of σ / 4 or finer, cells of k × k pixels (k = ⌊σ / 2 spacing⌋
  // along each axis) at every k-th neighbour: one weight per cell, from the guide at its centre,
  // applied to the sum of its brain pixels' curves. The cells tile the reach, so every curve in
  // it is still pooled; the cost stays that of about 50 weights per voxel.
  const double reach_mm = 2 * sigma_mm;
  const auto sy = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(sigma_mm / (2 * spacing_y_mm))));
  const auto sx = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(sigma_mm / (2 * spacing_x_mm))));
  cell_y_ = sy, cell_x_ = sx;
  const auto ry = static_cast<std::int64_t>(std::floor(reach_mm / spacing_y_mm / sy)) * sy;
  const auto rx = static_cast<std::int64_t>(std::floor(reach_mm / spacing_x_mm / sx)) * sx;
  for (std::int64_t dy = -ry; dy <= ry; dy += sy) {
    for (std::int64_t dx = -rx; dx <= rx; dx += sx) {
      const double r2 = std::pow(dy * spacing_y_mm, 2) + std::pow(dx * spacing_x_mm, 2);
      if (r2 > reach_mm * reach_mm + 1e-9) continue;
      offsets_.push_back({dy, dx, static_cast<float>(std::exp(-r2 / (2 * sigma_mm * sigma_mm)))});
    }
  }
  const double v = std::max(guide_variance, 1e-12);
  noise_floor_ = static_cast<float>(2 * v);
  inv_scale_ = static_cast<float>(1 / (4 * similarity * similarity * v));
}

double TipsFilter::uniform_own_weight() const {
  double total = 0;
  for (const Offset& o : offsets_) total += o.weight;
  return 1 / (total * static_cast<double>(cell_y_ * cell_x_));
}

void TipsFilter::cell_sums(const float* values, std::int64_t by, std::int64_t bx, std::int64_t frames,
                           std::vector<float>& out) const {
  // Prefix sums along x, then along y, each a difference of two prefixes per cell.
  const auto sum_along = [&](const float* in, std::int64_t lines, std::int64_t length, std::int64_t line_stride,
                             std::int64_t step, std::int64_t cell, float* result) {
    std::vector<float> prefix(static_cast<std::size_t>((length + 1) * frames));
    const std::int64_t before = cell / 2;
    for (std::int64_t l = 0; l < lines; ++l) {
      std::fill(prefix.begin(), prefix.begin() + frames, 0.f);
      for (std::int64_t i = 0; i < length; ++i) {
        const float* v = in + (l * line_stride + i * step) * frames;
        for (std::int64_t t = 0; t < frames; ++t)
          prefix[static_cast<std::size_t>((i + 1) * frames + t)] =
              prefix[static_cast<std::size_t>(i * frames + t)] + v[t];
      }
      for (std::int64_t i = 0; i < length; ++i) {
        const std::int64_t lo = std::max<std::int64_t>(0, i - before), hi = std::min(length, i - before + cell);
        float* r = result + (l * line_stride + i * step) * frames;
        for (std::int64_t t = 0; t < frames; ++t)
          r[t] = prefix[static_cast<std::size_t>(hi * frames + t)] - prefix[static_cast<std::size_t>(lo * frames + t)];
      }
    }
  };
  std::vector<float> rows(static_cast<std::size_t>(by * bx * frames));
  out.resize(rows.size());
  sum_along(values, by, bx, bx, 1, cell_x_, rows.data());      // along x, row by row
  sum_along(rows.data(), bx, by, 1, bx, cell_y_, out.data());  // along y, column by column
}

void TipsFilter::filter(const float* raw, const float* guide, const float* brain, std::int64_t by, std::int64_t bx,
                        std::int64_t frames, const std::vector<std::pair<std::int64_t, std::int64_t>>& members,
                        float* curves, float* own, std::vector<float>& cells, std::vector<float>& counts) const {
  if (cell_y_ == 1 && cell_x_ == 1) {  // each pixel its own cell: the sums are the values themselves
    apply(raw, brain, guide, brain, by, bx, frames, members, curves, own);
    return;
  }
  cell_sums(raw, by, bx, frames, cells);
  cell_sums(brain, by, bx, 1, counts);
  apply(cells.data(), counts.data(), guide, brain, by, bx, frames, members, curves, own);
}

void TipsFilter::apply(const float* cells, const float* counts, const float* guide, const float* brain, std::int64_t by,
                       std::int64_t bx, std::int64_t frames,
                       const std::vector<std::pair<std::int64_t, std::int64_t>>& members, float* curves,
                       float* own) const {
  std::vector<float> sum(static_cast<std::size_t>(frames));
  const float per_frame = 1.f / static_cast<float>(frames);
  for (const auto& [row, pixel] : members) {
    const std::int64_t py = pixel / bx, px = pixel % bx;
    const float* gp = guide + pixel * frames;
    std::fill(sum.begin(), sum.end(), 0.f);
    float total = 0;
    for (const Offset& o : offsets_) {
      const std::int64_t qy = py + o.dy, qx = px + o.dx;
      if (qy < 0 || qy >= by || qx < 0 || qx >= bx) continue;
      const std::int64_t q = qy * bx + qx;
      if (brain[q] == 0.f) continue;
      const float* gq = guide + q * frames;
      const float d2 = squared_distance(gp, gq, frames);
      const float w = o.weight * std::exp(-std::max(0.f, d2 * per_frame - noise_floor_) * inv_scale_);
      if (w < 1e-6f) continue;
      const float* rq = cells + q * frames;
      for (std::int64_t t = 0; t < frames; ++t) sum[static_cast<std::size_t>(t)] += w * rq[t];
      total += w * counts[q];
    }
    float* out = curves + row * frames;
    for (std::int64_t t = 0; t < frames; ++t) out[t] = sum[static_cast<std::size_t>(t)] / total;
    own[row] = 1.f / total;
  }
}

}  // namespace vitruvian::data::perfusion
