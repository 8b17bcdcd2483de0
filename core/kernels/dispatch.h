// The kernels on tensors: each call checks shapes and types, then runs the CPU implementation
// for CPU tensors and the CUDA one (on the tensor's device and LibTorch's current stream) for
// CUDA tensors. What the pipeline calls.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/kernels/kernels.h"

namespace vitruvian::kernels {

/// The kernels' name for a tensor's dtype; InputError for a type no kernel takes.
Scalar scalar_of(const at::Tensor& t);

/// Adds a batch of windows into an accumulator (kernel 1). logits: float32 [B, K, wz, wy, wx];
/// importance: float32 [wz, wy, wx]; origins: B × 3 values [z, y, x] (host) in the
/// accumulator's grid; values: float32 or float16 [K, D, H, W] and weight: float32 [D, H, W],
/// views with a contiguous x axis and the same spatial strides. All on one device.
void accumulate_windows(const at::Tensor& logits, const at::Tensor& importance, const std::int64_t* origins,
                        const at::Tensor& values, const at::Tensor& weight);

/// Labels [D, H, W] of `label_type` (uint8, uint16 or int32) on the accumulator's device: the
/// class with the largest values / weight per voxel (kernel 4); with `max_prob`, also its
/// softmax probability (float32 [D, H, W]).
at::Tensor softmax_argmax(const at::Tensor& values, const at::Tensor& weight, at::ScalarType label_type,
                          at::Tensor* max_prob = nullptr);

/// (clamp(image, lower, upper) − mean) / std as float32, same shape and device (kernel 2);
/// `image` of any real type (uint8, int16, int32, float32 and float64 read directly).
at::Tensor normalize(const at::Tensor& image, const Normalization& norm);

/// Resamples the 3D `src` into `dst` (contiguous, its shape and type chosen by the caller:
/// float32 when linear, src's type otherwise), same device (kernel 3).
void resample(const at::Tensor& src, const at::Tensor& dst, const IndexMap& map, const Resampling& how);

/// Statistics of labels 0 … n_labels − 1 of `labels` ([z, y, x]; uint8 and int32 read
/// directly, other integer types through int32), with the values of `image` (same shape and
/// device, or null; any real type) (kernel 5). `outside` (if set) gets
/// the number of voxels whose label is outside that range.
std::vector<LabelStats> label_stats(const at::Tensor& labels, const at::Tensor* image, std::int64_t n_labels,
                                    std::int64_t* outside = nullptr);

/// int32 [z, y, x] on the mask's device: 1 + the first voxel's linear index of each voxel's
/// component, 0 for background (kernel 6); `mask` any dtype, non-zero is foreground.
at::Tensor connected_roots(const at::Tensor& mask, int connectivity);

/// What deconvolve_curves() gives per curve, on the curves' device: the kept residue's peak
/// (float32 [n]), its parabola-refined index (float32 [n], 0 … L − 1) and the kept level (int32 [n]).
struct Deconvolved {
  at::Tensor peak, peak_at, components;
};

/// Deconvolves curves (float32 [n, T]) on one basis (kernel 7): analysis float32 [K, T] and
/// synthesis float32 [K, L] on the curves' device, levels (ascending, each in 1 … K) and
/// max_oscillation as in ResidueBasis (≤ 0: the largest level, plain SVD).
Deconvolved deconvolve_curves(const at::Tensor& curves, const at::Tensor& analysis, const at::Tensor& synthesis,
                              const std::vector<std::int32_t>& levels, double max_oscillation);

/// Likelihood-weighted means over a dictionary (kernel 8): scores float32 [n, K], scaled float32
/// [2, K] and plain float32 [K] on one device; float32 [n, 3] on that device (DictionaryValues).
at::Tensor dictionary_means(const at::Tensor& scores, const at::Tensor& scaled, const at::Tensor& plain,
                            double inverse_two_variance);

/// The best mixture's score per row (kernel 9): scores float32 [n, K], share float32 [n], gain
/// and offset float32 [K] on one device; float32 [n] on that device (MixtureValues).
at::Tensor best_mixture_scores(const at::Tensor& scores, const at::Tensor& share, const at::Tensor& gain,
                               const at::Tensor& offset);

}  // namespace vitruvian::kernels
