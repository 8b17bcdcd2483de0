// The U-Net family: output shapes for odd sizes and anisotropic pooling, deep-supervision
// heads, option checks, FLOP counts; the loss (perfect logits, additivity over a split batch,
// decreasing under SGD); metrics against brute-force references.
#include "models/unet.h"

#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <cmath>

#include "core/errors.h"
#include "core/torch_compat.h"
#include "models/losses.h"
#include "models/metrics.h"
#include "models/precision.h"

namespace vitruvian::models {
namespace {

UNetOptions small(BlockType block, std::int64_t in = 2, std::int64_t classes = 3) {
  UNetOptions o(in, classes);
  o.features({4, 8, 12}).strides({{1, 1, 1}, {1, 2, 2}, {2, 2, 2}}).kernels({{1, 3, 3}, {3, 3, 3}, {3, 3, 3}}).block(block);
  return o;
}

TEST(UNet, OutputShapesForOddSizesAndAnisotropicPoolingInEveryBlockType) {
  torch::manual_seed(0);
  for (const BlockType block : {BlockType::kPlain, BlockType::kResidual, BlockType::kSelectiveKernel}) {
    SCOPED_TRACE(block_type_name(block));
    UNet net(small(block));
    net->train();
    const at::Tensor x = torch::randn({2, 2, 7, 13, 10});
    const auto outputs = net->forward(x);
    ASSERT_EQ(outputs.size(), 2u);  // full resolution + the stage-1 head
    EXPECT_EQ(outputs[0].sizes(), (std::vector<std::int64_t>{2, 3, 7, 13, 10}));
    EXPECT_EQ(outputs[1].sizes(), (std::vector<std::int64_t>{2, 3, 7, 7, 5}));  // z kept, y/x halved (ceil)
    net->eval();
    const auto single = net->forward(x);
    ASSERT_EQ(single.size(), 1u);
    EXPECT_EQ(single[0].sizes(), outputs[0].sizes());
    EXPECT_TRUE(torch::isfinite(single[0]).all().item<bool>());
    // Gradients reach the first layer.
    net->train();
    net->forward(x)[0].sum().backward();
    EXPECT_GT(net->parameters().front().grad().abs().sum().item<double>(), 0);
  }
}

TEST(UNet, UpsamplingByProductEqualsTransposedConvolution) {
  torch::manual_seed(5);
  for (const auto& stride : std::vector<std::vector<std::int64_t>>{{2, 2, 2}, {1, 2, 2}, {2, 1, 2}}) {
    const at::Tensor w = torch::randn({6, 4, stride[0], stride[1], stride[2]}).requires_grad_();
    const at::Tensor in = torch::randn({2, 6, 3, 4, 5}).requires_grad_();
    const at::Tensor reference = at::conv_transpose3d(in, w, {}, stride);
    const at::Tensor mine = upsample_by_product(in, w);
    EXPECT_TRUE(torch::allclose(mine, reference, 1e-5, 1e-5));
    const auto want = torch::autograd::grad({reference.pow(2).sum()}, {in, w});
    const auto got = torch::autograd::grad({mine.pow(2).sum()}, {in, w});
    EXPECT_TRUE(torch::allclose(got[0], want[0], 1e-4, 1e-4));
    EXPECT_TRUE(torch::allclose(got[1], want[1], 1e-4, 1e-4));
  }
}

TEST(UNet, FusedInferenceNormEqualsInstanceNormAndLeakyRelu) {
  torch::manual_seed(5);
  torch::nn::InstanceNorm3d norm(torch::nn::InstanceNorm3dOptions(6).affine(true));
  torch::NoGradGuard no_grad;
  norm->weight.uniform_(0.5, 1.5);
  norm->bias.uniform_(-0.5, 0.5);
  for (const double offset : {0.0, 300.0}) {  // a large mean must not cancel the variance
    const at::Tensor x = torch::randn({2, 6, 7, 9, 5}) * 3 + offset;
    at::Tensor fused = x.clone();
    instance_norm_act_(fused, norm->weight, norm->bias, 1e-5, 0.01);
    EXPECT_TRUE(torch::allclose(fused, torch::leaky_relu(norm->forward(x), 0.01), 1e-4, 1e-4)) << offset;
    at::Tensor plain = x.clone();
    instance_norm_act_(plain, norm->weight, norm->bias, 1e-5, std::nullopt);
    EXPECT_TRUE(torch::allclose(plain, norm->forward(x), 1e-4, 1e-4)) << offset;
  }
  // The network in eval mode without autograd (the in-place kernel) equals its autograd path
  // (the training function, checked against LibTorch's ops in the next test).
  UNet net(small(BlockType::kPlain));
  const at::Tensor input = torch::randn({1, 2, 9, 12, 10});
  net->eval();
  const at::Tensor fast = net->forward(input)[0];
  at::Tensor slow;
  {
    torch::AutoGradMode grad(true);
    slow = net->forward(input)[0].detach();
  }
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-4, 1e-4));
}

TEST(UNet, FusedTrainingNormHasInstanceNormAndLeakyReluGradients) {
  torch::manual_seed(8);
  for (const bool activate : {true, false}) {
    for (const double offset : {0.0, 200.0}) {
      torch::nn::InstanceNorm3d norm(torch::nn::InstanceNorm3dOptions(3).affine(true));
      {
        torch::NoGradGuard no_grad;
        norm->weight.uniform_(0.5, 1.5);
        norm->bias.uniform_(-0.5, 0.5);
      }
      // 2·3 planes of 1,155 values: whole lane groups, whole blocks and a tail.
      const at::Tensor x0 = torch::randn({2, 3, 5, 11, 21}) * 2 + offset;
      const at::Tensor upstream = torch::randn({2, 3, 5, 11, 21});
      const auto gradients = [&](bool fused) {
        at::Tensor x = x0.clone().requires_grad_(true);
        for (auto& p : norm->parameters()) p.mutable_grad() = at::Tensor();
        at::Tensor y;
        if (fused) {
          y = instance_norm_act(x, norm->weight, norm->bias, 1e-5, activate ? std::optional<double>(0.01) : std::nullopt);
        } else {
          y = norm->forward(x);
          if (activate) y = torch::leaky_relu(y, 0.01);
        }
        (y * upstream).sum().backward();
        return std::vector<at::Tensor>{y.detach(), x.grad(), norm->weight.grad().clone(), norm->bias.grad().clone()};
      };
      const auto want = gradients(false);
      const auto got = gradients(true);
      const char* names[] = {"output", "input gradient", "weight gradient", "bias gradient"};
      for (std::size_t i = 0; i < want.size(); ++i) {
        const double scale = std::max(1.0, want[i].abs().max().item<double>());
        EXPECT_LT((got[i] - want[i]).abs().max().item<double>(), 2e-4 * scale)
            << names[i] << ", activate " << activate << ", offset " << offset;
      }
    }
  }
  EXPECT_THROW(instance_norm_act(torch::randn({2, 3, 4}).to(at::kDouble), torch::ones({3}), torch::zeros({3}), 1e-5, 0.01),
               c10::Error);
}

TEST(UNet, FusedNormInBFloat16AndAWholeBFloat16NetworkFollowFloat32) {
  torch::manual_seed(6);
  torch::nn::InstanceNorm3d norm(torch::nn::InstanceNorm3dOptions(5).affine(true));
  torch::NoGradGuard no_grad;
  norm->weight.uniform_(0.5, 1.5);
  norm->bias.uniform_(-0.5, 0.5);
  // bf16 storage, float arithmetic: the result is the float result of the bf16 values, rounded
  // once to bf16 (relative error <= 2^-8).
  // Planes of 1,287 values: a partial lane group and a second block of 1,024.
  const at::Tensor x = (torch::randn({2, 5, 9, 13, 11}) * 2 + 40).to(at::kBFloat16);
  at::Tensor fused = x.clone();
  instance_norm_act_(fused, norm->weight, norm->bias, 1e-5, 0.01);
  ASSERT_EQ(fused.scalar_type(), at::kBFloat16);
  const at::Tensor want = torch::leaky_relu(norm->forward(x.to(at::kFloat)), 0.01);
  EXPECT_TRUE(torch::allclose(fused.to(at::kFloat), want, 1.0 / 256, 1e-3));
  EXPECT_FALSE(torch::equal(fused.to(at::kFloat), want));  // rounded to bf16 indeed
  // A whole-bf16 network (what campaigns with precision bf16 run on the CPU) follows the fp32
  // one within bf16 rounding of every layer.
  if (!cpu_bfloat16_convolutions()) GTEST_SKIP() << "no bfloat16 convolutions on this CPU (oneDNN needs AVX-512)";
  UNet net(small(BlockType::kPlain));
  net->eval();
  const at::Tensor input = torch::randn({1, 2, 9, 12, 10});
  const at::Tensor reference = net->forward(input)[0];
  net->to(at::kBFloat16);
  const at::Tensor low = net->forward(input.to(at::kBFloat16))[0];
  ASSERT_EQ(low.scalar_type(), at::kBFloat16);
  EXPECT_LT((low.to(at::kFloat) - reference).abs().max().item<double>(), 0.1 * reference.abs().max().item<double>());
  EXPECT_GT((low.to(at::kFloat).argmax(1) == reference.argmax(1)).to(at::kFloat).mean().item<double>(), 0.9);
}

TEST(UNet, ChannelsLastGivesTheSameOutputAndAutocastIsOffOnTheCpu) {
  torch::manual_seed(3);
  UNet net(small(BlockType::kPlain));
  net->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({2, 2, 8, 12, 12});
  const at::Tensor plain = net->forward(x)[0];
  to_channels_last_3d(*net);
  for (const auto& p : net->parameters()) {
    if (p.dim() == 5) {
      EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast3d));
    }
  }
  {
    const Autocast autocast(Precision::kFloat16, torch::kCPU);  // CPU: nothing changes
    EXPECT_FALSE(torch_compat::cuda_autocast_enabled());
    const at::Tensor last = net->forward(channels_last_3d(x))[0];
    EXPECT_EQ(last.scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::allclose(last, plain, 1e-4, 1e-5));
  }
  EXPECT_EQ(precision_from_name("bf16", "precision"), Precision::kBFloat16);
  EXPECT_STREQ(precision_name(Precision::kFloat16), "fp16");
  EXPECT_THROW(precision_from_name("int8", "precision"), ConfigError);
}

TEST(UNet, StandardOptionsFollowNnUnetFeatures) {
  const auto o = UNetOptions::standard(1, 4, 6);
  EXPECT_EQ(o.features(), (std::vector<std::int64_t>{32, 64, 128, 256, 320, 320}));
  UNet net(UNetOptions::standard(1, 4, 3).deep_supervision(false));
  net->train();
  EXPECT_EQ(net->forward(torch::zeros({1, 1, 16, 16, 16})).size(), 1u);
  EXPECT_GT(parameter_count(*net), 100000);
  const double flops = forward_flops_per_voxel(net, {16, 16, 16});
  // First stage alone: two 3x3x3 convolutions of 1→32 and 32→32 channels.
  EXPECT_GT(flops, 2.0 * 27 * (1 * 32 + 32 * 32));
  EXPECT_TRUE(net->is_training());  // restored
}

TEST(UNet, BadOptionsNameTheValue) {
  auto expect_config_error = [](const UNetOptions& o, const std::string& words) {
    try {
      UNet net(o);
      ADD_FAILURE() << "no error for " << words;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_config_error(small(BlockType::kPlain).kernels({{2, 3, 3}, {3, 3, 3}, {3, 3, 3}}), "kernel 2 along axis 0");
  expect_config_error(small(BlockType::kPlain).features({4, 8}), "2 feature counts, 3 strides and 3 kernels");
  expect_config_error(small(BlockType::kPlain, 1, 1), "num_classes 1");
  expect_config_error(small(BlockType::kPlain).strides({{2, 2, 2}, {2, 2, 2}, {2, 2, 2}}), "stage 0 must have stride 1");
  EXPECT_THROW(block_type_from_name("dense", "model.block"), ConfigError);
}

TEST(Loss, PerfectLogitsGiveNearZeroAndSplitBatchesAverage) {
  torch::manual_seed(1);
  const at::Tensor target = torch::randint(0, 3, {2, 6, 7, 8}, torch::kLong);
  const at::Tensor perfect = torch::one_hot(target, 3).permute({0, 4, 1, 2, 3}).to(torch::kFloat) * 40;
  EXPECT_LT(dice_ce_loss(perfect, target).item<double>(), 1e-4);
  const at::Tensor logits = torch::randn({2, 3, 6, 7, 8});
  const double whole = dice_ce_loss(logits, target).item<double>();
  const double halves = 0.5 * (dice_ce_loss(logits.slice(0, 0, 1), target.slice(0, 0, 1)).item<double>() +
                               dice_ce_loss(logits.slice(0, 1, 2), target.slice(0, 1, 2)).item<double>());
  EXPECT_NEAR(whole, halves, 1e-6);
  // Deep supervision: weights 1, 1/2, 1/4 normalised.
  const auto w = deep_supervision_weights(3);
  EXPECT_NEAR(w[0], 4.0 / 7, 1e-12);
  EXPECT_NEAR(w[2], 1.0 / 7, 1e-12);
  EXPECT_THROW(dice_ce_loss(logits, target.slice(1, 0, 3)), InputError);
}

TEST(Loss, FusedCpuLossHasTheValueAndGradientOfTheOpSequence) {
  torch::manual_seed(4);
  // The definition written out with LibTorch ops, in double.
  const auto reference = [](const at::Tensor& logits, const at::Tensor& target) {
    const std::int64_t classes = logits.size(1);
    const at::Tensor log_p = torch::log_softmax(logits, 1);
    const at::Tensor ce = -log_p.gather(1, target.unsqueeze(1)).mean();
    const at::Tensor p = log_p.exp();
    const at::Tensor onehot = torch::one_hot(target, classes).permute({0, 4, 1, 2, 3}).to(p.scalar_type());
    const at::Tensor tp = (p * onehot).sum({2, 3, 4});
    const at::Tensor dice = (2 * tp + 1e-5) / (p.sum({2, 3, 4}) + onehot.sum({2, 3, 4}) + 1e-5);
    return ce + 1 - dice.slice(1, 1, classes).mean();
  };
  // Voxel counts with and without a partial chunk of 16, and past the 1,024-voxel carry; 300
  // classes (the log-of-products flushed every 14 chunks); a class absent from one sample;
  // logits large enough that exp underflows for the losing classes.
  for (const auto& [classes, shape] : std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>>{
           {2, {2, 4, 4, 4}}, {4, {2, 5, 7, 9}}, {7, {3, 3, 5, 11}}, {3, {1, 1, 1, 5}}, {4, {2, 10, 16, 17}},
           {300, {1, 4, 8, 9}}}) {
    at::Tensor target = torch::randint(0, classes, shape, torch::kLong);
    target[0].masked_fill_(target[0] == classes - 1, 0);
    for (const double spread : {1.0, 30.0}) {
      std::vector<std::int64_t> logit_shape = {shape[0], classes, shape[1], shape[2], shape[3]};
      const at::Tensor base = torch::randn(logit_shape) * spread;
      at::Tensor fused_in = base.clone().requires_grad_(true), ref_in = base.to(at::kDouble).requires_grad_(true);
      const at::Tensor fused = dice_ce_loss(fused_in, target);
      const at::Tensor want = reference(ref_in, target);
      EXPECT_NEAR(fused.item<double>(), want.item<double>(), 1e-5 * std::max(1.0, want.item<double>())) << classes << " " << spread;
      // float64 logits take LibTorch's op sequence (as CUDA does): the same definition.
      EXPECT_NEAR(dice_ce_loss(base.to(at::kDouble), target).item<double>(), want.item<double>(), 1e-9) << classes;
      (fused * 3).backward();
      (want * 3).backward();
      const double largest = ref_in.grad().abs().max().item<double>();
      EXPECT_LT((fused_in.grad().to(at::kDouble) - ref_in.grad()).abs().max().item<double>(), 1e-5 * largest + 1e-9)
          << classes << " " << spread;
    }
  }
  // Targets outside the classes: one clear error, not a read out of bounds.
  const at::Tensor logits = torch::randn({1, 3, 2, 2, 2});
  at::Tensor bad = torch::zeros({1, 2, 2, 2}, torch::kLong);
  bad[0][1][1][1] = 3;
  try {
    dice_ce_loss(logits, bad);
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("target classes 0..3; expected 0..2"), std::string::npos) << e.what();
  }
}

TEST(Loss, GoesDownWhenTrainingOnABlob) {
  torch::manual_seed(2);
  UNet net(small(BlockType::kPlain, 1, 2));
  at::Tensor target = torch::zeros({2, 8, 16, 16}, torch::kLong);
  target.slice(1, 2, 6).slice(2, 4, 12).slice(3, 5, 11).fill_(1);
  const at::Tensor image = target.unsqueeze(1).to(torch::kFloat) * 2 - 1 + 0.3 * torch::randn({2, 1, 8, 16, 16});
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
  double first = 0, last = 0;
  for (int step = 0; step < 25; ++step) {
    sgd.zero_grad();
    const at::Tensor loss = deep_supervision_loss(net->forward(image), target);
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST(Metrics, DiceCountsAndDistanceTransformMatchBruteForce) {
  torch::manual_seed(3);
  const at::Tensor a = torch::randint(0, 3, {5, 6, 7}, torch::kLong), b = torch::randint(0, 3, {5, 6, 7}, torch::kLong);
  const auto counts = dice_counts(a, b, 3);
  for (int c = 1; c < 3; ++c) {
    EXPECT_EQ(counts[c - 1][0].item<double>(), ((a == c) & (b == c)).sum().item<double>());
    EXPECT_EQ(counts[c - 1][1].item<double>(), (a == c).sum().item<double>());
  }
  const auto dice = dice_from_counts(counts);
  EXPECT_NEAR(dice[0], 2 * counts[0][0].item<double>() / (counts[0][1].item<double>() + counts[0][2].item<double>()), 1e-12);

  const at::Tensor mask = torch::rand({6, 7, 8}) > 0.93;
  const std::array<double, 3> spacing{2.5, 0.7, 1.1};
  const at::Tensor edt = distance_transform(mask, spacing);
  const at::Tensor points = mask.nonzero().to(torch::kDouble);
  ASSERT_GT(points.size(0), 0);
  for (int z = 0; z < 6; ++z)
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 8; ++x) {
        const at::Tensor d = (points - torch::tensor({double(z), double(y), double(x)}, torch::kDouble)) *
                             torch::tensor({spacing[0], spacing[1], spacing[2]}, torch::kDouble);
        EXPECT_NEAR(edt[z][y][x].item<double>(), d.pow(2).sum(1).min().sqrt().item<double>(), 1e-9);
      }
}

TEST(Metrics, Hausdorff95OfShiftedCubesIsTheShift) {
  at::Tensor a = torch::zeros({20, 20, 20}, torch::kLong), b = torch::zeros({20, 20, 20}, torch::kLong);
  a.slice(0, 5, 12).slice(1, 5, 12).slice(2, 5, 12).fill_(1);
  b.slice(0, 5, 12).slice(1, 5, 12).slice(2, 8, 15).fill_(1);  // shifted 3 voxels along x
  const auto hd = hausdorff95(a, b, 2, {1.0, 1.0, 2.0});
  EXPECT_NEAR(hd[0], 6.0, 1e-9);  // 3 voxels of 2 mm
  EXPECT_TRUE(std::isnan(hausdorff95(a, torch::zeros_like(b), 2, {1, 1, 1})[0]));
}

}  // namespace
}  // namespace vitruvian::models
