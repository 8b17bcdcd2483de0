// The Predictor against the plain sliding-window reference on synthetic volumes: the same labels
// voxel for voxel (normalisation from the card, channels from other grids, the card's spacing
// and back, postprocessing), the memory estimate refusing a study, 4D inputs refused.
#include "launch/campaign/predictor.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../../data/scratch_test.h"
#include "core/errors.h"
#include "data/preprocess.h"
#include "models/postprocess.h"
#include "models/sliding_window.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;

constexpr double kLower = -200, kUpper = 300, kMean = 40, kStd = 120;  // the card's CT statistics

class PredictorTest : public data::ScratchTest<11> {
 protected:
  void SetUp() override {
    ScratchTest::SetUp();
    models::ModelConfig config;
    config.stages = 3;
    config.base_features = 4;
    net_ = models::make_model(config, 2, 3);
    net_->eval();
    card_.model = config;
    card_.inputs = {{"ct", Normalization::kCt, kLower, kUpper, kMean, kStd}, {"pet", Normalization::kZscore}};
    card_.classes = {{"background", "liver", "spleen"}, {{0}, {1}, {2}}};
    card_.patch = {8, 16, 16};
    card_.spacing = {1.0, 1.0, 2.0};
    models::export_model(dir_ / "model", net_, card_);
    options_.onednn = false;  // LibTorch's ops, like the reference
    options_.batch = 3;
  }

  Predictor predictor(const PredictorOptions& options) const {
    auto model = std::make_shared<LoadedModel>(dir_ / "model", options, false);
    return Predictor(model, options, std::make_shared<models::BandPlacement>(options.device));
  }

  /// A CT-like volume [z, y, x] with the given spacing (x, y, z).
  static data::Volume volume(std::array<std::int64_t, 3> zyx, std::array<double, 3> spacing, double scale) {
    data::Volume v;
    v.voxels = (at::randn({zyx[0], zyx[1], zyx[2]}) * scale).to(at::kFloat);
    v.type = data::VoxelType::kFloat32;
    v.geometry.spacing = spacing;
    v.geometry.origin = {-12.5, 30.25, 7.0};
    return v;
  }

  /// The plain reference: normalise both channels as the card says (written out here), blend the
  /// whole volume's logits, argmax.
  at::Tensor reference(const at::Tensor& ct, const at::Tensor& pet) const {
    return blend(ct_normalised(ct), zscore(pet));
  }
  /// CT: clipped to the card's percentiles, then (x − mean) / std, in float.
  static at::Tensor ct_normalised(const at::Tensor& ct) {
    const at::Tensor clipped = ct.clamp(kLower, kUpper);
    return (clipped - at::full_like(clipped, kMean)) / at::full_like(clipped, kStd);
  }
  /// MR-style: the volume's own mean and population std (computed in double).
  static at::Tensor zscore(const at::Tensor& x) {
    const at::Tensor d = x.to(at::kDouble);
    return x.sub(d.mean().item<double>()).div(d.std(/*unbiased=*/false).item<double>());
  }
  at::Tensor blend(const at::Tensor& c0, const at::Tensor& c1) const {
    models::SlidingWindowOptions window;
    window.window = card_.patch;
    window.overlap = options_.overlap;
    window.batch = options_.batch;
    torch::NoGradGuard no_grad;
    const at::Tensor logits = models::sliding_window_logits(
        at::stack({c0, c1}).to(at::kFloat), 3, [&](const at::Tensor& x) { return net_->forward(x)[0]; }, window);
    return logits.argmax(0).to(at::kByte);
  }

  mutable models::UNet net_{nullptr};
  models::ModelCard card_;
  PredictorOptions options_;
};

TEST_F(PredictorTest, EqualsTheWholeVolumeBlendOnTheCardsGrid) {
  const data::Volume ct = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 200);
  const data::Volume pet = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 3);
  const Prediction p = predictor(options_).predict({{"ct", &ct}, {"pet", &pet}}, {}, "s1", "organs");
  EXPECT_FALSE(p.resampled);
  EXPECT_EQ(p.engine, "libtorch");
  EXPECT_GT(p.windows, 4);
  ASSERT_EQ(p.labels.voxels.scalar_type(), at::kByte);
  EXPECT_TRUE(p.labels.geometry.matches(ct.geometry));
  const at::Tensor expected = reference(ct.voxels, pet.voxels);
  EXPECT_TRUE(at::equal(p.labels.voxels, expected)) << (p.labels.voxels != expected).sum().item<std::int64_t>() << " voxels differ";
  EXPECT_GT(std::get<0>(at::_unique(expected)).numel(), 1) << "the network predicts one class everywhere: a weak test";
}

TEST_F(PredictorTest, OtherChannelsComeOntoTheFirstOnesGrid) {
  const data::Volume ct = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 200);
  data::Volume pet = volume({14, 25, 20}, {1.45, 1.48, 3.0}, 3);  // the same region, coarser
  const Prediction p = predictor(options_).predict({{"ct", &ct}, {"pet", &pet}}, {}, "s1", "organs");
  const at::Tensor pet_on_ct =
      data::resample_onto(pet, ct.geometry, ct.shape_zyx(), data::Interpolation::kLinear).voxels;
  EXPECT_TRUE(at::equal(p.labels.voxels, reference(ct.voxels, pet_on_ct)));
}

TEST_F(PredictorTest, ResamplesToTheCardsSpacingAndBack) {
  const data::Volume ct = volume({30, 37, 29}, {1.0, 1.0, 1.4}, 200);  // 1.4 mm slices; the card says 2 mm
  const data::Volume pet = volume({30, 37, 29}, {1.0, 1.0, 1.4}, 3);
  const Prediction p = predictor(options_).predict({{"ct", &ct}, {"pet", &pet}}, {}, "s1", "organs");
  EXPECT_TRUE(p.resampled);
  ASSERT_EQ(p.labels.shape_zyx(), ct.shape_zyx());
  EXPECT_TRUE(p.labels.geometry.matches(ct.geometry));
  // Reference: each normalised channel to 2 mm, the blend there, labels back (nearest).
  data::Volume c0, c1;
  c0.type = c1.type = data::VoxelType::kFloat32;
  c0.geometry = c1.geometry = ct.geometry;
  c0.voxels = ct_normalised(ct.voxels).contiguous();
  c1.voxels = zscore(pet.voxels).contiguous();
  c0 = data::resample_to_spacing(c0, card_.spacing, data::Interpolation::kLinear);
  c1 = data::resample_to_spacing(c1, card_.spacing, data::Interpolation::kLinear);
  models::SlidingWindowOptions window;
  window.window = card_.patch;
  window.batch = options_.batch;
  torch::NoGradGuard no_grad;
  data::Volume labels;
  labels.voxels = models::sliding_window_logits(at::stack({c0.voxels, c1.voxels}), 3,
                                                [&](const at::Tensor& x) { return net_->forward(x)[0]; }, window)
                      .argmax(0)
                      .to(at::kByte);
  labels.type = data::VoxelType::kUInt8;
  labels.geometry = c0.geometry;
  const data::Volume back = data::resample_onto(labels, ct.geometry, ct.shape_zyx(), data::Interpolation::kNearest);
  EXPECT_TRUE(at::equal(p.labels.voxels, back.voxels));
}

TEST_F(PredictorTest, PostprocessingKeepsTheLargestComponentAndCountsWhatItRemoved) {
  const data::Volume ct = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 200);
  const data::Volume pet = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 3);
  Postprocess post;
  post.largest_component = {1};
  const Prediction p = predictor(options_).predict({{"ct", &ct}, {"pet", &pet}}, post, "s1", "organs");
  at::Tensor expected = reference(ct.voxels, pet.voxels);
  const std::int64_t removed = models::keep_largest_component(expected, 1);
  EXPECT_TRUE(at::equal(p.labels.voxels, expected));
  EXPECT_EQ(p.postprocess["largest_component_removed_voxels"]["liver"].get<std::int64_t>(), removed);
  EXPECT_EQ(models::connected_components(p.labels.voxels == 1).count(), (p.labels.voxels == 1).any().item<bool>() ? 1 : 0);
}

TEST_F(PredictorTest, RefusesStudiesOverTheMemoryLimitAnd4DInputs) {
  const data::Volume ct = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 200);
  const data::Volume pet = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 3);
  PredictorOptions tight = options_;
  tight.memory_limit = 1e5;
  try {
    predictor(tight).predict({{"ct", &ct}, {"pet", &pet}}, {}, "s1", "organs");
    ADD_FAILURE() << "over the memory limit, yet predicted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("organs: out of memory budget"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("21x37x29 voxels and 3 classes"), std::string::npos) << e.what();
  }
  data::Volume frames = pet;
  frames.voxels = at::stack({pet.voxels, pet.voxels});
  frames.frame_times_s = {0, 1};
  try {
    predictor(options_).predict({{"ct", &ct}, {"perfusion", &frames}}, {}, "s1", "organs");
    ADD_FAILURE() << "a 4D series went in";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("perfusion: unsupported geometry: a 2-frame series"), std::string::npos) << e.what();
  }
}

TEST_F(PredictorTest, TheOneDnnEngineGivesTheSameLabelsButForNearTies) {
  PredictorOptions engine = options_;
  engine.onednn = true;
  const data::Volume ct = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 200);
  const data::Volume pet = volume({21, 37, 29}, {1.0, 1.0, 2.0}, 3);
  const Prediction p = predictor(engine).predict({{"ct", &ct}, {"pet", &pet}}, {}, "s1", "organs");
  if (p.engine == "libtorch") GTEST_SKIP() << "oneDNN picks no channel-blocked layout on this CPU: the engine does not apply";
  const at::Tensor expected = reference(ct.voxels, pet.voxels);
  const double agree = (p.labels.voxels == expected).to(at::kDouble).mean().item<double>();
  EXPECT_GE(agree, 0.9999) << p.engine;
}

}  // namespace
}  // namespace vitruvian::campaign
