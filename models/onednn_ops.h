// Convolutions for training on the CPU as oneDNN primitives called directly on channels-last
// tensors: where oneDNN's fast 3D kernels work on channels-last (ndhwc) activations (brgconv,
// AVX-512), a LibTorch tensor in ChannelsLast3d memory format is already in oneDNN's layout, so
// forward, backward-data and backward-weights run without the reorders LibTorch's own
// convolution does around each of them (docs/PERFORMANCE.md). Autograd functions: gradients
// flow, and per-parameter hooks (the bucketed allreduce) fire, as with LibTorch's ops. Each
// thread keeps the primitives of every geometry it has run (a U-Net has a few dozen per input
// shape; training, validation and inference shapes each add theirs).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

namespace vitruvian::models {

/// Whether the ops below run here: this build has oneDNN and oneDNN keeps 3D activations
/// channels-last on this CPU. Otherwise the networks stay on LibTorch's convolutions.
bool onednn_channels_last();

/// What runs float32 CPU convolutions here, for `vitruvian info`: "oneDNN directly ..." with the
/// activations' layout and kernel, or "LibTorch's ops (<why>)".
std::string cpu_convolutions();

/// at::conv3d(x, weight, bias, stride, padding, dilation) with gradients for x, weight and bias
/// (bias may be undefined): x a float32 CPU tensor [N, Cin, D, H, W], taken in (or copied to)
/// channels-last 3D memory format; the result is channels-last. InputError for mismatched
/// shapes; InternalError when onednn_channels_last() is false or oneDNN has only its reference
/// kernel (or none) for this geometry, at once on later calls: callers fall back to LibTorch's op.
at::Tensor onednn_conv3d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const std::array<std::int64_t, 3>& stride, const std::array<std::int64_t, 3>& padding,
                         std::int64_t dilation);

/// at::conv_transpose3d(x, weight, stride = kernel) with gradients for x and weight
/// ([Cin, Cout, kz, ky, kx], no bias), channels-last in and out, as onednn_conv3d.
at::Tensor onednn_conv_transpose3d(const at::Tensor& x, const at::Tensor& weight);

}  // namespace vitruvian::models
