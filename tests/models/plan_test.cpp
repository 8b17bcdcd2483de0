// Plans: topology follows spacing (no pooling or 3-wide kernels along a coarse axis), patches
// shrink to fit the budget and divide by the pooling, batch grows within budget and 5 % of the
// data; the memory model against measured activations.
#include "models/plan.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "models/losses.h"

namespace vitruvian::models {
namespace {

TEST(Plan, AnisotropicSpacingKeepsTheCoarseAxisUnpooledAtFirst) {
  StageAxes strides, kernels;
  topology({40, 192, 160}, {3.0, 0.8, 0.8}, strides, kernels);  // z 3 mm, in-plane 0.8 mm
  ASSERT_GE(strides.size(), 4u);
  EXPECT_EQ(kernels[0], (std::array<std::int64_t, 3>{1, 3, 3}));
  EXPECT_EQ(strides[1], (std::array<std::int64_t, 3>{1, 2, 2}));  // 0.8 → 1.6 mm in-plane, z untouched
  EXPECT_EQ(strides[2][0], 2);                                    // now 3 vs 1.6: within 2x, z pools too
  EXPECT_EQ(kernels[2][0], 3);
  StageAxes iso_strides, iso_kernels;
  topology({64, 64, 64}, {1, 1, 1}, iso_strides, iso_kernels);
  EXPECT_EQ(iso_strides.size(), 5u);  // 64 → 32 → 16 → 8 → 4
}

TEST(Plan, PatchShrinksToTheBudgetAndBatchGrowsWithin) {
  PlanInput in;
  in.spacing_zyx = {1, 1, 1};
  in.median_shape_zyx = {300, 400, 400};
  in.classes = 5;
  in.memory_bytes = 2e9;
  in.dataset_voxels = 100 * 300.0 * 400 * 400;
  const Plan small = make_plan(in);
  EXPECT_LE(small.estimated_bytes, 2e9);
  for (int a = 0; a < 3; ++a) EXPECT_LE(small.patch_zyx[a], 256);
  in.memory_bytes = 16e9;
  const Plan large = make_plan(in);
  EXPECT_GE(large.patch_zyx[0] * large.patch_zyx[1] * large.patch_zyx[2] * large.batch_size,
            small.patch_zyx[0] * small.patch_zyx[1] * small.patch_zyx[2] * small.batch_size);
  // Divisible by the pooling along each axis.
  std::array<std::int64_t, 3> divisor{1, 1, 1};
  for (const auto& s : large.strides) {
    for (int a = 0; a < 3; ++a) divisor[a] *= s[a];
  }
  for (int a = 0; a < 3; ++a) EXPECT_EQ(large.patch_zyx[a] % divisor[a], 0);
  // A small dataset caps the batch at 5 % of its voxels.
  in.dataset_voxels = 40.0 * 64 * 64 * 64;
  in.median_shape_zyx = {64, 64, 64};
  EXPECT_LE(make_plan(in).batch_size, 2);
  in.memory_bytes = 1e6;
  EXPECT_THROW(make_plan(in), InputError);
}

double allocated() {
  const auto m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}

TEST(Plan, MemoryModelCoversTheMeasuredActivations) {
  torch::manual_seed(0);
  const std::array<std::int64_t, 3> patch{32, 48, 48};
  StageAxes strides, kernels;
  topology(patch, {1, 1, 1}, strides, kernels);
  std::vector<std::int64_t> features;
  for (std::size_t s = 0; s < strides.size(); ++s) features.push_back(std::min<std::int64_t>(8 << s, 320));
  UNet net(UNetOptions(1, 3).features(features).strides(strides).kernels(kernels));
  const at::Tensor x = torch::randn({2, 1, patch[0], patch[1], patch[2]});
  const at::Tensor t = torch::randint(0, 3, {2, patch[0], patch[1], patch[2]}, torch::kLong);
  deep_supervision_loss(net->forward(x), t).backward();  // warm the allocator
  net->zero_grad();
  const double before = allocated();
  const at::Tensor loss = deep_supervision_loss(net->forward(x), t);
  const double kept = allocated() - before;  // what autograd holds for backward
  const double estimate = training_memory_bytes(features, strides, patch, 2, 1, 3);
  EXPECT_GE(estimate, kept);
  EXPECT_LE(estimate, 1.8 * kept);
}

}  // namespace
}  // namespace vitruvian::models
