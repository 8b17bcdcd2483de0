// Sliding windows: starts for volumes smaller than, equal to and not a multiple of the window;
// Gaussian stitching equal to a brute-force reference; pointwise networks pass through exactly;
// mirror averaging; export and load of a model give the same outputs.
#include "models/sliding_window.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "core/errors.h"
#include "models/registry.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian::models {
namespace {

TEST(SlidingWindow, StartsCoverTheVolumeWithAtLeastTheOverlap) {
  EXPECT_EQ(window_starts(10, 16, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(window_starts(16, 16, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(window_starts(32, 16, 0.5), (std::vector<std::int64_t>{0, 8, 16}));
  const auto starts = window_starts(37, 16, 0.5);  // not a multiple
  EXPECT_EQ(starts.front(), 0);
  EXPECT_EQ(starts.back(), 37 - 16);
  for (std::size_t i = 1; i < starts.size(); ++i) EXPECT_LE(starts[i] - starts[i - 1], 8);
  const at::Tensor g = gaussian_importance({8, 9, 10}, 1.0 / 8);
  EXPECT_EQ(g.sizes(), (std::vector<std::int64_t>{8, 9, 10}));
  EXPECT_NEAR(g.max().item<double>(), 1.0, 1e-6);
  EXPECT_GE(g.min().item<double>(), 1e-3 - 1e-9);
}

/// The plain reference: every window, its Gaussian weights from the formula, summed voxel by voxel.
at::Tensor reference(const at::Tensor& image, std::int64_t classes, const WindowForward& f, const SlidingWindowOptions& o) {
  const auto& w = o.window;
  at::Tensor acc = torch::zeros({classes, image.size(1), image.size(2), image.size(3)}, torch::kDouble);
  at::Tensor wsum = torch::zeros({image.size(1), image.size(2), image.size(3)}, torch::kDouble);
  std::vector<double> map;
  for (std::int64_t z = 0; z < w[0]; ++z)
    for (std::int64_t y = 0; y < w[1]; ++y)
      for (std::int64_t x = 0; x < w[2]; ++x) {
        double e = 0;
        const std::int64_t idx[3] = {z, y, x};
        for (int a = 0; a < 3; ++a) {
          const double c = idx[a] - (w[a] - 1) / 2.0, s = w[a] * o.sigma_scale;
          e += c * c / (2 * s * s);
        }
        map.push_back(std::exp(-e));
      }
  const double peak = *std::max_element(map.begin(), map.end());
  for (double& m : map) m = std::max(m / peak, 1e-3);  // scaled to a maximum of 1, floored at 1e-3
  const at::Tensor weights = torch::tensor(map, torch::kDouble).view({w[0], w[1], w[2]});
  for (const auto z : window_starts(image.size(1), w[0], o.overlap))
    for (const auto y : window_starts(image.size(2), w[1], o.overlap))
      for (const auto x : window_starts(image.size(3), w[2], o.overlap)) {
        const at::Tensor win = image.slice(1, z, z + w[0]).slice(2, y, y + w[1]).slice(3, x, x + w[2]).unsqueeze(0);
        const at::Tensor out = f(win)[0].to(torch::kDouble);
        acc.slice(1, z, z + w[0]).slice(2, y, y + w[1]).slice(3, x, x + w[2]) += out * weights;
        wsum.slice(0, z, z + w[0]).slice(1, y, y + w[1]).slice(2, x, x + w[2]) += weights;
      }
  return (acc / wsum).to(torch::kFloat);
}

TEST(SlidingWindow, GaussianStitchingEqualsTheBruteForceReference) {
  torch::manual_seed(4);
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(2, 3, 3).padding(1));  // border effects differ per window
  torch::NoGradGuard no_grad;
  const WindowForward forward = [&](const at::Tensor& x) { return conv->forward(x); };
  SlidingWindowOptions o;
  o.window = {6, 8, 7};
  o.batch = 3;
  for (const auto& shape : std::vector<std::array<std::int64_t, 3>>{{6, 8, 7}, {12, 16, 14}, {13, 19, 9}}) {
    const at::Tensor image = torch::randn({2, shape[0], shape[1], shape[2]});
    const at::Tensor fast = sliding_window_logits(image, 3, forward, o);
    EXPECT_TRUE(torch::allclose(fast, reference(image, 3, forward, o), 1e-4, 1e-5))
        << shape[0] << "x" << shape[1] << "x" << shape[2];
  }
}

TEST(SlidingWindow, PointwiseNetworksPassThroughAndSmallVolumesArePadded) {
  const WindowForward twice = [](const at::Tensor& x) { return torch::cat({x, 2 * x}, 1); };
  SlidingWindowOptions o;
  o.window = {8, 8, 8};
  o.mirror_axes = 7;  // all 8 flips: a pointwise network is flip-equivariant
  const at::Tensor image = torch::randn({1, 5, 11, 8});  // z smaller than the window
  const at::Tensor out = sliding_window_logits(image, 2, twice, o);
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 5, 11, 8}));
  EXPECT_TRUE(torch::allclose(out[0], image[0], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out[1], 2 * image[0], 1e-5, 1e-6));
  EXPECT_THROW(sliding_window_logits(image, 3, twice, o), InputError);  // 2 channels, 3 classes
}

TEST(ModelExport, LoadsToTheSameOutputsAndRefusesBrokenFiles) {
  namespace fs = std::filesystem;
  const testing::ScratchDir scratch;
  const fs::path dir = scratch / "model";  // export_model makes it
  ModelConfig config;
  config.name = "resenc_unet";
  config.stages = 3;
  config.base_features = 4;
  config.strides = {1, 2, 2, 2, 2, 2};
  UNet net = make_model(config, 2, 3);
  net->eval();
  ModelCard card;
  card.model = config;
  card.inputs = {{"t1_pre", Normalization::kZscore}, {"portal", Normalization::kCt, -100, 300, 50, 80}};
  card.classes = {{"background", "liver", "spleen"}, {{0}, {29}, {33, 34}}};
  card.patch = {8, 16, 16};
  export_model(dir, net, card);
  auto [loaded, loaded_card] = load_model(dir);
  EXPECT_EQ(loaded_card.classes.names, card.classes.names);
  EXPECT_EQ(loaded_card.classes.label_ids, card.classes.label_ids);
  ASSERT_EQ(loaded_card.inputs.size(), 2u);
  EXPECT_EQ(loaded_card.channel_names(), (std::vector<std::string>{"t1_pre", "portal"}));
  EXPECT_EQ(loaded_card.inputs[0].normalization, Normalization::kZscore);
  EXPECT_EQ(loaded_card.inputs[1].normalization, Normalization::kCt);
  EXPECT_DOUBLE_EQ(loaded_card.inputs[1].lower, -100);
  EXPECT_DOUBLE_EQ(loaded_card.inputs[1].std, 80);
  EXPECT_EQ(loaded_card.model.strides, config.strides);
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({1, 2, 8, 16, 16});
  EXPECT_TRUE(torch::equal(net->forward(x)[0], loaded->forward(x)[0]));
  // A card with an empty patch, a negative step, or a whole number given as a float (one beyond
  // int64 is undefined behaviour to cast) is refused, naming the file and the value.
  const std::string text = card_to_json(card);
  for (const auto& [good, bad, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"\"patch\": [\n    8", "\"patch\": [\n    0", "patch 0"},
           {"\"step\": 0", "\"step\": -3", "step -3"},
           {"\"step\": 0", "\"step\": 2.5", "step is 2.5; expected a whole number"},
           {"\"step\": 0", "\"step\": 2222222222222222222222222", "step is 2.22222"},
           {"\"patch\": [\n    8", "\"patch\": [\n    1e30", "patch is 1e+30"}}) {
    std::string edited = text;
    ASSERT_NE(edited.find(good), std::string::npos) << text;
    edited.replace(edited.find(good), good.size(), bad);
    try {
      card_from_json(edited, "model.json");
      ADD_FAILURE() << "a card with " << message << " loaded";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("model.json: " + message), std::string::npos) << e.what();
    }
  }
  // A cut-short weights file is refused with the file named.
  const auto size = fs::file_size(dir / "model.pt");
  fs::resize_file(dir / "model.pt", size / 2);
  try {
    load_model(dir);
    ADD_FAILURE() << "a truncated model.pt loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.pt"), std::string::npos);
  }
  for (const auto& name : model_names()) {
    ModelConfig c;
    c.name = name;
    c.stages = 2;
    c.base_features = 2;
    EXPECT_NO_THROW(make_model(c, 1, 2)) << name;
  }
  ModelConfig bad;
  bad.name = "vnet";
  EXPECT_THROW(make_model(bad, 1, 2), ConfigError);
}

}  // namespace
}  // namespace vitruvian::models
