// The band: [K, wz, H, W] accumulator and [wz, H, W] weights covering rows [band_z, band_z + wz),
// on the CPU or the GPU. Windows go in through the window-accumulation kernel; when they move on
// to a start row s, rows below s are final: turned into labels by the softmax-argmax kernel,
// then the band's remaining rows move to its front.
#include "models/stitcher.h"

#include <ATen/ATen.h>

#include "core/errors.h"
#include "core/kernels/dispatch.h"

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
                                 const WindowProgress& progress, const c10::Device& device) {
  const auto& w = options.window;
  WindowPlan plan = plan_windows(image, options);
  if (!device.is_cpu()) {  // windows cut and weighted where the band is
    plan.padded = plan.padded.to(device);
    plan.importance = plan.importance.to(device);
  }
  const auto& size = plan.size;
  const auto& full = plan.full;
  const at::TensorOptions on = at::TensorOptions().device(device);
  const at::ScalarType acc_type = accumulation == Accumulation::kFloat16 ? at::kHalf : at::kFloat;
  at::Tensor band = at::zeros({classes, w[0], full[1], full[2]}, on.dtype(acc_type));
  at::Tensor band_weight = at::zeros({w[0], full[1], full[2]}, on.dtype(at::kFloat));
  const at::ScalarType label_type = classes <= 256 ? at::kByte : at::kInt;
  at::Tensor labels = at::empty({size[0], size[1], size[2]}, on.dtype(label_type));
  std::int64_t band_z = 0;

  // Rows [band_z, until) are final: to labels (the softmax-argmax kernel, cropped to the
  // image); the band moves down to start at `until`.
  const auto emit = [&](std::int64_t until) {
    const std::int64_t rows = until - band_z;
    if (rows <= 0) return;
    const std::int64_t kept = std::min(rows, std::max<std::int64_t>(0, size[0] - band_z));
    if (kept > 0) {
      const at::Tensor values = band.slice(1, 0, kept).slice(2, 0, size[1]).slice(3, 0, size[2]);
      const at::Tensor weight = band_weight.slice(0, 0, kept).slice(1, 0, size[1]).slice(2, 0, size[2]);
      labels.slice(0, band_z, band_z + kept).copy_(kernels::softmax_argmax(values, weight, label_type));
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
      [&](const std::array<std::int64_t, 3>* origins, std::size_t count, const at::Tensor& logits) {
        // Windows come in z order; each run of one start row goes in with the band starting there.
        for (std::size_t first = 0; first < count;) {
          std::size_t last = first + 1;
          while (last < count && origins[last][0] == origins[first][0]) ++last;
          emit(origins[first][0]);  // rows above this start are done
          add_windows(plan, origins + first, last - first,
                      logits.slice(0, static_cast<std::int64_t>(first), static_cast<std::int64_t>(last)), band, band_weight,
                      {band_z, 0, 0});
          first = last;
        }
      },
      [&](std::size_t done) {
        if (progress) progress(static_cast<std::int64_t>(done), total);
      });
  emit(band_z + w[0]);
  return labels.cpu();
}

}  // namespace vitruvian::models
