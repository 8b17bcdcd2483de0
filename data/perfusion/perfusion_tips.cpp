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
  // Neighbours up to 2σ; on pixels finer than σ / 2, every k-th along each axis (k = the
  // largest with k · spacing ≤ σ / 2), a coarser sampling of the same Gaussian weight: the guide
  // is smooth on that scale already, and the cost stays that of about 50 neighbours.
  const double reach_mm = 2 * sigma_mm;
  const auto sy = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(sigma_mm / (2 * spacing_y_mm))));
  const auto sx = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(sigma_mm / (2 * spacing_x_mm))));
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

void TipsFilter::apply(const float* raw, const float* guide, const float* brain, std::int64_t by, std::int64_t bx,
                       std::int64_t frames, const std::vector<std::pair<std::int64_t, std::int64_t>>& members,
                       float* curves) const {
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
      const float* rq = raw + q * frames;
      for (std::int64_t t = 0; t < frames; ++t) sum[static_cast<std::size_t>(t)] += w * rq[t];
      total += w;
    }
    float* out = curves + row * frames;
    for (std::int64_t t = 0; t < frames; ++t) out[t] = sum[static_cast<std::size_t>(t)] / total;
  }
}

}  // namespace vitruvian::data::perfusion
