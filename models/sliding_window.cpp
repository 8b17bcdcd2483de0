// Windows in z-y-x order, batched; each batch's logits times the importance map are added to
// the accumulator and the map to the weight volume by the window-accumulation kernel; the
// result is their ratio.
#include "models/sliding_window.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "core/errors.h"
#include "core/kernels/dispatch.h"

namespace vitruvian::models {

std::vector<std::int64_t> window_starts(std::int64_t size, std::int64_t window, double overlap) {
  if (size <= window) return {0};
  const double step = static_cast<double>(window) * (1.0 - overlap);
  const auto steps = static_cast<std::int64_t>(std::ceil(static_cast<double>(size - window) / step)) + 1;
  std::vector<std::int64_t> starts;
  const double spacing = static_cast<double>(size - window) / static_cast<double>(steps - 1);
  for (std::int64_t i = 0; i < steps; ++i) starts.push_back(static_cast<std::int64_t>(std::llround(spacing * i)));
  return starts;
}

at::Tensor gaussian_importance(const std::array<std::int64_t, 3>& window, double sigma_scale) {
  std::vector<at::Tensor> axes;
  for (int axis = 0; axis < 3; ++axis) {
    const double sigma = std::max(sigma_scale * static_cast<double>(window[axis]), 1e-6);
    const at::Tensor x = at::arange(window[axis], at::kDouble) - (static_cast<double>(window[axis]) - 1) / 2;
    axes.push_back(at::exp(-x * x / (2 * sigma * sigma)));
  }
  at::Tensor map = axes[0].view({-1, 1, 1}) * axes[1].view({1, -1, 1}) * axes[2].view({1, 1, -1});
  map = map / map.max();
  return map.clamp_min(1e-3).to(at::kFloat);
}

namespace {

void check_window_input(const at::Tensor& image, const SlidingWindowOptions& options) {
  if (image.dim() != 4) {
    throw InputError("sliding window", fmt::format("image of shape {}; expected [C, D, H, W]", fmt::join(image.sizes(), "x")));
  }
  if (!(options.overlap >= 0 && options.overlap < 1) || options.batch < 1) {
    throw ConfigError("sliding window", fmt::format("overlap {} and batch {}; expected overlap in [0, 1) and batch >= 1",
                                                    options.overlap, options.batch));
  }
}

at::Tensor pad_to_window(const at::Tensor& image, const std::array<std::int64_t, 3>& window) {
  std::vector<std::int64_t> pad;
  bool none = true;
  for (int axis = 2; axis >= 0; --axis) {
    pad.push_back(0);
    pad.push_back(std::max<std::int64_t>(0, window[axis] - image.size(axis + 1)));
    none = none && pad.back() == 0;
  }
  if (none) return image.to(at::kFloat).contiguous();  // no copy of a float volume that fits
  return at::constant_pad_nd(image.to(at::kFloat), pad, 0).contiguous();
}

std::vector<std::array<std::int64_t, 3>> window_origins(const std::array<std::int64_t, 3>& size,
                                                        const SlidingWindowOptions& options) {
  const auto& w = options.window;
  std::vector<std::array<std::int64_t, 3>> origins;
  for (const auto z : window_starts(size[0], w[0], options.overlap))
    for (const auto y : window_starts(size[1], w[1], options.overlap))
      for (const auto x : window_starts(size[2], w[2], options.overlap)) origins.push_back({z, y, x});
  return origins;
}

/// The windows at origins [first, last) stacked, run once per mirror flip, averaged.
at::Tensor window_batch_logits(const at::Tensor& padded, const std::vector<std::array<std::int64_t, 3>>& origins,
                               std::size_t first, std::size_t last, std::int64_t classes, const WindowForward& forward,
                               const SlidingWindowOptions& options) {
  const auto& w = options.window;
  std::vector<at::Tensor> windows;
  for (std::size_t i = first; i < last; ++i) {
    const auto& o = origins[i];
    windows.push_back(padded.slice(1, o[0], o[0] + w[0]).slice(2, o[1], o[1] + w[1]).slice(3, o[2], o[2] + w[2]));
  }
  const at::Tensor batch = at::stack(windows);
  // Mirror combinations: every subset of the allowed axes (dims 2, 3, 4 of a window batch).
  at::Tensor out;
  int flips = 0;
  for (int combo = 0; combo < 8; ++combo) {
    if ((combo & ~options.mirror_axes) != 0) continue;
    std::vector<std::int64_t> dims;
    for (int axis = 0; axis < 3; ++axis) {
      if (combo & (1 << axis)) dims.push_back(2 + axis);
    }
    at::Tensor y = dims.empty() ? forward(batch) : forward(batch.flip(dims)).flip(dims);
    y = y.to(at::kFloat);
    out = out.defined() ? out + y : y;
    ++flips;
  }
  if (out.dim() != 5 || out.size(1) != classes) {
    throw InputError("sliding window", fmt::format("the network gave an output of shape {}; expected {} classes",
                                                   fmt::join(out.sizes(), "x"), classes));
  }
  return flips == 1 ? out : out / static_cast<double>(flips);
}

}  // namespace

WindowPlan plan_windows(const at::Tensor& image, const SlidingWindowOptions& options) {
  check_window_input(image, options);
  WindowPlan plan;
  plan.size = {image.size(1), image.size(2), image.size(3)};
  plan.padded = pad_to_window(image, options.window);
  plan.full = {plan.padded.size(1), plan.padded.size(2), plan.padded.size(3)};
  plan.importance = gaussian_importance(options.window, options.sigma_scale);
  plan.origins = window_origins(plan.full, options);
  return plan;
}

void blend_windows(const WindowPlan& plan, std::int64_t classes, const WindowForward& forward,
                   const SlidingWindowOptions& options, const WindowBatchAdd& add, const std::function<void(std::size_t)>& batch_done) {
  const auto& origins = plan.origins;
  for (std::size_t first = 0; first < origins.size(); first += static_cast<std::size_t>(options.batch)) {
    const std::size_t last = std::min(origins.size(), first + static_cast<std::size_t>(options.batch));
    const at::Tensor out = window_batch_logits(plan.padded, origins, first, last, classes, forward, options);
    add(origins.data() + first, last - first, out);
    if (batch_done) batch_done(last);
  }
}

void add_windows(const WindowPlan& plan, const std::array<std::int64_t, 3>* origins, std::size_t count,
                 const at::Tensor& logits, const at::Tensor& values, const at::Tensor& weight,
                 const std::array<std::int64_t, 3>& shift) {
  std::vector<std::int64_t> flat;
  flat.reserve(3 * count);
  for (std::size_t i = 0; i < count; ++i) {
    for (int a = 0; a < 3; ++a) flat.push_back(origins[i][a] - shift[a]);
  }
  // Both already on the accumulator's device in the stitcher (.to() then returns them as they are).
  kernels::accumulate_windows(logits.to(values.device()), plan.importance.to(values.device()), flat.data(), values, weight);
}

at::Tensor sliding_window_logits(const at::Tensor& image, std::int64_t classes, const WindowForward& forward,
                                 const SlidingWindowOptions& options) {
  const WindowPlan plan = plan_windows(image, options);
  const auto& full = plan.full;
  at::Tensor logits = at::zeros({classes, full[0], full[1], full[2]}, at::kFloat);
  at::Tensor weight = at::zeros({full[0], full[1], full[2]}, at::kFloat);
  blend_windows(plan, classes, forward, options,
                [&](const std::array<std::int64_t, 3>* origins, std::size_t count, const at::Tensor& batch) {
                  add_windows(plan, origins, count, batch, logits, weight);
                });
  logits.div_(weight);
  return logits.slice(1, 0, plan.size[0]).slice(2, 0, plan.size[1]).slice(3, 0, plan.size[2]).contiguous();
}

}  // namespace vitruvian::models
