// Augmenter: one affine resampling pass (rotation + scaling), exact flips and rot90, then the
// image-only intensity transforms, all drawn from the caller's rng.
#include "data/augment.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "data/random.h"

namespace vitruvian::data {
namespace {

constexpr const char* kWhere = "Augmenter";
constexpr double kPi = 3.14159265358979323846;

double uniform(std::mt19937_64& rng, double low, double high) { return low + (high - low) * uniform01(rng); }
// True with probability p; draws nothing when p is 0.
bool chance(std::mt19937_64& rng, double p) { return p > 0.0 && uniform01(rng) < p; }

void check_probability(const std::string& name, double p) {
  if (!(p >= 0.0 && p <= 1.0)) throw InputError(kWhere, fmt::format("{} probability {} is not in [0, 1]", name, p));
}

// `minimum` is exclusive when `strict`.
void check_transform(const std::string& name, const RandomTransform& t, double minimum, bool strict) {
  check_probability(name, t.probability);
  if (!std::isfinite(t.low) || !std::isfinite(t.high) || t.low > t.high) {
    throw InputError(kWhere, fmt::format("{} range [{}, {}] is not a finite range with low <= high", name, t.low, t.high));
  }
  if (strict ? !(t.low > minimum) : !(t.low >= minimum)) {
    throw InputError(kWhere, fmt::format("{} range [{}, {}] must be {} {}", name, t.low, t.high, strict ? ">" : ">=",
                                         minimum));
  }
}

void check_options(const AugmentOptions& o) {
  const char* axes[3] = {"z", "y", "x"};
  for (std::size_t a = 0; a < 3; ++a) check_probability(fmt::format("flip {}", axes[a]), o.flip()[a]);
  check_probability("rot90", o.rot90());
  check_probability("rotation", o.rotation_probability());
  for (std::size_t a = 0; a < 3; ++a) {
    const double degrees = o.rotation_degrees()[a];
    if (!(degrees >= 0.0 && degrees <= 180.0)) {
      throw InputError(kWhere, fmt::format("rotation about {}: max {} degrees is not in [0, 180]", axes[a], degrees));
    }
  }
  check_transform("scaling", o.scaling(), 0.0, true);
  check_transform("intensity scale", o.intensity_scale(), -HUGE_VAL, false);
  check_transform("intensity shift", o.intensity_shift(), -HUGE_VAL, false);
  check_transform("gamma", o.gamma(), 0.0, true);
  check_transform("noise sigma", o.noise(), 0.0, false);
  check_transform("blur sigma", o.blur(), 0.0, false);
  if (!std::isfinite(o.image_pad_value())) {
    throw InputError(kWhere, fmt::format("spatial image pad value {} is not finite", o.image_pad_value()));
  }
}

std::string describe(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  return fmt::format("{} [{}] on {}", c10::toString(t.scalar_type()), fmt::join(t.sizes(), ", "), t.device().str());
}

using Matrix = std::array<std::array<double, 3>, 3>;

Matrix multiply(const Matrix& a, const Matrix& b) {
  Matrix c{};
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 3; ++k) c[i][j] += a[i][k] * b[k][j];
  return c;
}

// Rotation by `radians` about coordinate axis `axis` (0 = x, 1 = y, 2 = z), in (x, y, z) order.
Matrix rotation_about(std::size_t axis, double radians) {
  const double c = std::cos(radians), s = std::sin(radians);
  const std::size_t u = (axis + 1) % 3, v = (axis + 2) % 3;  // the plane turned: x→y, y→z, z→x
  Matrix r{};
  r[axis][axis] = 1.0;
  r[u][u] = c;
  r[u][v] = -s;
  r[v][u] = s;
  r[v][v] = c;
  return r;
}

// Resamples image (trilinear) and label (nearest) in one pass through `output_to_input`, a 3×3
// map in (x, y, z) voxel offsets from the volume centre (output voxel → where to read the input).
// align_corners = false: normalised coordinates ±1 are the outer faces of the border voxels, so
// a centred voxel offset c along an axis of n voxels is 2c/n and the voxel-space map A becomes
// theta = N A N⁻¹ with N = diag(2/W, 2/H, 2/D); this stays valid for axes of one voxel (where
// align_corners = true would divide by n − 1 = 0). Outside the input reads the pad values.
void resample(at::Tensor& image, at::Tensor& label, const Matrix& output_to_input, const AugmentOptions& options) {
  const std::array<double, 3> n = {static_cast<double>(image.size(3)), static_cast<double>(image.size(2)),
                                   static_cast<double>(image.size(1))};  // x, y, z
  at::Tensor theta = at::zeros({1, 3, 4}, at::kDouble);
  auto t = theta.accessor<double, 3>();
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      t[0][static_cast<std::int64_t>(i)][static_cast<std::int64_t>(j)] = output_to_input[i][j] * n[j] / n[i];
    }
  const std::vector<std::int64_t> size = {1, image.size(0), image.size(1), image.size(2), image.size(3)};
  const at::Tensor grid = at::affine_grid_generator(theta.to(at::kFloat), size, /*align_corners=*/false);
  constexpr std::int64_t kBilinear = 0, kNearest = 1, kZeros = 0;
  // grid_sampler pads with zeros: shift the pad value to zero and back.
  const double image_pad = options.image_pad_value();
  image = at::grid_sampler(image.sub(image_pad).unsqueeze(0), grid, kBilinear, kZeros, false).squeeze(0).add(image_pad);
  const std::int64_t label_pad = options.label_pad_value();
  const at::Tensor label_in = label.sub(label_pad).to(at::kFloat).unsqueeze(0).unsqueeze(0);
  label = at::grid_sampler(label_in, grid, kNearest, kZeros, false).squeeze(0).squeeze(0).to(at::kLong).add(label_pad);
}

// Separable Gaussian blur with replicated borders; `sigma` in voxels.
at::Tensor gaussian_blur(const at::Tensor& image, double sigma) {
  const auto radius = static_cast<std::int64_t>(std::max(1.0, std::ceil(3.0 * sigma)));
  const at::Tensor x = at::arange(-radius, radius + 1, at::kDouble);
  const at::Tensor kernel1d = at::exp(x.pow(2).div(-2.0 * sigma * sigma));
  const at::Tensor kernel = kernel1d.div(kernel1d.sum()).to(at::kFloat);
  const std::int64_t channels = image.size(0), width = 2 * radius + 1;
  at::Tensor out = image.unsqueeze(0);  // [1, C, z, y, x]
  for (std::int64_t dim = 2; dim < 5; ++dim) {
    // Padding pairs run (x, y, z): the last dimension first.
    std::vector<std::int64_t> pad(6, 0), one_kernel = {1, 1, 1, 1, 1};
    const auto slot = static_cast<std::size_t>(2 * (4 - dim));
    pad[slot] = pad[slot + 1] = radius;
    one_kernel[static_cast<std::size_t>(dim)] = width;
    // Depthwise: weight [C, 1, kz, ky, kx], the 1D kernel along `dim`.
    const at::Tensor weight = kernel.reshape(one_kernel).repeat({channels, 1, 1, 1, 1});
    out = at::conv3d(at::replication_pad3d(out, pad), weight, c10::optional<at::Tensor>(),
                     {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, channels);
  }
  return out.squeeze(0);
}

}  // namespace

AugmentOptions AugmentOptions::nnunet_like() {
  return AugmentOptions()
      .rotation(0.2, {30.0, 30.0, 30.0})
      .scaling(0.2, 0.7, 1.4)
      .flip({0.5, 0.5, 0.5})
      .noise(0.1, 0.0, 0.1)
      .blur(0.2, 0.5, 1.0)
      .intensity_scale(0.15, 0.75, 1.25)
      .gamma(0.3, 0.7, 1.5);
}

Augmenter::Augmenter(AugmentOptions options) : options_(std::move(options)) { check_options(options_); }

void Augmenter::apply(at::Tensor& image, at::Tensor& label, std::mt19937_64& rng) const {
  if (!image.defined() || image.dim() != 4 || image.scalar_type() != at::kFloat || !image.device().is_cpu()) {
    throw InputError("Augmenter::apply", "image is " + describe(image) + "; expected a [C, z, y, x] float32 CPU tensor");
  }
  if (!label.defined() || label.dim() != 3 || label.scalar_type() != at::kLong || !label.device().is_cpu() ||
      image.sizes().slice(1) != label.sizes()) {
    throw InputError("Augmenter::apply", "label is " + describe(label) + " for an image " + describe(image) +
                                             "; expected an int64 CPU tensor of the image's [z, y, x]");
  }
  const AugmentOptions& o = options_;

  // Rotation and scaling: one map, one resampling pass.
  const bool rotate = chance(rng, o.rotation_probability());
  std::array<double, 3> radians_zyx{0.0, 0.0, 0.0};
  if (rotate) {
    for (std::size_t a = 0; a < 3; ++a) {
      const double max = o.rotation_degrees()[a] * kPi / 180.0;
      radians_zyx[a] = uniform(rng, -max, max);
    }
  }
  const bool zoom = chance(rng, o.scaling().probability);
  const double factor = zoom ? uniform(rng, o.scaling().low, o.scaling().high) : 1.0;
  if (rotate || zoom) {
    // Content turned by R = Rz·Ry·Rx and enlarged by `factor`: output voxel c reads input R⁻¹c / factor.
    const Matrix r = multiply(rotation_about(2, radians_zyx[0]),
                              multiply(rotation_about(1, radians_zyx[1]), rotation_about(0, radians_zyx[2])));
    Matrix map{};
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < 3; ++j) map[i][j] = r[j][i] / factor;
    resample(image, label, map, o);
  }

  // Exact voxel permutations.
  if (chance(rng, o.rot90())) {
    const bool square = image.size(2) == image.size(3);
    const std::int64_t k = square ? 1 + static_cast<std::int64_t>(uniform01(rng) * 3.0) : 2;
    image = at::rot90(image, k, {2, 3});
    label = at::rot90(label, k, {1, 2});
  }
  std::vector<std::int64_t> flip_dims;
  for (std::size_t a = 0; a < 3; ++a) {
    if (chance(rng, o.flip()[a])) flip_dims.push_back(static_cast<std::int64_t>(a));
  }
  if (!flip_dims.empty()) {
    label = at::flip(label, flip_dims);
    for (auto& d : flip_dims) ++d;
    image = at::flip(image, flip_dims);
  }

  // Image only.
  if (chance(rng, o.noise().probability)) {
    const double sigma = uniform(rng, o.noise().low, o.noise().high);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(rng());
    image = image.add(at::randn(image.sizes(), generator, image.options()).mul_(sigma));
  }
  if (chance(rng, o.blur().probability)) {
    const double sigma = uniform(rng, o.blur().low, o.blur().high);
    if (sigma > 0.0) image = gaussian_blur(image, sigma);
  }
  if (chance(rng, o.intensity_scale().probability)) {
    image = image.mul(uniform(rng, o.intensity_scale().low, o.intensity_scale().high));
  }
  if (chance(rng, o.intensity_shift().probability)) {
    image = image.add(uniform(rng, o.intensity_shift().low, o.intensity_shift().high));
  }
  if (chance(rng, o.gamma().probability)) {
    const double gamma = uniform(rng, o.gamma().low, o.gamma().high);
    const at::Tensor low = image.amin({1, 2, 3}, /*keepdim=*/true);
    const at::Tensor range = image.amax({1, 2, 3}, /*keepdim=*/true).sub(low);
    const at::Tensor safe = at::where(range > 0, range, at::ones_like(range));  // constant channels stay
    image = image.sub(low).div(safe).clamp(0.0, 1.0).pow(gamma).mul(safe).add(low);
  }
  image = image.contiguous();
  label = label.contiguous();
}

}  // namespace vitruvian::data
