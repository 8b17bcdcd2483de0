// What the oneDNN engine (onednn_unet.cpp) and the oneDNN training ops (onednn_ops.cpp) share:
// the CPU engine and stream, the activations' layout oneDNN picks on this CPU, and the refusal
// of oneDNN's reference kernels. Included only by those two files (it pulls in dnnl.hpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <optional>
#include <string>

namespace vitruvian::models::onednn {

/// The CPU engine (one per process).
const dnnl::engine& cpu_engine();
/// The calling thread's stream on it.
dnnl::stream& cpu_stream();

/// The layout oneDNN picks for the activations of a 32-channel 3×3×3 float32 convolution on
/// this CPU: ndhwc (brgconv, AVX-512), nCdhw16c or nCdhw8c; nullopt when it keeps a plain layout
/// (no vector kernels: nothing to gain). `impl` gets the kernel's name. Probed once.
std::optional<dnnl::memory::format_tag> activation_layout(std::string* impl = nullptr);

/// A float32 weight tensor (contiguous, LibTorch's layout `user` for oneDNN's `dims`) as a
/// primitive wants it: the tensor's own memory when the layouts agree, else a copy reordered on
/// the calling thread's stream (in order before the primitives queued after it).
dnnl::memory weights_as(const at::Tensor& weight, const dnnl::memory::dims& dims, dnnl::memory::format_tag user,
                        const dnnl::memory::desc& want);

/// A convolution's output size along one axis of `in` voxels, LibTorch's way (`padding` before
/// and after, a partial last window dropped), and the padding after that oneDNN must be given
/// for it (`padding_after`, less than `padding` when the last window is dropped).
std::int64_t conv_output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                              std::int64_t dilation, std::int64_t& padding_after);

/// oneDNN's reference kernels are hundreds of times slower than LibTorch's path: throws
/// InternalError naming `what` when `impl` (a primitive's impl_info_str) is one.
void not_reference(const std::string& impl, const char* what);

}  // namespace vitruvian::models::onednn
