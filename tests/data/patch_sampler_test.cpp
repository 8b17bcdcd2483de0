// PatchSampler against a plain voxel-by-voxel window copy: patch contents at the returned origin,
// padding outside the volume, forced draws (rate within 5 % of the setting over 10 000 draws,
// always containing their class, classes balanced), seeding, forced_in_batch counts, bad input.
#include "data/patch_sampler.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/errors.h"

namespace vitruvian::data {
namespace {

using Index3 = std::array<std::int64_t, 3>;

/// Random float32 [C, z, y, x] in [-1, 1), never constant.
at::Tensor random_image(std::int64_t channels, const Index3& shape, std::uint64_t seed) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand({channels, shape[0], shape[1], shape[2]}, generator, at::kFloat).mul_(2.0).sub_(1.0);
}

/// Sets label[box] = value for the box [begin, end) per axis.
void paint(at::Tensor& label, const Index3& begin, const Index3& end, std::int64_t value) {
  using at::indexing::Slice;
  label.index_put_({Slice(begin[0], end[0]), Slice(begin[1], end[1]), Slice(begin[2], end[2])}, value);
}

/// Voxel-by-voxel reference: the patch at `patch.origin` of (image, label), padded outside.
/// Returns the number of voxels (over channels and the label) that differ.
std::int64_t count_mismatches(const at::Tensor& image, const at::Tensor& label, const Patch& patch,
                              const PatchSamplerOptions& options) {
  const at::Tensor label_long = label.to(at::kLong).contiguous();
  const at::Tensor image_c = image.contiguous();
  auto vi = image_c.accessor<float, 4>();
  auto vl = label_long.accessor<std::int64_t, 3>();
  auto pi = patch.image.accessor<float, 4>();
  auto pl = patch.label.accessor<std::int64_t, 3>();
  const auto& size = options.patch_size();
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < size[0]; ++i)
    for (std::int64_t j = 0; j < size[1]; ++j)
      for (std::int64_t k = 0; k < size[2]; ++k) {
        const std::int64_t z = patch.origin[0] + i, y = patch.origin[1] + j, x = patch.origin[2] + k;
        const bool inside = z >= 0 && z < label.size(0) && y >= 0 && y < label.size(1) && x >= 0 && x < label.size(2);
        const std::int64_t expected_label = inside ? vl[z][y][x] : options.label_pad_value();
        bad += pl[i][j][k] != expected_label ? 1 : 0;
        for (std::int64_t c = 0; c < image.size(0); ++c) {
          const float expected = inside ? vi[c][z][y][x] : static_cast<float>(options.image_pad_value());
          bad += pi[c][i][j][k] != expected ? 1 : 0;
        }
      }
  return bad;
}

void expect_shapes(const Patch& patch, std::int64_t channels, const Index3& size) {
  EXPECT_EQ(patch.image.sizes(), (std::vector<std::int64_t>{channels, size[0], size[1], size[2]}));
  EXPECT_EQ(patch.label.sizes(), (std::vector<std::int64_t>{size[0], size[1], size[2]}));
  EXPECT_EQ(patch.image.scalar_type(), at::kFloat);
  EXPECT_EQ(patch.label.scalar_type(), at::kLong);
}

bool contains(const Patch& patch, std::int64_t label_value) { return patch.label.eq(label_value).any().item<bool>(); }

/// A 40³ case whose only foreground is one 2³ block of class 1: random 8³ patches rarely hit it.
struct RareForeground {
  Index3 shape{40, 40, 40};
  at::Tensor image = random_image(2, shape, 1);
  at::Tensor label = at::zeros({40, 40, 40}, at::kByte);
  RareForeground() { paint(label, {30, 5, 20}, {32, 7, 22}, 1); }
};

TEST(PatchSampler, ForcedFractionMatchesSettingOverTenThousandDraws) {
  const RareForeground c;
  for (double fraction : {0.33, 0.5}) {
    SCOPED_TRACE(::testing::Message() << "foreground_fraction " << fraction);
    const PatchSampler sampler(c.image, c.label, PatchSamplerOptions({8, 8, 8}).foreground_fraction(fraction));
    std::mt19937_64 rng(1234);
    constexpr int kDraws = 10'000;
    int forced = 0, with_foreground = 0, forced_without_class = 0, random_with_foreground = 0;
    for (int d = 0; d < kDraws; ++d) {
      const Patch patch = sampler.sample(rng);
      const bool has_foreground = contains(patch, 1);
      with_foreground += has_foreground ? 1 : 0;
      if (patch.forced_class != 0) {
        ++forced;
        forced_without_class += contains(patch, patch.forced_class) ? 0 : 1;
        EXPECT_EQ(patch.forced_class, 1);
      } else {
        random_with_foreground += has_foreground ? 1 : 0;
      }
    }
    EXPECT_EQ(forced_without_class, 0);
    EXPECT_NEAR(static_cast<double>(forced) / kDraws, fraction, 0.05);
    // Random draws hit the block about (9·7·9)/33³ ≈ 1.6 % of the time, so the share of
    // patches with foreground is also close to the setting, and a bit above it.
    EXPECT_NEAR(static_cast<double>(with_foreground) / kDraws, fraction, 0.05);
    EXPECT_GE(with_foreground, forced);
    EXPECT_LT(static_cast<double>(random_with_foreground) / (kDraws - forced), 0.04);
  }
}

TEST(PatchSampler, ForegroundFractionZeroAndOne) {
  const RareForeground c;
  std::mt19937_64 rng(5);
  const PatchSampler never(c.image, c.label, PatchSamplerOptions({8, 8, 8}).foreground_fraction(0.0));
  const PatchSampler always(c.image, c.label, PatchSamplerOptions({8, 8, 8}).foreground_fraction(1.0));
  for (int d = 0; d < 500; ++d) {
    EXPECT_EQ(never.sample(rng).forced_class, 0);
    const Patch patch = always.sample(rng);
    EXPECT_EQ(patch.forced_class, 1);
    EXPECT_TRUE(contains(patch, 1));
  }
}

TEST(PatchSampler, ForcedDrawsBalanceClassesOfDifferentSizes) {
  // Class 2: 8 voxels; class 5: 12·12·12 = 1728 voxels. Forcing picks the class first.
  const Index3 shape{32, 32, 32};
  const at::Tensor image = random_image(1, shape, 2);
  at::Tensor label = at::zeros({32, 32, 32}, at::kInt);
  paint(label, {2, 28, 3}, {4, 30, 5}, 2);
  paint(label, {15, 4, 16}, {27, 16, 28}, 5);
  const PatchSampler sampler(image, label, PatchSamplerOptions({8, 8, 8}));
  EXPECT_EQ(sampler.classes(), (std::vector<std::int64_t>{2, 5}));
  EXPECT_EQ(sampler.class_voxels(2), 8);
  EXPECT_EQ(sampler.class_voxels(5), 1728);
  EXPECT_EQ(sampler.class_voxels(0), 0);
  EXPECT_EQ(sampler.class_voxels(3), 0);

  std::mt19937_64 rng(99);
  constexpr int kDraws = 10'000;
  int small = 0, large = 0, missing = 0;
  for (int d = 0; d < kDraws; ++d) {
    const Patch patch = sampler.sample(rng, /*force_foreground=*/true);
    small += patch.forced_class == 2 ? 1 : 0;
    large += patch.forced_class == 5 ? 1 : 0;
    missing += contains(patch, patch.forced_class) ? 0 : 1;
  }
  EXPECT_EQ(small + large, kDraws);
  EXPECT_EQ(missing, 0);
  EXPECT_NEAR(static_cast<double>(small) / kDraws, 0.5, 0.03);
}

TEST(PatchSampler, ForcedOriginsCoverEveryWindowHoldingTheVoxel) {
  // One foreground voxel: the forced origins along each axis are exactly the valid origins
  // whose window contains it, each of them reached.
  const Index3 shape{40, 30, 20};
  const Index3 voxel{20, 1, 19};  // mid z, near the low y face, on the high x face
  const at::Tensor image = random_image(1, shape, 3);
  at::Tensor label = at::zeros({40, 30, 20}, at::kLong);
  label.index_put_({voxel[0], voxel[1], voxel[2]}, 3);
  const Index3 patch{8, 8, 8};
  const PatchSampler sampler(image, label, PatchSamplerOptions(patch));
  std::mt19937_64 rng(7);
  std::array<std::vector<int>, 3> hits;
  for (std::size_t a = 0; a < 3; ++a) hits[a].assign(static_cast<std::size_t>(shape[a]), 0);
  for (int d = 0; d < 3000; ++d) {
    const Patch p = sampler.sample(rng, true);
    ASSERT_EQ(p.forced_class, 3);
    const at::Tensor at_voxel = p.label.index({voxel[0] - p.origin[0], voxel[1] - p.origin[1], voxel[2] - p.origin[2]});
    ASSERT_EQ(at_voxel.item<std::int64_t>(), 3);
    for (std::size_t a = 0; a < 3; ++a) {
      ASSERT_GE(p.origin[a], 0);
      ASSERT_LE(p.origin[a], shape[a] - patch[a]);
      ++hits[a][static_cast<std::size_t>(p.origin[a])];
    }
  }
  for (std::size_t a = 0; a < 3; ++a) {
    const std::int64_t low = std::max<std::int64_t>(0, voxel[a] - patch[a] + 1);
    const std::int64_t high = std::min<std::int64_t>(voxel[a], shape[a] - patch[a]);
    for (std::int64_t o = 0; o < shape[a]; ++o) {
      const bool valid = o >= low && o <= high;
      if (valid) {
        EXPECT_GT(hits[a][static_cast<std::size_t>(o)], 0) << "axis " << a << " origin " << o;
      } else {
        EXPECT_EQ(hits[a][static_cast<std::size_t>(o)], 0) << "axis " << a << " origin " << o;
      }
    }
  }
}

TEST(PatchSampler, PatchesEqualTheVolumeAtTheirOrigin) {
  const Index3 shape{24, 20, 17};
  const at::Tensor image = random_image(3, shape, 4);
  at::Tensor label = at::randint(0, 4, {24, 20, 17}, at::kLong);
  const PatchSamplerOptions options = PatchSamplerOptions({8, 6, 10}).foreground_fraction(0.5);
  const PatchSampler sampler(image, label, options);
  std::mt19937_64 rng(11);
  std::array<std::int64_t, 3> lowest{1000, 1000, 1000}, highest{-1, -1, -1};
  for (int d = 0; d < 300; ++d) {
    const Patch patch = sampler.sample(rng);
    expect_shapes(patch, 3, options.patch_size());
    for (std::size_t a = 0; a < 3; ++a) {
      lowest[a] = std::min(lowest[a], patch.origin[a]);
      highest[a] = std::max(highest[a], patch.origin[a]);
    }
    ASSERT_EQ(count_mismatches(image, label, patch, options), 0) << "draw " << d;
  }
  for (std::size_t a = 0; a < 3; ++a) {
    EXPECT_EQ(lowest[a], 0) << "axis " << a;
    EXPECT_EQ(highest[a], shape[a] - options.patch_size()[a]) << "axis " << a;
  }
}

TEST(PatchSampler, VolumeSmallerThanPatchIsPaddedAround) {
  // Smaller than the patch along z and x, larger along y.
  const Index3 shape{5, 12, 3};
  const at::Tensor image = random_image(2, shape, 5);
  at::Tensor label = at::randint(0, 3, {5, 12, 3}, at::kByte);
  const PatchSamplerOptions options =
      PatchSamplerOptions({8, 8, 8}).image_pad_value(-7.5).label_pad_value(-1).foreground_fraction(0.5);
  const PatchSampler sampler(image, label, options);
  std::mt19937_64 rng(13);
  for (int d = 0; d < 300; ++d) {
    const Patch patch = sampler.sample(rng);
    expect_shapes(patch, 2, options.patch_size());
    // Along a short axis the window covers the volume whole; along y it lies inside.
    EXPECT_GE(patch.origin[0], 5 - 8);
    EXPECT_LE(patch.origin[0], 0);
    EXPECT_GE(patch.origin[1], 0);
    EXPECT_LE(patch.origin[1], 12 - 8);
    EXPECT_GE(patch.origin[2], 3 - 8);
    EXPECT_LE(patch.origin[2], 0);
    ASSERT_EQ(count_mismatches(image, label, patch, options), 0) << "draw " << d;
    // Padding: 8·8·8 minus the 5·8·3 voxels inside.
    EXPECT_EQ(patch.label.eq(-1).sum().item<std::int64_t>(), 512 - 5 * 8 * 3);
    EXPECT_EQ(patch.image.eq(-7.5f).sum().item<std::int64_t>(), 2 * (512 - 5 * 8 * 3));
  }
}

TEST(PatchSampler, ExtractPadsAtAnyOrigin) {
  const Index3 shape{12, 10, 9};
  const at::Tensor image = random_image(1, shape, 6);
  at::Tensor label = at::randint(1, 5, {12, 10, 9}, at::kInt);
  const PatchSamplerOptions options = PatchSamplerOptions({6, 5, 4}).image_pad_value(3.25).label_pad_value(255);
  const PatchSampler sampler(image, label, options);
  const std::vector<Index3> origins = {{-3, 2, 1},  {8, 7, 7},   {-5, -4, -3}, {11, 9, 8},     {0, 0, 0},
                                       {6, 5, 5},   {-6, 0, 0},  {12, 0, 0},   {0, -5, 0},     {0, 0, 9},
                                       {100, 0, 0}, {-2, 20, 4}, {3, -1, 6},   {-10, -10, -10}};
  for (const Index3& origin : origins) {
    const Patch patch = sampler.extract(origin);
    EXPECT_EQ(patch.origin, origin);
    EXPECT_EQ(patch.forced_class, 0);
    expect_shapes(patch, 1, options.patch_size());
    EXPECT_EQ(count_mismatches(image, label, patch, options), 0)
        << "origin [" << origin[0] << ", " << origin[1] << ", " << origin[2] << "]";
  }
  // Entirely outside: all padding.
  const Patch outside = sampler.extract({12, 0, 0});
  EXPECT_TRUE(outside.label.eq(255).all().item<bool>());
  EXPECT_TRUE(outside.image.eq(3.25f).all().item<bool>());
  // The patch is a copy: writing to it leaves the case alone.
  Patch inside = sampler.extract({1, 1, 1});
  inside.image.fill_(0.0);
  EXPECT_EQ(count_mismatches(image, label, sampler.extract({1, 1, 1}), options), 0);
}

TEST(PatchSampler, NonContiguousInputsAndLabelTypes) {
  const Index3 shape{10, 11, 12};
  const at::Tensor image = random_image(2, {12, 11, 10}, 8).permute({0, 3, 2, 1});  // [2, 10, 11, 12] strided
  const at::Tensor label_long = at::randint(0, 3, {12, 11, 10}, at::kLong).permute({2, 1, 0});
  ASSERT_FALSE(image.is_contiguous());
  const PatchSamplerOptions options = PatchSamplerOptions({4, 5, 6}).foreground_fraction(1.0);
  for (at::ScalarType type : {at::kByte, at::kInt, at::kLong}) {
    const at::Tensor label = label_long.to(type);
    const PatchSampler sampler(image, label, options);
    EXPECT_EQ(sampler.volume_shape(), shape);
    EXPECT_EQ(sampler.class_voxels(1) + sampler.class_voxels(2), label_long.gt(0).sum().item<std::int64_t>());
    std::mt19937_64 rng(21);
    for (int d = 0; d < 50; ++d) {
      const Patch patch = sampler.sample(rng);
      ASSERT_EQ(count_mismatches(image, label, patch, options), 0) << c10::toString(type);
      EXPECT_TRUE(contains(patch, patch.forced_class));
    }
  }
}

TEST(PatchSampler, CaseWithoutForegroundFallsBackToRandomDraws) {
  const at::Tensor image = random_image(1, {10, 10, 10}, 9);
  const at::Tensor label = at::zeros({10, 10, 10}, at::kLong);
  const PatchSamplerOptions options = PatchSamplerOptions({4, 4, 4}).foreground_fraction(1.0);
  const PatchSampler sampler(image, label, options);
  EXPECT_TRUE(sampler.classes().empty());
  std::mt19937_64 rng(1);
  for (int d = 0; d < 50; ++d) {
    const Patch patch = sampler.sample(rng, true);
    EXPECT_EQ(patch.forced_class, 0);
    EXPECT_EQ(count_mismatches(image, label, patch, options), 0);
  }
}

TEST(PatchSampler, SameSeedSamePatches) {
  const RareForeground c;
  const PatchSampler sampler(c.image, c.label, PatchSamplerOptions({8, 8, 8}).foreground_fraction(0.5));
  std::mt19937_64 a(2718), b(2718), other(2719);
  int origins_differ = 0;
  for (int d = 0; d < 100; ++d) {
    const Patch pa = sampler.sample(a), pb = sampler.sample(b), po = sampler.sample(other);
    EXPECT_EQ(pa.origin, pb.origin);
    EXPECT_EQ(pa.forced_class, pb.forced_class);
    EXPECT_TRUE(at::equal(pa.image, pb.image));
    EXPECT_TRUE(at::equal(pa.label, pb.label));
    origins_differ += pa.origin != po.origin ? 1 : 0;
  }
  EXPECT_GT(origins_differ, 90);
}

TEST(ForcedInBatch, StochasticRoundingHasTheExactExpectedFraction) {
  std::mt19937_64 rng(31);
  for (std::int64_t batch : {1, 2, 3, 5}) {
    for (double fraction : {0.33, 0.5, 0.9}) {
      constexpr int kBatches = 20'000;
      const double wanted = static_cast<double>(batch) * fraction;
      std::int64_t total = 0;
      for (int i = 0; i < kBatches; ++i) {
        const std::vector<bool> forced = forced_in_batch(rng, batch, fraction, BatchRounding::kStochastic);
        ASSERT_EQ(forced.size(), static_cast<std::size_t>(batch));
        const auto count = static_cast<std::int64_t>(std::count(forced.begin(), forced.end(), true));
        EXPECT_TRUE(count == static_cast<std::int64_t>(std::floor(wanted)) ||
                    count == static_cast<std::int64_t>(std::ceil(wanted)))
            << "batch " << batch << ", fraction " << fraction << ": " << count << " forced";
        total += count;
      }
      EXPECT_NEAR(static_cast<double>(total) / static_cast<double>(kBatches * batch), fraction, 0.015)
          << "batch " << batch;
    }
  }
}

TEST(ForcedInBatch, NearestRoundingAndUniformPositions) {
  std::mt19937_64 rng(32);
  struct Case {
    std::int64_t batch;
    double fraction;
    std::int64_t count;
  };
  for (const Case& c : {Case{2, 0.33, 1}, Case{4, 0.33, 1}, Case{3, 0.5, 2}, Case{6, 0.33, 2}, Case{1, 0.33, 0},
                        Case{5, 0.0, 0}, Case{5, 1.0, 5}}) {
    for (int i = 0; i < 200; ++i) {
      const std::vector<bool> forced = forced_in_batch(rng, c.batch, c.fraction, BatchRounding::kNearest);
      ASSERT_EQ(forced.size(), static_cast<std::size_t>(c.batch));
      EXPECT_EQ(std::count(forced.begin(), forced.end(), true), c.count)
          << "batch " << c.batch << ", fraction " << c.fraction;
    }
  }
  // One forced draw in four: each position about a quarter of the time.
  std::array<int, 4> at_position{};
  constexpr int kBatches = 10'000;
  for (int i = 0; i < kBatches; ++i) {
    const std::vector<bool> forced = forced_in_batch(rng, 4, 0.25, BatchRounding::kNearest);
    for (std::size_t p = 0; p < 4; ++p) at_position[p] += forced[p] ? 1 : 0;
  }
  for (int hits : at_position) EXPECT_NEAR(static_cast<double>(hits) / kBatches, 0.25, 0.02);
}

TEST(ForcedInBatch, ForceDrawIsBernoulli) {
  std::mt19937_64 rng(33);
  int yes = 0;
  for (int i = 0; i < 10'000; ++i) {
    yes += force_draw(rng, 0.2) ? 1 : 0;
    EXPECT_FALSE(force_draw(rng, 0.0));
    EXPECT_TRUE(force_draw(rng, 1.0));
  }
  EXPECT_NEAR(yes / 10'000.0, 0.2, 0.02);
}

TEST(PatchSampler, RejectsBadOptionsAndInputs) {
  const at::Tensor image = random_image(1, {6, 6, 6}, 10);
  const at::Tensor label = at::zeros({6, 6, 6}, at::kLong);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({0, 4, 4})), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, -1, 4})), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, 4, 4}).foreground_fraction(-0.01)), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, 4, 4}).foreground_fraction(1.01)), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, 4, 4}).foreground_fraction(nan)), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, 4, 4}).image_pad_value(nan)), InputError);
  EXPECT_THROW(PatchSampler(image, label, PatchSamplerOptions({4, 4, 4}).image_pad_value(-inf)), InputError);

  const PatchSamplerOptions ok({4, 4, 4});
  EXPECT_THROW(PatchSampler(at::Tensor(), label, ok), InputError);
  EXPECT_THROW(PatchSampler(image, at::Tensor(), ok), InputError);
  EXPECT_THROW(PatchSampler(image.to(at::kDouble), label, ok), InputError);
  EXPECT_THROW(PatchSampler(image[0], label, ok), InputError);                         // 3-D image
  EXPECT_THROW(PatchSampler(image, label.to(at::kFloat), ok), InputError);             // float label
  EXPECT_THROW(PatchSampler(image, label.unsqueeze(0), ok), InputError);               // 4-D label
  EXPECT_THROW(PatchSampler(image, at::zeros({6, 6, 5}, at::kLong), ok), InputError);  // size mismatch
  EXPECT_THROW(PatchSampler(at::zeros({0, 6, 6, 6}), label, ok), InputError);          // no channel
  EXPECT_THROW(PatchSampler(at::zeros({1, 0, 6, 6}), at::zeros({0, 6, 6}, at::kLong), ok), InputError);
  EXPECT_NO_THROW(PatchSampler(image, label.to(at::kByte), ok));

  std::mt19937_64 rng(1);
  EXPECT_THROW(forced_in_batch(rng, 0, 0.5), InputError);
  EXPECT_THROW(forced_in_batch(rng, -3, 0.5), InputError);
  EXPECT_THROW(forced_in_batch(rng, 4, 1.5), InputError);
  EXPECT_THROW(forced_in_batch(rng, 4, nan, BatchRounding::kNearest), InputError);
  EXPECT_THROW(force_draw(rng, -0.5), InputError);
  EXPECT_THROW(force_draw(rng, nan), InputError);
}

}  // namespace
}  // namespace vitruvian::data
