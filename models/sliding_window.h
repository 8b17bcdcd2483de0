// Sliding-window inference over a whole volume: overlapping windows batched through a network,
// logits blended with Gaussian importance weights, optional mirror test-time augmentation.
// Shared by training-time validation and inference campaigns.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

namespace vitruvian::models {

struct SlidingWindowOptions {
  std::array<std::int64_t, 3> window{64, 64, 64};  ///< [z, y, x]
  double overlap = 0.5;                              ///< fraction of the window shared by neighbours, [0, 1)
  std::int64_t batch = 2;                            ///< windows per forward call
  double sigma_scale = 1.0 / 8;                      ///< Gaussian σ as a fraction of the window
  /// Mirror test-time augmentation: axes (bit 0 z, bit 1 y, bit 2 x) whose flips are averaged
  /// in, every combination (7: all 8 flips); 0: none.
  int mirror_axes = 0;
};

/// Window start offsets along an axis of `size` voxels: evenly spaced from 0 to size − window,
/// no further apart than window · (1 − overlap). One start (0) when size ≤ window.
std::vector<std::int64_t> window_starts(std::int64_t size, std::int64_t window, double overlap);

/// The window's importance map [wz, wy, wx] (float32): a Gaussian centred on the window, σ =
/// sigma_scale · window per axis, scaled to a maximum of 1, with no value below 1e-3 (its edges
/// still count where only one window covers a voxel).
at::Tensor gaussian_importance(const std::array<std::int64_t, 3>& window, double sigma_scale);

/// Logits for a batch of windows [B, C, wz, wy, wx] → [B, K, wz, wy, wx].
using WindowForward = std::function<at::Tensor(const at::Tensor&)>;

/// What every sliding-window pass over an image starts from.
struct WindowPlan {
  std::array<std::int64_t, 3> size{};  ///< the image's [D, H, W]
  at::Tensor padded;                   ///< float32, zero-padded (the normalised mean) up to a window per axis
  std::array<std::int64_t, 3> full{};  ///< the padded [D, H, W]
  at::Tensor importance;               ///< gaussian_importance(window, sigma_scale)
  std::vector<std::array<std::int64_t, 3>> origins;  ///< every window's first voxel, in z-y-x order
};
/// Throws InputError unless `image` is [C, D, H, W], ConfigError for an overlap outside [0, 1)
/// or a batch below 1. The padded image is `image` itself, not a copy, when it is float32,
/// contiguous and at least a window on every axis.
WindowPlan plan_windows(const at::Tensor& image, const SlidingWindowOptions& options);

/// A batch of windows: `count` first voxels [z, y, x] in the padded image (z-y-x order) and
/// their logits, float32 [count, classes, wz, wy, wx] on the network's device, averaged over
/// mirror flips and not yet weighted (kernels::accumulate_windows weights them as it adds).
using WindowBatchAdd = std::function<void(const std::array<std::int64_t, 3>* origins, std::size_t count, const at::Tensor& logits)>;

/// Runs `forward` over the windows of `plan` in batches of options.batch, each batch once per
/// mirror flip of options.mirror_axes (averaged), and hands every batch to `add` in z-y-x
/// order; `batch_done` (if set) gets the number of windows done after each batch. InputError
/// when the network gives another number of channels than `classes`.
void blend_windows(const WindowPlan& plan, std::int64_t classes, const WindowForward& forward,
                   const SlidingWindowOptions& options, const WindowBatchAdd& add,
                   const std::function<void(std::size_t)>& batch_done = {});

/// Adds `count` windows' logits (as handed to a WindowBatchAdd, on any device) into `values`
/// [K, D, H, W] and `weight` [D, H, W] (views, x contiguous), with the plan's importance map;
/// origins are shifted by `shift` ([z, y, x], subtracted) into the accumulator's grid.
void add_windows(const WindowPlan& plan, const std::array<std::int64_t, 3>* origins, std::size_t count,
                 const at::Tensor& logits, const at::Tensor& values, const at::Tensor& weight,
                 const std::array<std::int64_t, 3>& shift = {0, 0, 0});

/// Runs `forward` over `image` [C, D, H, W] and returns the blended logits [K, D, H, W]
/// (float32). Volumes smaller than the window are padded with zeros and cropped back.
at::Tensor sliding_window_logits(const at::Tensor& image, std::int64_t classes, const WindowForward& forward,
                                 const SlidingWindowOptions& options);

}  // namespace vitruvian::models
