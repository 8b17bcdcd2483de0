// The oneDNN inference engine against the network's own forward: isotropic and anisotropic
// U-Nets, channel counts that are not a multiple of oneDNN's block, with and without deep
// supervision, several batch sizes sharing one buffer pool; what it refuses and why; and the
// blocked norm kernel against the plain one.
#include "models/onednn_unet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "models/losses.h"
#include "models/onednn_ops.h"
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
  // 4, 8 and 12 channels: on CPUs where oneDNN blocks channels by 16 or 8 (AVX2), every
  // activation is padded inside its blocks; 1×3×3 kernels and in-plane pooling first; two input
  // sequences.
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
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    instance_norm_act_blocked_(blocked.data_ptr<float>(), n, c, block, voxels, gamma.data_ptr<float>(), beta.data_ptr<float>(),
                               1e-5, 0.01F);
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

at::Tensor channels_last(const at::Tensor& x) { return x.contiguous(at::MemoryFormat::ChannelsLast3d); }

/// Gradients of sum(y · r) for a fixed random r, with respect to `inputs`.
std::vector<at::Tensor> gradients(const at::Tensor& y, const at::Tensor& r, const std::vector<at::Tensor>& inputs) {
  return torch::autograd::grad({(y * r).sum()}, inputs);
}

TEST(OneDnnOps, ConvolutionsAndTheirGradientsEqualLibTorchs) {
  if (!onednn_channels_last()) GTEST_SKIP() << "oneDNN keeps no channels-last layout on this CPU";
  torch::manual_seed(5);
  struct Case {
    std::int64_t in, out;
    std::array<std::int64_t, 3> kernel, stride;
    std::int64_t dilation;
    bool bias;
  };
  // 3³ and 1×3×3 kernels, strided per axis, dilated (the selective-kernel branch), a 1×1 head.
  for (const Case& c : {Case{3, 8, {3, 3, 3}, {1, 1, 1}, 1, true}, Case{8, 16, {1, 3, 3}, {1, 2, 2}, 1, true},
                        Case{16, 16, {3, 3, 3}, {2, 2, 2}, 1, true}, Case{8, 8, {3, 3, 3}, {1, 1, 1}, 2, true},
                        Case{16, 4, {1, 1, 1}, {1, 1, 1}, 1, false}}) {
    SCOPED_TRACE(testing::Message() << c.in << "->" << c.out << " stride " << c.stride[1] << " dilation " << c.dilation);
    const at::Tensor x = torch::randn({2, c.in, 7, 12, 9}).requires_grad_();
    const at::Tensor w = (torch::randn({c.out, c.in, c.kernel[0], c.kernel[1], c.kernel[2]}) * 0.2).requires_grad_();
    const at::Tensor b = c.bias ? torch::randn({c.out}).requires_grad_() : at::Tensor();
    std::array<std::int64_t, 3> padding{};
    for (int a = 0; a < 3; ++a) padding[a] = c.dilation * (c.kernel[a] / 2);
    const at::Tensor want = at::conv3d(x, w, b, c.stride, padding, c.dilation);
    const at::Tensor got = onednn_conv3d(channels_last(x), w, b, c.stride, padding, c.dilation);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast3d));
    EXPECT_LT(relative_difference(got, want), 1e-5);
    const at::Tensor r = torch::randn_like(want);
    std::vector<at::Tensor> inputs{x, w};
    if (c.bias) inputs.push_back(b);
    const auto g_want = gradients(want, r, inputs), g_got = gradients(got, r, inputs);
    for (std::size_t i = 0; i < inputs.size(); ++i) EXPECT_LT(relative_difference(g_got[i], g_want[i]), 1e-5) << "gradient " << i;
  }
  // Mismatched shapes are the caller's error, said as such.
  EXPECT_THROW(onednn_conv3d(channels_last(torch::randn({1, 3, 4, 4, 4})), torch::randn({8, 4, 3, 3, 3}), torch::randn({8}),
                             {1, 1, 1}, {1, 1, 1}, 1),
               InputError);
  EXPECT_THROW(onednn_conv3d(channels_last(torch::randn({1, 4, 4, 4, 4})), torch::randn({8, 4, 3, 3, 3}), torch::randn({7}),
                             {1, 1, 1}, {1, 1, 1}, 1),
               InputError);
  // The decoder's upsampling: transposed, kernel = stride, anisotropic.
  const at::Tensor x = torch::randn({2, 16, 3, 5, 4}).requires_grad_();
  const at::Tensor w = (torch::randn({16, 8, 1, 2, 2}) * 0.2).requires_grad_();
  const at::Tensor want = at::conv_transpose3d(x, w, {}, {1, 2, 2});
  const at::Tensor got = onednn_conv_transpose3d(channels_last(x), w);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT(relative_difference(got, want), 1e-5);
  const at::Tensor r = torch::randn_like(want);
  const auto g_want = gradients(want, r, {x, w}), g_got = gradients(got, r, {x, w});
  for (std::size_t i = 0; i < 2; ++i) EXPECT_LT(relative_difference(g_got[i], g_want[i]), 1e-5) << "gradient " << i;
}

TEST(OneDnnOps, ChannelsLastNormGradientsEqualThePlainOnes) {
  torch::manual_seed(6);
  const at::Tensor x = (torch::randn({2, 20, 9, 11, 13}) * 2 + 1).requires_grad_();  // more than one 1024-voxel chunk
  const at::Tensor gamma = (torch::rand({20}) + 0.5).requires_grad_(), beta = torch::randn({20}).requires_grad_();
  const at::Tensor want = instance_norm_act(x.contiguous(), gamma, beta, 1e-5, 0.01);
  const at::Tensor got = instance_norm_act(channels_last(x), gamma, beta, 1e-5, 0.01);
  EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  EXPECT_LT(relative_difference(got, want), 1e-5);
  const at::Tensor r = torch::randn_like(want);
  const auto g_want = gradients(want, r, {x, gamma, beta}), g_got = gradients(got, r, {x, gamma, beta});
  for (std::size_t i = 0; i < 3; ++i) EXPECT_LT(relative_difference(g_got[i], g_want[i]), 1e-4) << "gradient " << i;
}

TEST(OneDnnOps, EveryNetworkTrainsAndEvaluatesAsOnLibTorchsOps) {
  if (!onednn_channels_last()) GTEST_SKIP() << "oneDNN keeps no channels-last layout on this CPU";
  for (const BlockType block : {BlockType::kPlain, BlockType::kResidual, BlockType::kSelectiveKernel}) {
    SCOPED_TRACE(block_type_name(block));
    torch::manual_seed(7);
    UNetOptions o(2, 3);
    o.features({8, 16, 24}).strides({{1, 1, 1}, {1, 2, 2}, {2, 2, 2}}).kernels({{1, 3, 3}, {3, 3, 3}, {3, 3, 3}}).block(block);
    UNet reference(o), net(o);
    randomise_norms(reference);
    {
      torch::NoGradGuard no_grad;
      const auto from = reference->named_parameters();
      for (auto& item : net->named_parameters()) item.value().copy_(from[item.key()]);
    }
    ASSERT_TRUE(net->use_onednn(true));
    const at::Tensor x = torch::randn({2, 2, 7, 13, 10});  // odd sizes: cropped upsampling
    const at::Tensor target = torch::randint(0, 3, {2, 7, 13, 10});
    reference->train();
    net->train();
    const auto want = reference->forward(x), got = net->forward(x);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_difference(got[i], want[i]), 1e-4) << "output " << i;
    const auto loss = [&](const std::vector<at::Tensor>& outputs) { return (outputs[0] * outputs[0]).mean() + outputs[1].mean(); };
    loss(want).backward();
    loss(got).backward();
    const auto from = reference->named_parameters();
    for (const auto& item : net->named_parameters()) {
      EXPECT_LT(relative_difference(item.value().grad(), from[item.key()].grad()), 1e-4) << item.key();
    }
    reference->eval();
    net->eval();
    torch::NoGradGuard no_grad;
    EXPECT_LT(relative_difference(net->forward(x)[0], reference->forward(x)[0]), 1e-4);
  }
}

}  // namespace
}  // namespace vitruvian::models
