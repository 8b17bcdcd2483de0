// The pipeline's hot loops on raw memory, with no LibTorch in sight so that nvcc compiles the
// same declarations: window accumulation, fused normalisation, resampling, softmax-argmax,
// per-label statistics, connected components, the deconvolution of perfusion curves and the
// weighted means of a dictionary fit. Each has a plain CPU implementation here
// (the reference) and a CUDA one in core/kernels/kernels_cuda.h; core/kernels/dispatch.h picks
// one for a tensor's device.
#pragma once

#include <cstdint>

namespace vitruvian::kernels {

/// Voxel types a kernel reads or writes.
enum class Scalar { kUInt8, kInt16, kUInt16, kInt32, kFloat32, kFloat64, kFloat16 };

/// "uint8", "float32", ...
const char* scalar_name(Scalar s);

/// A [z, y, x] block of a volume whose x axis is contiguous; element (z, y, x) at
/// z · stride_z + y · stride_y + x.
struct Grid {
  std::int64_t nz = 0, ny = 0, nx = 0;
  std::int64_t stride_z = 0, stride_y = 0;
  /// A contiguous [nz, ny, nx] volume.
  static Grid dense(std::int64_t nz, std::int64_t ny, std::int64_t nx) { return {nz, ny, nx, ny * nx, nx}; }
  std::int64_t voxels() const { return nz * ny * nx; }
  std::int64_t offset(std::int64_t z, std::int64_t y, std::int64_t x) const { return z * stride_z + y * stride_y + x; }
};

/// A class accumulator and its weight map: class k of voxel (z, y, x) at
/// values + k · class_stride + grid.offset(z, y, x) (float32, or IEEE binary16 stored as
/// uint16 when `half`), its weight at weight + grid.offset(z, y, x) (float32).
struct Accumulator {
  void* values = nullptr;
  bool half = false;
  std::int64_t classes = 0;
  std::int64_t class_stride = 0;
  Grid grid;
  float* weight = nullptr;
};

/// A batch of windows' logits: float32 [windows, classes, wz, wy, wx], contiguous; origins
/// (host memory, windows × 3 values [z, y, x]) place each window's first voxel in the
/// accumulator's grid; every window lies inside it.
struct WindowBatch {
  const float* logits = nullptr;
  std::int64_t windows = 0, classes = 0;
  std::int64_t wz = 0, wy = 0, wx = 0;
  const std::int64_t* origins = nullptr;
};

/// 1. acc[k, o + v] += logits[b, k, v] · importance[v] and weight[o + v] += importance[v] for
/// every window b of the batch in order, in one pass over each window (importance: float32
/// [wz, wy, wx]). With fp32 accumulation the sums equal adding the windows one by one.
void accumulate_windows(const WindowBatch& batch, const float* importance, const Accumulator& acc);

/// How normalise() maps a voxel: (clamp(x, lower, upper) − mean) / std, in float32
/// (lower = −inf, upper = +inf: no clipping; std > 0).
struct Normalization {
  double lower = 0, upper = 0, mean = 0, std = 1;
};

/// 2. out[i] = the normalised in[i] for i < n; `in` of any type but kFloat16, `out` float32.
void normalize(const void* in, Scalar type, std::int64_t n, const Normalization& norm, float* out);

/// Output voxel (i, j, k) (x, y, z) reads the source at continuous index a · (i, j, k) + t,
/// computed in double; a row-major 3 × 3.
struct IndexMap {
  double a[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  double t[3] = {0, 0, 0};
};

/// How resample() treats points: trilinear or nearest, and what lies outside the source box.
struct Resampling {
  bool linear = true;         ///< trilinear into float32; else the nearest voxel, same type
  bool fill_outside = false;  ///< points beyond half a voxel outside the source get `fill`; else clamped
  double fill = 0;
};

/// Points this close (in voxels) outside the source's box still count as inside.
inline constexpr double kBoxTolerance = 1e-6;

/// 3. One frame: source [src_zyx] of `type` (not kFloat16) → dst [dst_zyx] (float32 when
/// linear, else `type`), both contiguous. Points between the outermost source centres and the
/// box faces take the edge value.
void resample(const void* src, Scalar type, const std::int64_t src_zyx[3], void* dst, const std::int64_t dst_zyx[3],
              const IndexMap& map, const Resampling& how);

/// 4. Per voxel of acc.grid: the class of the largest acc[k] / weight (the first of equals, NaN
/// above all) into labels (kUInt8, kUInt16 or kInt32, dense [nz, ny, nx]), and when `max_prob`
/// is not null the softmax probability of that class (dense float32), without writing any
/// other probability.
void softmax_argmax(const Accumulator& acc, void* labels, Scalar label_type, float* max_prob);

/// What label_stats() gathers for one label.
struct LabelStats {
  std::int64_t count = 0;
  double index_sum[3] = {0, 0, 0};  ///< of z, y, x: the centroid is index_sum / count
  std::int64_t box_min[3] = {0, 0, 0}, box_max[3] = {0, 0, 0};  ///< inclusive [z, y, x]; count 0: unset
  double sum = 0, sum_sq = 0;       ///< of the image's values (0 without an image)
  double min = 0, max = 0;          ///< of the image's values (count 0 or no image: 0)
};

/// 5. One pass over `labels` (kUInt8, kUInt16 or kInt32, dense `grid`) and, when not null,
/// `image` (same shape, any type but kFloat16): the statistics of labels 0 … n_labels − 1 into
/// out[0 … n_labels − 1]. Returns the number of voxels whose label is outside that range.
std::int64_t label_stats(const void* labels, Scalar label_type, const Grid& grid, const void* image, Scalar image_type,
                         std::int64_t n_labels, LabelStats* out);

/// 6. Connected components of `mask` (uint8, non-zero is foreground, dense `grid`) with
/// `connectivity` 6, 18 or 26: roots[i] = 1 + the smallest linear index of voxel i's component
/// (its first voxel in z-y-x order), 0 for background. The grid holds fewer than 2^31 voxels.
void connected_roots(const std::uint8_t* mask, const Grid& grid, int connectivity, std::int32_t* roots);

/// A deconvolution basis from the SVD of a convolution matrix A = U·S·Vᵀ (perfusion: the
/// arterial input's block-circulant or lower-triangular matrix): component k of a curve c is
/// z_k = Σ_t analysis[k, t] · c[t] (Uᵀ's first `samples` columns divided by s_k), and the
/// residue kept with m components is r_m[l] = Σ_{k<m} z_k · synthesis[k, l] (V's columns).
/// Components are in order of decreasing singular value.
struct ResidueBasis {
  std::int64_t samples = 0;     ///< T: time points of each input curve
  std::int64_t length = 0;      ///< L: points of each residue (2T block-circulant, T plain)
  std::int64_t components = 0;  ///< K ≤ L: components available
  const float* analysis = nullptr;   ///< [K, T], row-major
  const float* synthesis = nullptr;  ///< [K, L], row-major
  /// Component counts the search may stop at, strictly ascending, each in [1, K] (host memory);
  /// the search starts from the last.
  const std::int32_t* levels = nullptr;
  std::int64_t n_levels = 0;
  /// Oscillation-index limit of oSVD: from the largest level down, the first r_m with
  /// OI(r_m) = Σ_{l=2}^{L−1} |r[l] − 2r[l−1] + r[l−2]| / (L · max_l |r[l]|) ≤ max_oscillation
  /// is kept (the smallest level when none is). ≤ 0: the largest level, no search (plain SVD).
  double max_oscillation = 0;
};

/// What deconvolve_curves() gives per curve.
struct ResidueOut {
  float* peak = nullptr;             ///< max_l r[l] of the kept residue
  float* peak_at = nullptr;          ///< its index l, refined by a parabola through l−1, l, l+1 (0 … L−1)
  std::int32_t* components = nullptr;  ///< the kept level m
};

/// 7. Deconvolves `n` curves (float32 [n, T], contiguous) with `basis`: per curve, z from the
/// analysis rows, r from the largest level down the oSVD search, and the kept residue's peak,
/// its parabola-refined position and the level into out[i].
void deconvolve_curves(const float* curves, std::int64_t n, const ResidueBasis& basis, const ResidueOut& out);

/// What dictionary_means() averages (perfusion's model fit): per dictionary entry k, two values
/// that scale with the entry's score and one that does not.
struct DictionaryValues {
  std::int64_t entries = 0;        ///< K ≥ 1
  const float* scaled = nullptr;   ///< [2, K], row-major: × max(score, 0) (CBF and CBF · MTT per unit of score)
  const float* plain = nullptr;    ///< [K]: as it is (the delay)
  float inverse_two_variance = 0;  ///< 1 / (2σ²) > 0: σ² the noise variance of the scores' least-squares fits
};

/// 8. Likelihood-weighted means over a dictionary for `n` rows of scores (float32 [n, K],
/// contiguous; the least-squares fit of entry k improves a row's residual by max(s_k, 0)²): with
/// p_k = max(s_k, 0), b = max_k p_k and w_k = exp((p_k² − b²) · inverse_two_variance),
/// out[3i + j] = Σ_k w_k p_k scaled[j, k] / Σ_k w_k for j = 0, 1 and
/// out[3i + 2] = Σ_k w_k plain[k] / Σ_k w_k. Sums in float over 16 lanes, each block of 1 024
/// entries added in double.
void dictionary_means(const float* scores, std::int64_t n, const DictionaryValues& d, float* out);

/// What best_mixture_scores() combines (perfusion's model fit, its two-compartment mixtures): per
/// dictionary entry k, the gain of its score and the offset that one unit of the row's share of
/// healthy tissue takes from it.
struct MixtureValues {
  std::int64_t entries = 0;       ///< K ≥ 1
  const float* gain = nullptr;    ///< [K]
  const float* offset = nullptr;  ///< [K]
};

/// 9. The best mixture's score for `n` rows of scores (float32 [n, K], contiguous) and their
/// shares (float32 [n]): out[i] = max(0, max_k (scores[i, k] · gain[k] − share[i] · offset[k])),
/// each product rounded once (no fused multiply-add), so the CPU and CUDA give the same bits. A
/// NaN term is passed over (the running maximum keeps its value), as in the CUDA kernel.
void best_mixture_scores(const float* scores, const float* share, std::int64_t n, const MixtureValues& m, float* out);

}  // namespace vitruvian::kernels
