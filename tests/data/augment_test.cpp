// Augmenter: spatial transforms keep image and label aligned (exactly for flips and rot90, on
// ≥ 99 % of the interior for rotation and scaling), move content where documented (zoom about the
// centre, rotation as a proper rotation on non-cubic volumes), intensity transforms follow their
// formulas and leave the label alone, the rng alone decides the output, bad options rejected.
#include "data/augment.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "core/errors.h"

namespace vitruvian::data {
namespace {

using at::indexing::Slice;

/// A case whose image is tied to its label: channel 0 is 100 × label, channel 1 the linear ramp
/// z + 2y + 3x (so any misplacement of either shows). Labels 0..3 in overlapping boxes.
struct Case {
  at::Tensor image;  // [2, z, y, x] float32
  at::Tensor label;  // [z, y, x] int64
};

at::Tensor ramp(std::int64_t z, std::int64_t y, std::int64_t x) {
  const at::Tensor zz = at::arange(z, at::kFloat).reshape({z, 1, 1});
  const at::Tensor yy = at::arange(y, at::kFloat).reshape({1, y, 1});
  const at::Tensor xx = at::arange(x, at::kFloat).reshape({1, 1, x});
  return zz + 2.0 * yy + 3.0 * xx;
}

Case make_case(std::int64_t z, std::int64_t y, std::int64_t x) {
  Case c;
  c.label = at::zeros({z, y, x}, at::kLong);
  // Boxes placed by fractions of the size, so any shape gets all three classes.
  auto box = [&](double z0, double z1, double y0, double y1, double x0, double x1, std::int64_t value) {
    auto at_ = [](double f, std::int64_t n) { return static_cast<std::int64_t>(f * static_cast<double>(n)); };
    c.label.index_put_({Slice(at_(z0, z), at_(z1, z)), Slice(at_(y0, y), at_(y1, y)), Slice(at_(x0, x), at_(x1, x))},
                       value);
  };
  box(0.15, 0.6, 0.2, 0.65, 0.25, 0.6, 1);
  box(0.45, 0.85, 0.5, 0.9, 0.45, 0.85, 2);
  box(0.1, 0.3, 0.7, 0.9, 0.1, 0.3, 3);
  c.image = at::stack({c.label.to(at::kFloat).mul(100.0), ramp(z, y, x)});
  return c;
}

/// Voxels whose whole 3×3×3 neighbourhood lies in the volume and has one label.
at::Tensor interior(const at::Tensor& label) {
  const at::Tensor f = label.to(at::kFloat).unsqueeze(0).unsqueeze(0);
  const at::Tensor high = at::max_pool3d(f, {3, 3, 3}, {1, 1, 1}, {0, 0, 0});
  const at::Tensor low = at::max_pool3d(f.neg(), {3, 3, 3}, {1, 1, 1}, {0, 0, 0}).neg();
  return at::constant_pad_nd(high.eq(low).squeeze(0).squeeze(0), {1, 1, 1, 1, 1, 1}, 0);
}

/// Fraction of the voxels in `mask` where round(image channel 0 / 100) equals the label.
double agreement(const at::Tensor& image, const at::Tensor& label, const at::Tensor& mask) {
  const at::Tensor agree = image[0].div(100.0).round().to(at::kLong).eq(label).logical_and(mask);
  return static_cast<double>(agree.sum().item<std::int64_t>()) /
         static_cast<double>(std::max<std::int64_t>(1, mask.sum().item<std::int64_t>()));
}

void expect_aligned_interior(const at::Tensor& image, const at::Tensor& label) {
  const at::Tensor inner = interior(label);
  const at::Tensor foreground = inner.logical_and(label.gt(0));
  ASSERT_GT(foreground.sum().item<std::int64_t>(), 150) << "too little foreground interior to judge";
  EXPECT_GE(agreement(image, label, inner), 0.99);
  EXPECT_GE(agreement(image, label, foreground), 0.99);
}

void expect_same_shapes(const Case& before, const at::Tensor& image, const at::Tensor& label) {
  EXPECT_EQ(image.sizes(), before.image.sizes());
  EXPECT_EQ(label.sizes(), before.label.sizes());
  EXPECT_EQ(image.scalar_type(), at::kFloat);
  EXPECT_EQ(label.scalar_type(), at::kLong);
  EXPECT_TRUE(image.is_contiguous());
  EXPECT_TRUE(label.is_contiguous());
}

TEST(Augmenter, FlipsAreExactAndKeepAlignment) {
  const Case c = make_case(10, 12, 14);
  for (std::int64_t axis = 0; axis < 3; ++axis) {
    std::array<double, 3> p{0.0, 0.0, 0.0};
    p[static_cast<std::size_t>(axis)] = 1.0;
    const Augmenter augmenter(AugmentOptions().flip(p));
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(static_cast<std::uint64_t>(axis));
    augmenter.apply(image, label, rng);
    expect_same_shapes(c, image, label);
    EXPECT_TRUE(at::equal(label, at::flip(c.label, {axis}))) << "axis " << axis;
    EXPECT_TRUE(at::equal(image, at::flip(c.image, {axis + 1}))) << "axis " << axis;
    EXPECT_TRUE(at::equal(image[0], label.to(at::kFloat).mul(100.0)));
    EXPECT_FALSE(at::equal(label, c.label));
  }
  const Augmenter all(AugmentOptions().flip({1.0, 1.0, 1.0}));
  at::Tensor image = c.image.clone(), label = c.label.clone();
  std::mt19937_64 rng(3);
  all.apply(image, label, rng);
  EXPECT_TRUE(at::equal(label, at::flip(c.label, {0, 1, 2})));
  EXPECT_TRUE(at::equal(image, at::flip(c.image, {1, 2, 3})));
}

TEST(Augmenter, Rot90TurnsTheYxPlaneByAQuarterMultiple) {
  const Case square = make_case(8, 12, 12);
  const Augmenter augmenter(AugmentOptions().rot90(1.0));
  std::set<std::int64_t> turns;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    at::Tensor image = square.image.clone(), label = square.label.clone();
    std::mt19937_64 rng(seed);
    augmenter.apply(image, label, rng);
    expect_same_shapes(square, image, label);
    EXPECT_TRUE(at::equal(image[0], label.to(at::kFloat).mul(100.0)));
    std::int64_t matched = 0;
    for (std::int64_t k = 1; k <= 3; ++k) {
      if (at::equal(label, at::rot90(square.label, k, {1, 2})) &&
          at::equal(image, at::rot90(square.image, k, {2, 3}))) {
        matched = k;
      }
    }
    EXPECT_NE(matched, 0) << "seed " << seed << ": not a quarter turn of the y-x plane";
    turns.insert(matched);
  }
  EXPECT_EQ(turns, (std::set<std::int64_t>{1, 2, 3}));

  // y and x of different sizes: only the half turn keeps the shape.
  const Case oblong = make_case(8, 10, 14);
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    at::Tensor image = oblong.image.clone(), label = oblong.label.clone();
    std::mt19937_64 rng(seed);
    augmenter.apply(image, label, rng);
    expect_same_shapes(oblong, image, label);
    EXPECT_TRUE(at::equal(label, at::rot90(oblong.label, 2, {1, 2})));
    EXPECT_TRUE(at::equal(image, at::rot90(oblong.image, 2, {2, 3})));
  }
}

TEST(Augmenter, RotationKeepsImageAndLabelAligned) {
  const Case c = make_case(20, 20, 20);
  for (std::size_t axis = 0; axis < 3; ++axis) {
    std::array<double, 3> degrees{0.0, 0.0, 0.0};
    degrees[axis] = 45.0;
    const Augmenter augmenter(AugmentOptions().rotation(1.0, degrees));
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
      SCOPED_TRACE(::testing::Message() << "about axis " << axis << ", seed " << seed);
      at::Tensor image = c.image.clone(), label = c.label.clone();
      std::mt19937_64 rng(seed);
      augmenter.apply(image, label, rng);
      expect_same_shapes(c, image, label);
      EXPECT_GT(label.ne(c.label).sum().item<std::int64_t>(), 0);
      EXPECT_GT(image[1].sub(c.image[1]).abs().max().item<float>(), 0.1f);
      expect_aligned_interior(image, label);
    }
  }
}

TEST(Augmenter, RotationAboutAnAxisKeepsItsSlabs) {
  // A label that depends only on the coordinate along one axis keeps its value at every voxel
  // (or becomes padding) when turned about that axis, and changes when turned about another.
  const std::int64_t z = 12, y = 16, x = 14;
  const std::vector<std::int64_t> sizes = {z, y, x};
  constexpr std::int64_t kPadLabel = 9;
  for (std::int64_t along = 0; along < 3; ++along) {
    std::vector<std::int64_t> view = {1, 1, 1};
    view[static_cast<std::size_t>(along)] = sizes[static_cast<std::size_t>(along)];
    const at::Tensor slab = at::arange(sizes[static_cast<std::size_t>(along)], at::kLong).remainder(4).add(1);
    const at::Tensor base = slab.reshape(view).expand({z, y, x}).contiguous();
    for (std::int64_t about = 0; about < 3; ++about) {
      std::array<double, 3> degrees{0.0, 0.0, 0.0};
      degrees[static_cast<std::size_t>(about)] = 40.0;
      const Augmenter augmenter(AugmentOptions().rotation(1.0, degrees).spatial_pad(-1.0, kPadLabel));
      at::Tensor image = base.to(at::kFloat).unsqueeze(0).contiguous(), label = base.clone();
      std::mt19937_64 rng(static_cast<std::uint64_t>(10 + along * 3 + about));
      augmenter.apply(image, label, rng);
      const at::Tensor kept = label.eq(base).logical_or(label.eq(kPadLabel));
      if (along == about) {
        EXPECT_TRUE(kept.all().item<bool>()) << "slabs along " << along << " turned about " << about;
      } else {
        EXPECT_FALSE(kept.all().item<bool>()) << "slabs along " << along << " turned about " << about;
      }
    }
  }
}

TEST(Augmenter, RotationIsAProperRotationOnNonCubicVolumes) {
  // The ramp z + 2y + 3x is linear, so trilinear resampling reproduces it exactly away from the
  // border; a rotation keeps its gradient's length (√14), a turn about z keeps d/dz = 1.
  const std::int64_t z = 12, y = 16, x = 20;
  const at::Tensor base = ramp(z, y, x).unsqueeze(0);
  const at::Tensor label = at::zeros({z, y, x}, at::kLong);
  auto gradient_at_centre = [&](const at::Tensor& image) {
    const std::int64_t cz = z / 2, cy = y / 2, cx = x / 2;
    const at::Tensor v = image[0];
    const double centre = v.index({cz, cy, cx}).item<double>();
    return std::array<double, 3>{v.index({cz + 1, cy, cx}).item<double>() - centre,
                                 v.index({cz, cy + 1, cx}).item<double>() - centre,
                                 v.index({cz, cy, cx + 1}).item<double>() - centre};
  };
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    {
      const Augmenter about_z(AugmentOptions().rotation(1.0, {60.0, 0.0, 0.0}));
      at::Tensor image = base.clone(), lab = label.clone();
      std::mt19937_64 rng(seed);
      about_z.apply(image, lab, rng);
      const auto g = gradient_at_centre(image);
      EXPECT_NEAR(g[0], 1.0, 1e-3) << "seed " << seed;
      EXPECT_NEAR(g[1] * g[1] + g[2] * g[2], 13.0, 1e-2) << "seed " << seed;
      EXPECT_GT(std::abs(g[1] - 2.0) + std::abs(g[2] - 3.0), 1e-2) << "seed " << seed << ": not turned";
    }
    {
      const Augmenter about_all(AugmentOptions().rotation(1.0, {30.0, 30.0, 30.0}));
      at::Tensor image = base.clone(), lab = label.clone();
      std::mt19937_64 rng(seed);
      about_all.apply(image, lab, rng);
      const auto g = gradient_at_centre(image);
      EXPECT_NEAR(g[0] * g[0] + g[1] * g[1] + g[2] * g[2], 14.0, 1e-2) << "seed " << seed;
    }
  }
}

TEST(Augmenter, ScalingZoomsAboutTheCentre) {
  // A centred cube of 4³ voxels (6..9 in 16³) becomes 8³ (4..11) at factor 2, and back at 0.5.
  at::Tensor small = at::zeros({16, 16, 16}, at::kLong);
  small.index_put_({Slice(6, 10), Slice(6, 10), Slice(6, 10)}, 1);
  at::Tensor large = at::zeros({16, 16, 16}, at::kLong);
  large.index_put_({Slice(4, 12), Slice(4, 12), Slice(4, 12)}, 1);

  {
    const Augmenter zoom_in(AugmentOptions().scaling(1.0, 2.0, 2.0));
    at::Tensor image = small.to(at::kFloat).mul(100.0).unsqueeze(0), label = small.clone();
    std::mt19937_64 rng(1);
    zoom_in.apply(image, label, rng);
    EXPECT_TRUE(at::equal(label, large));
    EXPECT_FLOAT_EQ(image.index({0, 7, 7, 7}).item<float>(), 100.0f);
  }
  {
    const Augmenter zoom_out(AugmentOptions().scaling(1.0, 0.5, 0.5).spatial_pad(-5.0, 7));
    at::Tensor image = large.to(at::kFloat).mul(100.0).unsqueeze(0), label = large.clone();
    std::mt19937_64 rng(1);
    zoom_out.apply(image, label, rng);
    // Inside 4..11 the shrunk volume: the cube at 6..9; outside it, padding.
    at::Tensor expected = at::full({16, 16, 16}, 7, at::kLong);
    expected.index_put_({Slice(4, 12), Slice(4, 12), Slice(4, 12)}, 0);
    expected.index_put_({Slice(6, 10), Slice(6, 10), Slice(6, 10)}, 1);
    EXPECT_TRUE(at::equal(label, expected));
    EXPECT_FLOAT_EQ(image.index({0, 0, 0, 0}).item<float>(), -5.0f);
    EXPECT_FLOAT_EQ(image.index({0, 15, 15, 15}).item<float>(), -5.0f);
    EXPECT_NEAR(image.index({0, 7, 8, 7}).item<float>(), 100.0f, 1e-3);
  }
}

TEST(Augmenter, ScalingResamplesTheImageAtTheZoomedPositions) {
  // Output voxel i reads input c + (i − c) / f per axis (c = (n − 1) / 2): for a linear ramp
  // and f > 1 every read is inside the volume and trilinear interpolation is exact.
  const std::int64_t z = 10, y = 12, x = 14;
  const double f = 1.25;
  at::Tensor image = ramp(z, y, x).unsqueeze(0), label = at::zeros({z, y, x}, at::kLong);
  const Augmenter augmenter(AugmentOptions().scaling(1.0, f, f));
  std::mt19937_64 rng(4);
  augmenter.apply(image, label, rng);
  auto moved = [f](std::int64_t n) {
    const double centre = static_cast<double>(n - 1) / 2.0;
    return at::arange(n, at::kDouble).sub(centre).div(f).add(centre);
  };
  const at::Tensor expected =
      moved(z).reshape({z, 1, 1}) + 2.0 * moved(y).reshape({1, y, 1}) + 3.0 * moved(x).reshape({1, 1, x});
  EXPECT_LT(image[0].to(at::kDouble).sub(expected).abs().max().item<double>(), 2e-3);
  EXPECT_GT(image[0].to(at::kDouble).sub(ramp(z, y, x).to(at::kDouble)).abs().max().item<double>(), 1.0);
}

TEST(Augmenter, ScalingKeepsImageAndLabelAligned) {
  const Case c = make_case(24, 24, 24);
  for (auto [low, high] : {std::pair{0.7, 0.8}, std::pair{1.2, 1.4}}) {
    const Augmenter augmenter(AugmentOptions().scaling(1.0, low, high));
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
      SCOPED_TRACE(::testing::Message() << "factor in [" << low << ", " << high << "], seed " << seed);
      at::Tensor image = c.image.clone(), label = c.label.clone();
      std::mt19937_64 rng(seed);
      augmenter.apply(image, label, rng);
      expect_same_shapes(c, image, label);
      EXPECT_GT(label.ne(c.label).sum().item<std::int64_t>(), 100);
      expect_aligned_interior(image, label);
    }
  }
}

TEST(Augmenter, AllSpatialTransformsTogetherKeepAlignment) {
  const Case c = make_case(22, 24, 24);
  const Augmenter augmenter(
      AugmentOptions().flip({1.0, 1.0, 1.0}).rot90(1.0).rotation(1.0, {20.0, 20.0, 20.0}).scaling(1.0, 0.8, 1.2));
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(seed);
    augmenter.apply(image, label, rng);
    expect_same_shapes(c, image, label);
    EXPECT_GT(label.ne(c.label).sum().item<std::int64_t>(), 100);
    expect_aligned_interior(image, label);
  }
}

TEST(Augmenter, SameRngStateSameOutput) {
  const Case c = make_case(12, 14, 14);
  const Augmenter augmenter(AugmentOptions()
                                .flip({0.5, 0.5, 0.5})
                                .rot90(0.5)
                                .rotation(1.0, {30.0, 30.0, 30.0})
                                .scaling(1.0, 0.8, 1.2)
                                .noise(1.0, 0.1, 0.2)
                                .blur(1.0, 0.5, 1.0)
                                .intensity_scale(1.0, 0.8, 1.2)
                                .intensity_shift(1.0, -1.0, 1.0)
                                .gamma(1.0, 0.7, 1.5));
  for (std::uint64_t seed : {1ULL, 77ULL}) {
    at::Tensor image_a = c.image.clone(), label_a = c.label.clone();
    at::Tensor image_b = c.image.clone(), label_b = c.label.clone();
    at::Tensor image_c = c.image.clone(), label_c = c.label.clone();
    std::mt19937_64 a(seed), b(seed), other(seed + 1000);
    augmenter.apply(image_a, label_a, a);
    augmenter.apply(image_b, label_b, b);
    augmenter.apply(image_c, label_c, other);
    EXPECT_TRUE(at::equal(image_a, image_b));
    EXPECT_TRUE(at::equal(label_a, label_b));
    EXPECT_EQ(a, b);  // the same number of draws
    EXPECT_FALSE(at::equal(image_a, image_c));
    EXPECT_FALSE(at::equal(label_a, label_c));
  }
}

TEST(Augmenter, NothingEnabledChangesNothing) {
  const Case c = make_case(8, 9, 10);
  at::Tensor image = c.image.clone(), label = c.label.clone();
  std::mt19937_64 rng(5), untouched(5);
  Augmenter(AugmentOptions()).apply(image, label, rng);
  EXPECT_TRUE(at::equal(image, c.image));
  EXPECT_TRUE(at::equal(label, c.label));
  EXPECT_EQ(rng, untouched);
}

TEST(Augmenter, IntensityTransformsLeaveTheLabelAlone) {
  const Case c = make_case(10, 12, 12);
  const Augmenter augmenter(AugmentOptions()
                                .noise(1.0, 0.1, 0.1)
                                .blur(1.0, 1.0, 1.0)
                                .intensity_scale(1.0, 1.1, 1.1)
                                .intensity_shift(1.0, 0.5, 0.5)
                                .gamma(1.0, 1.3, 1.3));
  at::Tensor image = c.image.clone(), label = c.label.clone();
  std::mt19937_64 rng(6);
  augmenter.apply(image, label, rng);
  expect_same_shapes(c, image, label);
  EXPECT_TRUE(at::equal(label, c.label));
  EXPECT_GT(image.sub(c.image).abs().max().item<float>(), 1.0f);
}

TEST(Augmenter, IntensityScaleAndShift) {
  const Case c = make_case(8, 10, 12);
  {
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(1);
    Augmenter(AugmentOptions().intensity_scale(1.0, 1.5, 1.5)).apply(image, label, rng);
    EXPECT_TRUE(at::allclose(image, c.image.mul(1.5), 1e-6, 1e-6));
  }
  {
    // A factor drawn from the range: the same for every voxel.
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(2);
    Augmenter(AugmentOptions().intensity_scale(1.0, 0.5, 2.0)).apply(image, label, rng);
    const at::Tensor nonzero = c.image.ne(0);
    const at::Tensor ratio = image.masked_select(nonzero).div(c.image.masked_select(nonzero));
    const double factor = ratio.mean().item<double>();
    EXPECT_GE(factor, 0.5);
    EXPECT_LE(factor, 2.0);
    EXPECT_LT(ratio.sub(factor).abs().max().item<double>(), 1e-5);
    EXPECT_TRUE(image.masked_select(nonzero.logical_not()).eq(0).all().item<bool>());
  }
  {
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(3);
    Augmenter(AugmentOptions().intensity_shift(1.0, -3.0, -3.0)).apply(image, label, rng);
    EXPECT_TRUE(at::allclose(image, c.image.sub(3.0), 0.0, 1e-4));
  }
}

TEST(Augmenter, GammaKeepsMinAndMaxPerChannel) {
  const Case c = make_case(10, 12, 12);
  at::Tensor image = c.image.clone(), label = c.label.clone();
  std::mt19937_64 rng(7);
  Augmenter(AugmentOptions().gamma(1.0, 2.0, 2.0)).apply(image, label, rng);
  for (std::int64_t ch = 0; ch < 2; ++ch) {
    const at::Tensor before = c.image[ch].to(at::kDouble), after = image[ch].to(at::kDouble);
    const double low = before.min().item<double>(), high = before.max().item<double>();
    EXPECT_NEAR(after.min().item<double>(), low, 1e-4 * (high - low)) << "channel " << ch;
    EXPECT_NEAR(after.max().item<double>(), high, 1e-4 * (high - low)) << "channel " << ch;
    const at::Tensor expected = before.sub(low).div(high - low).pow(2.0).mul(high - low).add(low);
    EXPECT_LT(after.sub(expected).abs().max().item<double>(), 1e-4 * (high - low)) << "channel " << ch;
    EXPECT_GT(after.sub(before).abs().max().item<double>(), 0.1 * (high - low)) << "channel " << ch;
  }
  // A drawn gamma keeps the range too; a constant channel stays as it is.
  at::Tensor flat = at::stack({c.image[1], at::full_like(c.image[1], 4.0)}), lab = c.label.clone();
  std::mt19937_64 rng2(8);
  Augmenter(AugmentOptions().gamma(1.0, 0.7, 1.5)).apply(flat, lab, rng2);
  EXPECT_NEAR(flat[0].min().item<double>(), c.image[1].min().item<double>(), 1e-3);
  EXPECT_NEAR(flat[0].max().item<double>(), c.image[1].max().item<double>(), 1e-3);
  EXPECT_TRUE(flat[1].eq(4.0).all().item<bool>());
}

TEST(Augmenter, NoiseHasTheRequestedStandardDeviation) {
  const Case c = make_case(16, 16, 16);  // 2 × 4096 voxels
  for (double sigma : {0.05, 0.2, 3.0}) {
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(9);
    Augmenter(AugmentOptions().noise(1.0, sigma, sigma)).apply(image, label, rng);
    const at::Tensor noise = image.to(at::kDouble).sub(c.image.to(at::kDouble));
    EXPECT_NEAR(noise.std().item<double>(), sigma, 0.03 * sigma) << "sigma " << sigma;
    EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.05 * sigma) << "sigma " << sigma;
  }
  // Drawn from a range: within it.
  at::Tensor image = c.image.clone(), label = c.label.clone();
  std::mt19937_64 rng(10);
  Augmenter(AugmentOptions().noise(1.0, 0.1, 0.3)).apply(image, label, rng);
  const double measured = image.sub(c.image).std().item<double>();
  EXPECT_GT(measured, 0.1 * 0.97);
  EXPECT_LT(measured, 0.3 * 1.03);
}

TEST(Augmenter, BlurIsANormalisedGaussian) {
  // An impulse becomes the Gaussian: neighbours at distance 1 and √2 hold exp(−1/2σ²) and
  // exp(−1) of the centre for σ = 1; its mass stays 1; a constant image stays constant.
  at::Tensor image = at::zeros({1, 15, 15, 15}), label = at::zeros({15, 15, 15}, at::kLong);
  image.index_put_({0, 7, 7, 7}, 1.0);
  std::mt19937_64 rng(11);
  const Augmenter augmenter(AugmentOptions().blur(1.0, 1.0, 1.0));
  augmenter.apply(image, label, rng);
  const double centre = image.index({0, 7, 7, 7}).item<double>();
  EXPECT_NEAR(image.index({0, 8, 7, 7}).item<double>() / centre, std::exp(-0.5), 1e-4);
  EXPECT_NEAR(image.index({0, 7, 6, 7}).item<double>() / centre, std::exp(-0.5), 1e-4);
  EXPECT_NEAR(image.index({0, 7, 7, 8}).item<double>() / centre, std::exp(-0.5), 1e-4);
  EXPECT_NEAR(image.index({0, 7, 8, 8}).item<double>() / centre, std::exp(-1.0), 1e-4);
  EXPECT_NEAR(image.sum().item<double>(), 1.0, 1e-4);
  EXPECT_LT(centre, 0.1);

  at::Tensor flat = at::full({2, 6, 7, 8}, 3.5f), flat_label = at::zeros({6, 7, 8}, at::kLong);
  augmenter.apply(flat, flat_label, rng);
  EXPECT_LT(flat.sub(3.5).abs().max().item<double>(), 1e-5);
}

TEST(Augmenter, NnunetLikeKeepsShapes) {
  const Case c = make_case(10, 12, 14);
  const Augmenter augmenter(AugmentOptions::nnunet_like().rot90(1.0));
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    at::Tensor image = c.image.clone(), label = c.label.clone();
    std::mt19937_64 rng(seed);
    augmenter.apply(image, label, rng);
    expect_same_shapes(c, image, label);
    // Nearest resampling and zero padding bring in no new label values.
    EXPECT_TRUE(label.ge(0).logical_and(label.le(3)).all().item<bool>()) << "seed " << seed;
  }
}

TEST(Augmenter, RejectsBadOptionsAndInputs) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_THROW(Augmenter(AugmentOptions().flip({0.5, -0.1, 0.5})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().flip({0.5, 0.5, 1.5})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().rot90(nan)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().rotation(1.2, {10, 10, 10})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().rotation(0.5, {10, 181, 10})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().rotation(0.5, {-1, 10, 10})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().rotation(0.5, {10, 10, nan})), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().scaling(0.5, 0.0, 1.2)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().scaling(0.5, -0.5, 1.2)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().scaling(0.5, 1.3, 1.2)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().scaling(0.5, 0.8, inf)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().intensity_scale(-0.5, 0.8, 1.2)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().intensity_scale(0.5, 1.2, 0.8)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().intensity_shift(0.5, nan, 1.0)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().gamma(0.5, 0.0, 1.5)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().gamma(0.5, -1.0, 1.5)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().noise(0.5, -0.1, 0.1)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().noise(2.0, 0.0, 0.1)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().blur(0.5, -1.0, 1.0)), InputError);
  EXPECT_THROW(Augmenter(AugmentOptions().spatial_pad(nan, 0)), InputError);
  EXPECT_NO_THROW(Augmenter(AugmentOptions::nnunet_like()));
  EXPECT_NO_THROW(Augmenter(AugmentOptions().intensity_shift(1.0, -2.0, -1.0).noise(1.0, 0.0, 0.0)));

  const Augmenter augmenter(AugmentOptions().flip({1.0, 0.0, 0.0}));
  std::mt19937_64 rng(1);
  const at::Tensor image = at::zeros({1, 4, 5, 6}), label = at::zeros({4, 5, 6}, at::kLong);
  auto apply = [&](at::Tensor i, at::Tensor l) { augmenter.apply(i, l, rng); };
  EXPECT_THROW(apply(image.to(at::kDouble), label), InputError);
  EXPECT_THROW(apply(image[0], label), InputError);
  EXPECT_THROW(apply(at::Tensor(), label), InputError);
  EXPECT_THROW(apply(image, label.to(at::kInt)), InputError);
  EXPECT_THROW(apply(image, at::zeros({4, 5, 7}, at::kLong)), InputError);
  EXPECT_THROW(apply(image, at::Tensor()), InputError);
  EXPECT_NO_THROW(apply(image, label));
}

}  // namespace
}  // namespace vitruvian::data
