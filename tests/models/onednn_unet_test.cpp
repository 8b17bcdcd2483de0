// The oneDNN inference engine against the network's own forward: isotropic and anisotropic
// U-Nets, channel counts that are not a multiple of oneDNN's block, with and without deep
// supervision, several batch sizes sharing one buffer pool; what it refuses and why; and the
// blocked norm kernel against the plain one.
#include "models/onednn_unet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "models/unet.h"

namespace vitruvian::models {
namespace {

/// Largest |a − b| over the largest |b| (at least 1).
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}

/// Non-trivial norm affine parameters (a fresh network has gamma 1, beta 0).
void randomise_norms(UNet& net) {
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    if (item.key().find(".norm.weight") != std::string::npos) item.value().uniform_(0.5, 1.5);
    if (item.key().find(".norm.bias") != std::string::npos) item.value().uniform_(-0.3, 0.3);
  }
}

/// The engine, or nullptr (the reason in *why) when this build or CPU has none: the tests then
/// skip; a network the engine should take must not be refused for another reason.
std::unique_ptr<OneDnnUNet> engine_or_skip(const UNet& net, std::string* why) {
  auto engine = OneDnnUNet::create(*net, why);
  if (!engine) {
    EXPECT_TRUE(why->find("oneDNN") != std::string::npos) << *why;
  }
  return engine;
}

void expect_like_network(UNet& net, OneDnnUNet& engine, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  std::string why;
  ASSERT_TRUE(engine.accepts(x, &why)) << why;
  const at::Tensor want = net->forward(x)[0];
  const at::Tensor got = engine.forward(x);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT(relative_difference(got, want), 1e-4);
}

TEST(OneDnnUNet, EqualsTheNetworkForTheQuickstartShape) {
  torch::manual_seed(1);
  UNet net(UNetOptions::standard(1, 4, 4).features({16, 32, 64, 128}));
  randomise_norms(net);
  net->eval();
  std::string skip;
  auto engine = engine_or_skip(net, &skip);
  if (!engine) GTEST_SKIP() << skip;
  expect_like_network(net, *engine, torch::randn({2, 1, 16, 24, 16}));
  // Another batch size reuses the pool; the first shape still runs, and runs the same twice.
  expect_like_network(net, *engine, torch::randn({1, 1, 16, 24, 16}));
  const at::Tensor x = torch::randn({2, 1, 16, 24, 16});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(engine->forward(x).equal(engine->forward(x)));
  EXPECT_GT(engine->buffer_bytes(), 0);
}

TEST(OneDnnUNet, EqualsTheNetworkForAnisotropicStagesAndUnblockedChannelCounts) {
  torch::manual_seed(2);
  // 4, 8 and 12 channels: every activation padded inside oneDNN's 16- or 8-channel blocks;
  // 1×3×3 kernels and in-plane pooling first; two input sequences.
  for (const bool deep : {true, false}) {
    for (const int convs : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "deep supervision " << deep << ", convolutions per stage " << convs);
      UNetOptions o(2, 3);
      o.features({4, 8, 12}).strides({{1, 1, 1}, {1, 2, 2}, {2, 2, 2}}).kernels({{1, 3, 3}, {3, 3, 3}, {3, 3, 3}});
      o.deep_supervision(deep).convs_per_stage(convs);
      UNet net(o);
      randomise_norms(net);
      net->eval();
      std::string skip;
      auto engine = engine_or_skip(net, &skip);
      if (!engine) GTEST_SKIP() << skip;
      expect_like_network(net, *engine, torch::randn({2, 2, 6, 12, 20}));
    }
  }
}

TEST(OneDnnUNet, SaysWhatItDoesNotTake) {
  torch::manual_seed(3);
  UNetOptions o = UNetOptions::standard(1, 2, 3).features({8, 16, 16});
  std::string why;
  EXPECT_EQ(OneDnnUNet::create(*UNet(UNetOptions(o).block(BlockType::kResidual)), &why), nullptr);
  EXPECT_NE(why.find("residual"), std::string::npos) << why;
  UNet bf16(o);
  bf16->to(at::kBFloat16);
  EXPECT_EQ(OneDnnUNet::create(*bf16, &why), nullptr);
  EXPECT_NE(why.find("BFloat16"), std::string::npos) << why;

  UNet net(o);
  net->eval();
  std::string skip;
  auto engine = engine_or_skip(net, &skip);
  if (!engine) GTEST_SKIP() << skip;
  EXPECT_FALSE(engine->accepts(torch::randn({1, 1, 8, 10, 8}), &why));  // 10 / 2 / 2: not whole
  EXPECT_NE(why.find("axis 1"), std::string::npos) << why;
  EXPECT_FALSE(engine->accepts(torch::randn({1, 2, 8, 8, 8}), &why));  // two channels for one
  EXPECT_FALSE(engine->accepts(torch::randn({1, 1, 8, 8, 8}).to(at::kBFloat16), &why));
  EXPECT_THROW(engine->forward(torch::randn({1, 1, 8, 10, 8})), InputError);
  EXPECT_TRUE(engine->accepts(torch::randn({1, 1, 8, 12, 4}), &why)) << why;
}

TEST(OneDnnUNet, BlockedNormEqualsThePlainKernelAndKeepsPaddingZero) {
  torch::manual_seed(4);
  const std::int64_t n = 2, c = 20, voxels = 1500;  // 20 channels: the last block half padding
  const at::Tensor plain = torch::randn({n, c, voxels}) * 3 + 5;
  const at::Tensor gamma = torch::rand({c}) + 0.5, beta = torch::randn({c});
  at::Tensor want = plain.clone();
  instance_norm_act_(want, gamma, beta, 1e-5, 0.01);
  for (const std::int64_t block : {1, 8, 16, 20}) {  // 20: channels-last (ndhwc)
    SCOPED_TRACE(block);
    const std::int64_t groups = (c + block - 1) / block;
    // [N, C, V] → [N, groups, V, block], padded with zeros.
    at::Tensor blocked = at::constant_pad_nd(plain, {0, 0, 0, groups * block - c})
                             .view({n, groups, block, voxels})
                             .permute({0, 1, 3, 2})
                             .contiguous();
    at::Tensor two_threads = blocked.clone();
    instance_norm_act_blocked_(blocked.data_ptr<float>(), n, c, block, voxels, gamma.data_ptr<float>(), beta.data_ptr<float>(),
                               1e-5, 0.01F);
    const int threads = at::get_num_threads();
    at::set_num_threads(2);
    instance_norm_act_blocked_(two_threads.data_ptr<float>(), n, c, block, voxels, gamma.data_ptr<float>(),
                               beta.data_ptr<float>(), 1e-5, 0.01F);
    at::set_num_threads(threads);
    EXPECT_TRUE(two_threads.equal(blocked));
    const at::Tensor back = blocked.permute({0, 1, 3, 2}).reshape({n, groups * block, voxels});
    EXPECT_LT(relative_difference(back.narrow(1, 0, c), want), 1e-5);
    if (groups * block > c) {
      EXPECT_TRUE(back.narrow(1, c, groups * block - c).eq(0).all().item<bool>());
    }
  }
}

}  // namespace
}  // namespace vitruvian::models
