// The perfusion analysis with its deconvolution on a GPU against the same analysis on the CPU,
// on a head-neck phantom of the validation size; skipped without a CUDA device. oSVD (kernel 7,
// bit-exact) gives the same maps and tissue bit for bit. The model fit's products run on cuBLAS,
// whose sums round differently: its maps agree to float rounding except on the few curves whose
// mixture test or best entry sits on the edge, and the volumes agree.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/device.h"
#include "data/perfusion/perfusion.h"
#include "data/phantom.h"

namespace vitruvian::data {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

const Volume& head_series() {
  static const Volume series = [] {
    PhantomOptions p;
    p.kind = PhantomKind::kHeadNeck;
    p.shape_zyx = {40, 80, 80};
    p.seed = 11;
    return std::move(make_phantom_study(p, 0).series_named("perfusion"));
  }();
  return series;
}

struct Pair {
  PerfusionResult cpu, gpu;
};

Pair both(const std::string& deconvolution) {
  PerfusionOptions o;
  o.deconvolution = deconvolution;
  Pair p{analyse_perfusion(head_series(), o, "head"),
         analyse_perfusion(head_series(), o, "head", {}, {}, at::Device(at::kCUDA, 0))};
  EXPECT_EQ(p.cpu.device, "cpu");
  EXPECT_EQ(p.gpu.device, "cuda:0");
  EXPECT_GT(p.cpu.brain_voxels, 10000);
  return p;
}

/// The share of brain voxels where two maps differ by more than `relative` of the CPU's value (+ 1e-3).
double share_apart(const Volume& cpu, const Volume& gpu, const at::Tensor& brain, double relative) {
  const at::Tensor a = cpu.voxels.masked_select(brain.to(at::kBool)), b = gpu.voxels.masked_select(brain.to(at::kBool));
  return ((a - b).abs() > a.abs() * relative + 1e-3).to(at::kDouble).mean().item<double>();
}

TEST(PerfusionDevice, OsvdGivesTheCpusMapsBitForBit) {
  SKIP_WITHOUT_GPU();
  const Pair p = both("osvd");
  for (const auto& [cpu, gpu] : {std::pair{&p.cpu.cbf, &p.gpu.cbf},
                                 {&p.cpu.cbv, &p.gpu.cbv},
                                 {&p.cpu.mtt, &p.gpu.mtt},
                                 {&p.cpu.tmax, &p.gpu.tmax},
                                 {&p.cpu.ttp, &p.gpu.ttp},
                                 {&p.cpu.tissue, &p.gpu.tissue}}) {
    EXPECT_TRUE(at::equal(cpu->voxels, gpu->voxels));
  }
  EXPECT_EQ(p.cpu.triage.core_ml, p.gpu.triage.core_ml);
  EXPECT_EQ(p.cpu.triage.penumbra_ml, p.gpu.triage.penumbra_ml);
}

TEST(PerfusionDevice, ModelFitGivesTheCpusMapsToRounding) {
  SKIP_WITHOUT_GPU();
  const Pair p = both("model");
  EXPECT_LT(share_apart(p.cpu.cbf, p.gpu.cbf, p.cpu.brain, 1e-3), 0.005);
  EXPECT_LT(share_apart(p.cpu.cbv, p.gpu.cbv, p.cpu.brain, 1e-3), 0.005);
  EXPECT_LT(share_apart(p.cpu.tmax, p.gpu.tmax, p.cpu.brain, 1e-3), 0.005);
  EXPECT_NEAR(p.gpu.triage.core_ml, p.cpu.triage.core_ml, 0.02 * p.cpu.triage.core_ml + 0.1);
  EXPECT_NEAR(p.gpu.triage.penumbra_ml, p.cpu.triage.penumbra_ml, 0.02 * p.cpu.triage.penumbra_ml + 0.1);
  const auto mixed = [](const PerfusionResult& r) { return r.model["mixture"]["curves_mixed"].get<double>(); };
  EXPECT_NEAR(mixed(p.gpu), mixed(p.cpu), 0.01 * mixed(p.cpu) + 5);
}

}  // namespace
}  // namespace vitruvian::data
