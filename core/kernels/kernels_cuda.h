// The CUDA implementations of core/kernels/kernels.h (built with the CUDA side only). Same
// arguments, with device pointers (a batch's window origins and label_stats()'s results stay on
// the host) and the stream to run on; each call is asynchronous except label_stats(), which
// waits for its own small result. Numerics: window accumulation, normalisation, resampling and
// labels and the deconvolution of curves are bit for bit those of the CPU implementations (no
// fused multiply-adds where the CPU rounds twice); probabilities differ in the last bits (expf);
// statistics' sums by summation order.
// Volumes (and windows) may have at most 65535 slices along z and rows along y (InputError).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/kernels/kernels.h"

namespace vitruvian::kernels::cuda {

/// CUDA devices the runtime sees; 0 without a driver or a device (never throws).
int device_count();

void accumulate_windows(const WindowBatch& batch, const float* importance, const Accumulator& acc, void* stream);
void normalize(const void* in, Scalar type, std::int64_t n, const Normalization& norm, float* out, void* stream);
void resample(const void* src, Scalar type, const std::int64_t src_zyx[3], void* dst, const std::int64_t dst_zyx[3],
              const IndexMap& map, const Resampling& how, void* stream);
void softmax_argmax(const Accumulator& acc, void* labels, Scalar label_type, float* max_prob, void* stream);
/// Device scratch memory label_stats() needs for `n_labels` labels.
std::size_t label_stats_workspace_bytes(std::int64_t n_labels);
/// `workspace`: device memory of label_stats_workspace_bytes(n_labels) (e.g. from LibTorch's
/// caching allocator, which may hold most of the device), or null to allocate it stream-ordered.
std::int64_t label_stats(const void* labels, Scalar label_type, const Grid& grid, const void* image, Scalar image_type,
                         std::int64_t n_labels, LabelStats* out, void* stream, void* workspace = nullptr);
void connected_roots(const std::uint8_t* mask, const Grid& grid, int connectivity, std::int32_t* roots, void* stream);
/// Device scratch memory deconvolve_curves() needs for n curves on `basis` (levels read).
std::size_t deconvolve_workspace_bytes(std::int64_t n, const ResidueBasis& basis);
/// basis.analysis, basis.synthesis, curves and out on the device; basis.levels on the host.
/// `workspace`: device memory of deconvolve_workspace_bytes(n, basis), or null to allocate it
/// stream-ordered.
void deconvolve_curves(const float* curves, std::int64_t n, const ResidueBasis& basis, const ResidueOut& out, void* stream,
                       void* workspace = nullptr);
/// scores, dictionary.scaled, dictionary.plain and out on the device.
void dictionary_means(const float* scores, std::int64_t n, const DictionaryValues& dictionary, float* out, void* stream);
/// scores, share, mixture.gain, mixture.offset and out on the device.
void best_mixture_scores(const float* scores, const float* share, std::int64_t n, const MixtureValues& mixture,
                         float* out, void* stream);

}  // namespace vitruvian::kernels::cuda
