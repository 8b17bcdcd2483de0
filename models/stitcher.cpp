// The band: [K, wz, H, W] accumulator and [wz, H, W] weights covering rows [band_z, band_z + wz).
// When the windows move on to a start row s, rows below s are final: emitted, then the band's
// remaining rows move to its front.
#include "models/stitcher.h"

#include <ATen/ATen.h>

#include "core/errors.h"

namespace vitruvian::models {

const char* accumulation_name(Accumulation a) { return a == Accumulation::kFloat16 ? "fp16" : "fp32"; }

Accumulation accumulation_from_name(const std::string& name, const std::string& key) {
  if (name == "fp32") return Accumulation::kFloat32;
  if (name == "fp16") return Accumulation::kFloat16;
  throw ConfigError(key, "'" + name + "'; expected fp32 or fp16");
}

std::int64_t band_bytes(const std::array<std::int64_t, 3>& shape_zyx, std::int64_t classes,
                        const std::array<std::int64_t, 3>& window, Accumulation accumulation) {
  const std::int64_t rows = std::min(window[0], std::max(shape_zyx[0], window[0]));
  const std::int64_t plane = std::max(shape_zyx[1], window[1]) * std::max(shape_zyx[2], window[2]);
  const std::int64_t element = accumulation == Accumulation::kFloat16 ? 2 : 4;
  return rows * plane * (classes * element + 4);
}

at::Tensor sliding_window_labels(const at::Tensor& image, std::int64_t classes, const WindowForward& forward,
                                 const SlidingWindowOptions& options, Accumulation accumulation,
                                 const WindowProgress& progress) {
  const auto& w = options.window;
  const WindowPlan plan = plan_windows(image, options);
  const auto& size = plan.size;
  const auto& full = plan.full;
  const at::ScalarType acc_type = accumulation == Accumulation::kFloat16 ? at::kHalf : at::kFloat;
  at::Tensor band = at::zeros({classes, w[0], full[1], full[2]}, acc_type);
  at::Tensor band_weight = at::zeros({w[0], full[1], full[2]}, at::kFloat);
  at::Tensor labels = at::empty({size[0], size[1], size[2]}, classes <= 256 ? at::kByte : at::kInt);
  std::int64_t band_z = 0;

  // Rows [band_z, until) are final: to labels; the band moves down to start at `until`. Both in
  // steps of a few rows, so no temporary is as large as the band.
  constexpr std::int64_t kRowsPerStep = 4;
  const auto emit = [&](std::int64_t until) {
    const std::int64_t rows = until - band_z;
    if (rows <= 0) return;
    const std::int64_t kept = std::min(rows, std::max<std::int64_t>(0, size[0] - band_z));
    for (std::int64_t r = 0; r < kept; r += kRowsPerStep) {
      const std::int64_t n = std::min(kRowsPerStep, kept - r);
      const at::Tensor blended = band.slice(1, r, r + n).to(at::kFloat) / band_weight.slice(0, r, r + n);
      labels.slice(0, band_z + r, band_z + r + n)
          .copy_(blended.slice(2, 0, size[1]).slice(3, 0, size[2]).argmax(0).to(labels.scalar_type()));
    }
    // Row by row towards the front: a row never overlaps the one it is copied from.
    for (std::int64_t r = 0; r + rows < w[0]; ++r) {
      band.select(1, r).copy_(band.select(1, r + rows));
      band_weight.select(0, r).copy_(band_weight.select(0, r + rows));
    }
    band.slice(1, std::max<std::int64_t>(0, w[0] - rows), w[0]).zero_();
    band_weight.slice(0, std::max<std::int64_t>(0, w[0] - rows), w[0]).zero_();
    band_z = until;
  };

  const auto total = static_cast<std::int64_t>(plan.origins.size());
  blend_windows(
      plan, classes, forward, options,
      [&](const std::array<std::int64_t, 3>& o, const at::Tensor& weighted) {
        emit(o[0]);  // windows come in z order: rows above this start are done
        const std::int64_t z = o[0] - band_z;
        band.slice(1, z, z + w[0]).slice(2, o[1], o[1] + w[1]).slice(3, o[2], o[2] + w[2]).add_(weighted.to(acc_type));
        band_weight.slice(0, z, z + w[0]).slice(1, o[1], o[1] + w[1]).slice(2, o[2], o[2] + w[2]).add_(plan.importance);
      },
      [&](std::size_t done) {
        if (progress) progress(static_cast<std::int64_t>(done), total);
      });
  emit(band_z + w[0]);
  return labels;
}

}  // namespace vitruvian::models
