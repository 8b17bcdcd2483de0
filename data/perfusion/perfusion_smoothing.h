// In-plane Gaussian smoothing of float planes, separable, edges replicated: plain loops that
// vectorise along x (a single-channel convolution through LibTorch is many times slower).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace vitruvian::data::perfusion {

/// Smooths the [ny, nx] plane in place with taps `kx` along x and `ky` along y (odd lengths);
/// `scratch` is reused between calls.
void smooth_plane(float* plane, std::int64_t ny, std::int64_t nx, const std::vector<float>& kx,
                  const std::vector<float>& ky, std::vector<float>& scratch);

/// Edge-preserving filter of one slice's concentration curves by the similarity of their
/// time-intensity profiles (TIPS, Mendrik et al. 2011): each curve becomes the weighted mean of
/// the brain's curves around it, w = exp(−r² / 2σ²) · exp(−max(0, d² − 2v) / 4h²v), where r is
/// the in-plane distance (mm, up to 2σ), d² the mean squared difference of the two voxels' guide
/// curves (smoothed versions, whose noise variance per frame is v) and h the similarity. Curves
/// that differ by no more than the guide's noise are pooled; a bolus that comes later, or peaks
/// lower, by more than that is kept apart, so the lesion's edge is not blurred into healthy tissue.
class TipsFilter {
 public:
  TipsFilter(double spacing_x_mm, double spacing_y_mm, double sigma_mm, double similarity, double guide_variance);
  /// The whole filter on one slice: `raw` (S − baseline, 0 outside the brain) and `guide`
  /// [by · bx, frames], `brain` [by · bx] (0 / 1); cells summed when they are larger than a
  /// pixel (`cells`, `counts`: the caller's scratch), then apply().
  void filter(const float* raw, const float* guide, const float* brain, std::int64_t by, std::int64_t bx,
              std::int64_t frames, const std::vector<std::pair<std::int64_t, std::int64_t>>& members, float* curves,
              float* own, std::vector<float>& cells, std::vector<float>& counts) const;
  /// The weight a pixel's own curve has in its filtered curve where every curve within reach is
  /// brain and alike: 1 over the spatial weights times the cells' pixels.
  double uniform_own_weight() const;
  /// The cells' sizes along y and x (pixels; 1 × 1 unless the pixels are σ / 4 or finer).
  std::int64_t cell_y() const { return cell_y_; }
  std::int64_t cell_x() const { return cell_x_; }
  /// Per pixel, the sum of `values` ([by · bx, frames], pixel-major) over the cell centred there
  /// (rows and columns [i − k/2, i − k/2 + k), clipped to the box), into `out`.
  void cell_sums(const float* values, std::int64_t by, std::int64_t bx, std::int64_t frames,
                 std::vector<float>& out) const;
  /// `cells`: cell_sums() of the raw curves, 0 outside the brain, and `counts` of the brain mask
  /// (frames 1); for 1 × 1 cells the raw curves and the mask themselves. `guide`: [by · bx,
  /// frames]; `brain` [by · bx] (0 / 1): only cells centred on brain pixels are pooled. For each
  /// (row, pixel) of `members`, writes the filtered curve of that pixel into row `row` of
  /// `curves` ([rows, frames]), and into `own[row]` the weight the pixel's own curve has in it
  /// (its cell's weight is 1 and holds no other cell's pixels: 1 over the weights' sum).
  void apply(const float* cells, const float* counts, const float* guide, const float* brain, std::int64_t by,
             std::int64_t bx, std::int64_t frames, const std::vector<std::pair<std::int64_t, std::int64_t>>& members,
             float* curves, float* own) const;

 private:
  struct Offset {
    std::int64_t dy, dx;
    float weight;  ///< the spatial Gaussian
  };
  std::vector<Offset> offsets_;
  std::int64_t cell_y_ = 1, cell_x_ = 1;
  float noise_floor_ = 0;  ///< 2v: d² expected of two curves alike but for noise
  float inv_scale_ = 0;    ///< 1 / 4h²v
};

}  // namespace vitruvian::data::perfusion
