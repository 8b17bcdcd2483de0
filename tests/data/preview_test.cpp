// data/preview: the display window of a non-CT volume is the 1st to 99.5th percentile of a strided
// sample of its non-zero voxels, exactly as the plain tensor expression gives it.
#include "data/preview.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace vitruvian::data {
namespace {

/// The window as tensor operations state it: every nonzero voxel in order, every step-th of them.
Window reference_window(const at::Tensor& image) {
  const at::Tensor values = image.flatten().to(at::kFloat);
  const at::Tensor nonzero = values.index({values != 0});
  if (nonzero.numel() == 0) return {0, 1};
  const std::int64_t step = std::max<std::int64_t>(1, nonzero.numel() / 200000);
  const at::Tensor sample = nonzero.slice(0, 0, nonzero.numel(), step);
  const double low = at::quantile(sample, 0.01).item<double>();
  const double high = at::quantile(sample, 0.995).item<double>();
  return {low, high > low ? high : low + 1};
}

TEST(DisplayWindow, IsThePercentilesOfTheNonzeroVoxelsSample) {
  at::manual_seed(5);
  // About a third of the voxels zero (as outside a map's brain); sizes below and above the
  // sample's 200 000, so every voxel or every k-th one is taken.
  for (const std::int64_t side : {20, 60, 96}) {
    const at::Tensor values = at::randn({side, side, side}) * 30 + 40;
    const at::Tensor image = at::where(at::rand({side, side, side}) < 0.35, at::zeros_like(values), values);
    const Window got = display_window(image, "MR"), want = reference_window(image);
    EXPECT_EQ(got.low, want.low) << side;
    EXPECT_EQ(got.high, want.high) << side;
    EXPECT_LT(got.low, got.high);
  }
  // Integer voxels, as a label-free MR series stores them.
  const at::Tensor counts = at::randint(0, 500, {30, 40, 50}, at::kShort);
  const Window got = display_window(counts, "MR"), want = reference_window(counts);
  EXPECT_EQ(got.low, want.low);
  EXPECT_EQ(got.high, want.high);
}

TEST(DisplayWindow, CtIsFixedAndEmptyOrFlatVolumesStillGiveAWindow) {
  const at::Tensor image = at::full({4, 5, 6}, 7.0f);
  const Window ct = display_window(image, "CT");
  EXPECT_EQ(ct.low, -250);
  EXPECT_EQ(ct.high, 450);
  const Window none = display_window(at::zeros({4, 5, 6}), "");
  EXPECT_EQ(none.low, 0);
  EXPECT_EQ(none.high, 1);
  const Window flat = display_window(image, "");  // one value: a window one unit wide above it
  EXPECT_EQ(flat.low, 7);
  EXPECT_EQ(flat.high, 8);
}

}  // namespace
}  // namespace vitruvian::data
