// Random data augmentation of one training patch: spatial transforms applied identically to the
// image (trilinear) and the label (nearest), then intensity transforms of the image only.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <random>

namespace vitruvian::data {

/// One optional random transform: applied with `probability`; its parameter drawn uniformly
/// from [low, high].
struct RandomTransform {
  double probability = 0.0;
  double low = 0.0;
  double high = 0.0;
};

/// Options of an Augmenter (fluent setters; checked by the Augmenter constructor). Everything is
/// off by default; nnunet_like() gives nnU-Net's default mix. Axes are [z, y, x] throughout.
class AugmentOptions {
 public:
  /// nnU-Net-like defaults: rotation p 0.2 ±30° per axis, scaling p 0.2 in [0.7, 1.4], flips
  /// p 0.5 per axis, noise p 0.1 sigma [0, 0.1], blur p 0.2 sigma [0.5, 1] voxels, intensity
  /// scale p 0.15 in [0.75, 1.25], gamma p 0.3 in [0.7, 1.5]; no rot90, no shift.
  static AugmentOptions nnunet_like();

  /// Mirror along z, y, x, each with its own probability.
  AugmentOptions& flip(std::array<double, 3> probability_zyx) {
    flip_ = probability_zyx;
    return *this;
  }
  const std::array<double, 3>& flip() const noexcept { return flip_; }

  /// Rotate by 90°, 180° or 270° (uniformly) in the y-x plane. Where y and x differ in size only
  /// 180° is used, so shapes never change.
  AugmentOptions& rot90(double probability) {
    rot90_ = probability;
    return *this;
  }
  double rot90() const noexcept { return rot90_; }

  /// Rotate about the volume centre with `probability`; the angle about each axis z, y, x is
  /// uniform in [−max, max] degrees (max in [0, 180]; about z turns the y-x plane). Voxels are
  /// taken as isotropic.
  AugmentOptions& rotation(double probability, std::array<double, 3> max_degrees_zyx) {
    rotation_probability_ = probability;
    rotation_degrees_ = max_degrees_zyx;
    return *this;
  }
  double rotation_probability() const noexcept { return rotation_probability_; }
  const std::array<double, 3>& rotation_degrees() const noexcept { return rotation_degrees_; }

  /// Zoom about the volume centre by a factor in [low, high] (> 0; > 1 enlarges the content).
  AugmentOptions& scaling(double probability, double low, double high) {
    scaling_ = {probability, low, high};
    return *this;
  }
  const RandomTransform& scaling() const noexcept { return scaling_; }

  /// Image and label values written where rotation/scaling brings in space from outside the
  /// volume. Defaults 0 and 0.
  AugmentOptions& spatial_pad(double image_value, std::int64_t label_value) {
    image_pad_value_ = image_value;
    label_pad_value_ = label_value;
    return *this;
  }
  double image_pad_value() const noexcept { return image_pad_value_; }
  std::int64_t label_pad_value() const noexcept { return label_pad_value_; }

  /// Multiply the image by a factor in [low, high].
  AugmentOptions& intensity_scale(double probability, double low, double high) {
    intensity_scale_ = {probability, low, high};
    return *this;
  }
  const RandomTransform& intensity_scale() const noexcept { return intensity_scale_; }

  /// Add an offset in [low, high] (image intensity units) to the image.
  AugmentOptions& intensity_shift(double probability, double low, double high) {
    intensity_shift_ = {probability, low, high};
    return *this;
  }
  const RandomTransform& intensity_shift() const noexcept { return intensity_shift_; }

  /// Gamma in [low, high] (> 0), per channel on the image min-max normalised to [0, 1], then
  /// mapped back to the channel's original range (min and max are kept).
  AugmentOptions& gamma(double probability, double low, double high) {
    gamma_ = {probability, low, high};
    return *this;
  }
  const RandomTransform& gamma() const noexcept { return gamma_; }

  /// Add Gaussian noise of standard deviation in [low, high] (>= 0, image intensity units).
  AugmentOptions& noise(double probability, double sigma_low, double sigma_high) {
    noise_ = {probability, sigma_low, sigma_high};
    return *this;
  }
  const RandomTransform& noise() const noexcept { return noise_; }

  /// Gaussian blur of standard deviation in [low, high] (>= 0, voxels, same on every axis and
  /// channel); the border is extended by replication.
  AugmentOptions& blur(double probability, double sigma_low, double sigma_high) {
    blur_ = {probability, sigma_low, sigma_high};
    return *this;
  }
  const RandomTransform& blur() const noexcept { return blur_; }

 private:
  std::array<double, 3> flip_{0.0, 0.0, 0.0};
  double rot90_ = 0.0;
  double rotation_probability_ = 0.0;
  std::array<double, 3> rotation_degrees_{0.0, 0.0, 0.0};
  RandomTransform scaling_{0.0, 1.0, 1.0};
  double image_pad_value_ = 0.0;
  std::int64_t label_pad_value_ = 0;
  RandomTransform intensity_scale_{0.0, 1.0, 1.0};
  RandomTransform intensity_shift_{0.0, 0.0, 0.0};
  RandomTransform gamma_{0.0, 1.0, 1.0};
  RandomTransform noise_{0.0, 0.0, 0.0};
  RandomTransform blur_{0.0, 0.0, 0.0};
};

/// Applies AugmentOptions to (image, label) pairs. Randomness comes only from the rng passed to
/// apply(): the same rng state gives the same output (noise uses a LibTorch generator seeded
/// from one rng draw). Read-only after construction.
class Augmenter {
 public:
  /// Throws InputError naming the bad value: a probability outside [0, 1], low > high, a
  /// non-positive scale factor or gamma, a negative sigma, a rotation outside [0, 180] degrees,
  /// or a non-finite value.
  explicit Augmenter(AugmentOptions options);

  /// Augments in place (the handles are replaced with new tensors). `image`: [C, z, y, x]
  /// float32 CPU; `label`: [z, y, x] int64 CPU with the same z, y, x. Shapes are kept. Order:
  /// rotation + scaling (one resampling pass), rot90, flips, then on the image only: noise,
  /// blur, intensity scale, intensity shift, gamma. Throws InputError for bad shapes or dtypes.
  void apply(at::Tensor& image, at::Tensor& label, std::mt19937_64& rng) const;

  const AugmentOptions& options() const noexcept { return options_; }

 private:
  AugmentOptions options_;
};

}  // namespace vitruvian::data
