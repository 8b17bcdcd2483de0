// Training patches from one (image, label) case: uniform random patches, or patches forced to
// contain a chosen foreground class (class-balanced, as nnU-Net oversamples foreground), padded
// where they reach outside the volume; plus the per-draw choice of which draws to force.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace vitruvian::data {

/// Options of a PatchSampler (fluent setters, checked by the PatchSampler constructor).
class PatchSamplerOptions {
 public:
  /// `patch_size`: [z, y, x] in voxels, each >= 1.
  explicit PatchSamplerOptions(std::array<std::int64_t, 3> patch_size) : patch_size_(patch_size) {}

  /// Patch size [z, y, x] in voxels, each >= 1.
  PatchSamplerOptions& patch_size(std::array<std::int64_t, 3> value) {
    patch_size_ = value;
    return *this;
  }
  const std::array<std::int64_t, 3>& patch_size() const noexcept { return patch_size_; }

  /// Fraction of draws, in [0, 1], forced to contain foreground (used by sample(rng) and by
  /// callers passing it to forced_in_batch). Default 0.33, nnU-Net's.
  PatchSamplerOptions& foreground_fraction(double value) {
    foreground_fraction_ = value;
    return *this;
  }
  double foreground_fraction() const noexcept { return foreground_fraction_; }

  /// Image intensity written where a patch lies outside the volume (finite). Default 0.
  PatchSamplerOptions& image_pad_value(double value) {
    image_pad_value_ = value;
    return *this;
  }
  double image_pad_value() const noexcept { return image_pad_value_; }

  /// Label written where a patch lies outside the volume (e.g. an ignore label). Default 0.
  PatchSamplerOptions& label_pad_value(std::int64_t value) {
    label_pad_value_ = value;
    return *this;
  }
  std::int64_t label_pad_value() const noexcept { return label_pad_value_; }

 private:
  std::array<std::int64_t, 3> patch_size_;
  double foreground_fraction_ = 0.33;
  double image_pad_value_ = 0.0;
  std::int64_t label_pad_value_ = 0;
};

/// One training patch (new tensors, owned by the caller).
struct Patch {
  at::Tensor image;  ///< [C, pz, py, px] float32
  at::Tensor label;  ///< [pz, py, px] int64
  /// Volume index [z, y, x] of the patch's voxel (0, 0, 0); negative or past the end where the
  /// patch reaches outside the volume.
  std::array<std::int64_t, 3> origin{0, 0, 0};
  /// The class the patch was forced to contain, or 0 for a random draw (also a forced draw on a
  /// case without foreground, which falls back to a random patch).
  std::int64_t forced_class = 0;
};

/// Draws patches from one case. Built once per case: the constructor lists the voxels of every
/// foreground class present (8 bytes per foreground voxel); sampling then costs one patch copy.
/// Valid patch origins along an axis of D voxels for a patch of P are [min(0, D−P), max(0, D−P)]:
/// inside the volume when it is at least as large as the patch, and covering it whole otherwise
/// (the rest padded). Read-only after construction: one sampler may serve several threads, each
/// with its own rng.
class PatchSampler {
 public:
  /// `image`: [C, z, y, x] float32 CPU; `label`: [z, y, x] uint8, int32 or int64 CPU, same
  /// spatial size; classes are the label values > 0. Both are kept by reference (not copied,
  /// unless not contiguous). Throws InputError naming the bad shape, dtype or option value.
  PatchSampler(at::Tensor image, at::Tensor label, PatchSamplerOptions options);

  /// force_foreground: picks a class uniformly among classes(), then one of its voxels
  /// uniformly, then an origin uniformly among the valid origins whose patch contains that
  /// voxel. Otherwise: an origin uniform over all valid origins. A forced draw on a case
  /// without foreground is a random draw (forced_class 0).
  Patch sample(std::mt19937_64& rng, bool force_foreground) const;
  /// Forces with probability options().foreground_fraction() (force_draw).
  Patch sample(std::mt19937_64& rng) const;
  /// The patch at `origin` [z, y, x] (any value; outside parts padded), forced_class 0.
  Patch extract(const std::array<std::int64_t, 3>& origin) const;

  /// Foreground classes present, ascending.
  const std::vector<std::int64_t>& classes() const noexcept { return classes_; }
  /// Number of voxels of `label_value` (0 for a class not present or for background).
  std::int64_t class_voxels(std::int64_t label_value) const;
  /// Spatial size [z, y, x] of the case.
  const std::array<std::int64_t, 3>& volume_shape() const noexcept { return shape_; }
  const PatchSamplerOptions& options() const noexcept { return options_; }

 private:
  at::Tensor image_, label_;
  PatchSamplerOptions options_;
  std::array<std::int64_t, 3> shape_{0, 0, 0};
  std::vector<std::int64_t> classes_;
  std::vector<at::Tensor> class_voxels_;  ///< per class: flat voxel indices, int64 [n]
};

/// An origin uniform over the valid origins of a `patch` in a `volume` (both [z, y, x]; see
/// PatchSampler for the valid range), as PatchSampler's random draws use.
std::array<std::int64_t, 3> random_patch_origin(std::mt19937_64& rng, const std::array<std::int64_t, 3>& volume,
                                                const std::array<std::int64_t, 3>& patch);

/// An origin uniform over the valid origins whose patch contains `voxel` (inside the volume),
/// as PatchSampler's forced draws use.
std::array<std::int64_t, 3> patch_origin_containing(std::mt19937_64& rng, const std::array<std::int64_t, 3>& volume,
                                                    const std::array<std::int64_t, 3>& patch,
                                                    const std::array<std::int64_t, 3>& voxel);

/// The part of a patch inside its volume: the box [volume_start, volume_start + size) of the
/// volume, which lands at patch_start in the patch. All [z, y, x].
struct PatchOverlap {
  std::array<std::int64_t, 3> volume_start{0, 0, 0}, size{0, 0, 0}, patch_start{0, 0, 0};
};

/// The overlap of the `patch` at `origin` with a `volume`; nullopt when the patch lies wholly
/// outside it (all padding).
std::optional<PatchOverlap> patch_overlap(const std::array<std::int64_t, 3>& volume,
                                          const std::array<std::int64_t, 3>& patch,
                                          const std::array<std::int64_t, 3>& origin);

/// A view of the box [start, start + size) of `t`'s last three dimensions.
at::Tensor box_view(const at::Tensor& t, const std::array<std::int64_t, 3>& start, const std::array<std::int64_t, 3>& size);

/// How forced_in_batch turns batch_size × fraction into a count.
enum class BatchRounding {
  /// floor(B·f), plus one more with probability frac(B·f): the expected forced fraction is
  /// exactly f for every B (B = 1 is a Bernoulli(f) draw).
  kStochastic,
  /// round(B·f) every batch, as nnU-Net does: exact when B·f is whole, biased otherwise
  /// (B = 2, f = 0.33 forces 50 %).
  kNearest,
};

/// Which draws of a batch of `batch_size` (>= 1) to force (true = forced), at positions chosen
/// uniformly at random. `fraction` in [0, 1]. Throws InputError for bad arguments.
std::vector<bool> forced_in_batch(std::mt19937_64& rng, std::int64_t batch_size, double fraction,
                                  BatchRounding rounding = BatchRounding::kStochastic);

/// One Bernoulli(fraction) draw: per-draw mode, for loaders that fill batches one patch at a time.
bool force_draw(std::mt19937_64& rng, double fraction);

}  // namespace vitruvian::data
