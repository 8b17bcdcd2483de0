// The CUDA kernels against their CPU references on random inputs; skipped without a GPU.
// Window accumulation, normalisation, resampling and labels must match bit for bit; softmax
// probabilities and statistics' sums to stated tolerances. The deconvolution of curves matches
// bit for bit too.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/kernels/kernels.h"
#include "core/kernels/kernels_cuda.h"
#include "tests/core/perfusion_curves.h"

namespace vitruvian::kernels {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

/// A device copy of a host vector, copied back with host().
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<std::size_t>(1, size_) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceVector(std::size_t size) : DeviceVector(std::vector<T>(size)) {}
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return data_; }
  std::vector<T> host() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> out(size_);
    EXPECT_EQ(cudaMemcpy(out.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  T* data_ = nullptr;
  std::size_t size_;
};

std::vector<float> random_floats(std::size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

/// Labels in blocks of `block` voxels along x (regions, as segmentations have), some random.
template <typename L>
std::vector<L> blocky_labels(std::size_t n, int classes, int block, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, classes - 1);
  std::vector<L> v(n);
  for (std::size_t i = 0; i < n; i += static_cast<std::size_t>(block)) {
    const L l = static_cast<L>(d(rng));
    for (std::size_t j = i; j < std::min(n, i + static_cast<std::size_t>(block)); ++j) v[j] = l;
  }
  for (std::size_t i = 0; i < n; i += 97) v[i] = static_cast<L>(d(rng));
  return v;
}

TEST(KernelsCuda, AccumulateWindowsMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  const std::int64_t K = 4, wz = 8, wy = 9, wx = 10, D = 20, H = 21, W = 25, B = 5;
  const std::vector<std::int64_t> origins{0, 0, 0, 4, 5, 6, 12, 12, 15, 4, 6, 7, 0, 11, 0};
  const auto logits = random_floats(static_cast<std::size_t>(B * K * wz * wy * wx), -5, 5, rng);
  const auto importance = random_floats(static_cast<std::size_t>(wz * wy * wx), 0.001f, 1, rng);
  for (const bool half : {false, true}) {
    std::vector<float> values_f = random_floats(static_cast<std::size_t>(K * D * H * W), -1, 1, rng);
    std::vector<std::uint16_t> values_h(values_f.size());
    for (std::size_t i = 0; i < values_h.size(); ++i) values_h[i] = static_cast<std::uint16_t>(0x3c00 + (i % 256));  // ~1.0–1.25
    std::vector<float> weight(static_cast<std::size_t>(D * H * W), 0.5f);
    DeviceVector<float> d_logits(logits), d_importance(importance), d_weight(weight), d_values_f(values_f);
    DeviceVector<std::uint16_t> d_values_h(values_h);
    WindowBatch batch{logits.data(), B, K, wz, wy, wx, origins.data()};
    Accumulator cpu{half ? static_cast<void*>(values_h.data()) : values_f.data(), half, K, D * H * W,
                    Grid::dense(D, H, W), weight.data()};
    accumulate_windows(batch, importance.data(), cpu);
    batch.logits = d_logits.get();
    Accumulator gpu{half ? static_cast<void*>(d_values_h.get()) : d_values_f.get(), half, K, D * H * W,
                    Grid::dense(D, H, W), d_weight.get()};
    cuda::accumulate_windows(batch, d_importance.get(), gpu, nullptr);
    EXPECT_EQ(d_weight.host(), weight);
    if (half) {
      EXPECT_EQ(d_values_h.host(), values_h);
    } else {
      EXPECT_EQ(d_values_f.host(), values_f);
    }
  }
}

TEST(KernelsCuda, NormalizeMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> d(-1024, 3071);
  std::vector<std::int16_t> hu(100003);
  for (auto& v : hu) v = static_cast<std::int16_t>(d(rng));
  const Normalization norm{-300.5, 1200.25, 45.5, 310.75};
  std::vector<float> expected(hu.size());
  normalize(hu.data(), Scalar::kInt16, static_cast<std::int64_t>(hu.size()), norm, expected.data());
  DeviceVector<std::int16_t> d_hu(hu);
  DeviceVector<float> d_out(hu.size());
  cuda::normalize(d_hu.get(), Scalar::kInt16, static_cast<std::int64_t>(hu.size()), norm, d_out.get(), nullptr);
  EXPECT_EQ(d_out.host(), expected);
}

TEST(KernelsCuda, ResampleMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  const std::int64_t src_zyx[3] = {17, 23, 29}, dst_zyx[3] = {31, 19, 37};
  const auto src = random_floats(static_cast<std::size_t>(17 * 23 * 29), -1000, 1000, rng);
  std::vector<std::int32_t> labels(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) labels[i] = static_cast<std::int32_t>(src[i]) / 100;
  IndexMap map;
  const double a[9] = {0.77, 0.05, 0.0, -0.04, 1.21, 0.02, 0.01, 0.0, 0.55};
  std::copy(a, a + 9, map.a);
  map.t[0] = -1.3, map.t[1] = 0.4, map.t[2] = 0.9;
  const std::size_t out_n = 31 * 19 * 37;
  for (const bool fill_outside : {false, true}) {
    std::vector<float> linear(out_n);
    resample(src.data(), Scalar::kFloat32, src_zyx, linear.data(), dst_zyx, map, {true, fill_outside, -5});
    std::vector<std::int32_t> nearest(out_n);
    resample(labels.data(), Scalar::kInt32, src_zyx, nearest.data(), dst_zyx, map, {false, fill_outside, 3});
    DeviceVector<float> d_src(src), d_linear(out_n);
    DeviceVector<std::int32_t> d_labels(labels), d_nearest(out_n);
    cuda::resample(d_src.get(), Scalar::kFloat32, src_zyx, d_linear.get(), dst_zyx, map, {true, fill_outside, -5}, nullptr);
    cuda::resample(d_labels.get(), Scalar::kInt32, src_zyx, d_nearest.get(), dst_zyx, map, {false, fill_outside, 3}, nullptr);
    EXPECT_EQ(d_linear.host(), linear);
    EXPECT_EQ(d_nearest.host(), nearest);
  }
}

TEST(KernelsCuda, SoftmaxArgmaxMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  const std::int64_t K = 7, D = 6, H = 33, W = 40;  // a cropped view: 30 × 37 of each row
  const Grid view{D, 30, 37, H * W, W};
  auto values = random_floats(static_cast<std::size_t>(K * D * H * W), -20, 20, rng);
  const auto weight = random_floats(static_cast<std::size_t>(D * H * W), 0.01f, 3, rng);
  const Accumulator cpu{values.data(), false, K, D * H * W, view, const_cast<float*>(weight.data())};
  const std::size_t n = static_cast<std::size_t>(view.voxels());
  std::vector<std::uint8_t> labels(n);
  std::vector<float> prob(n);
  softmax_argmax(cpu, labels.data(), Scalar::kUInt8, prob.data());
  DeviceVector<float> d_values(values), d_weight(weight), d_prob(n);
  DeviceVector<std::uint8_t> d_labels(n);
  const Accumulator gpu{d_values.get(), false, K, D * H * W, view, d_weight.get()};
  cuda::softmax_argmax(gpu, d_labels.get(), Scalar::kUInt8, d_prob.get(), nullptr);
  EXPECT_EQ(d_labels.host(), labels);
  const auto got = d_prob.host();
  for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], prob[i], 2e-6f + 2e-6f * prob[i]) << "voxel " << i;
}

TEST(KernelsCuda, LabelStatsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const Grid grid = Grid::dense(37, 41, 53);
  const auto n = static_cast<std::size_t>(grid.voxels());
  const auto image = random_floats(n, -1000, 1000, rng);
  for (const int classes : {5, 100, 300}) {  // per-block shared arrays up to 128 labels, global beyond
    auto labels = blocky_labels<std::int32_t>(n, classes, 29, rng);
    labels[n / 2] = classes + 3;  // outside the range
    std::vector<LabelStats> expected(static_cast<std::size_t>(classes)), got(static_cast<std::size_t>(classes));
    const std::int64_t outside = label_stats(labels.data(), Scalar::kInt32, grid, image.data(), Scalar::kFloat32, classes, expected.data());
    DeviceVector<std::int32_t> d_labels(labels);
    DeviceVector<float> d_image(image);
    // The caller's scratch memory for one of them, allocated by the kernel for the others.
    DeviceVector<unsigned char> workspace(cuda::label_stats_workspace_bytes(classes));
    EXPECT_EQ(cuda::label_stats(d_labels.get(), Scalar::kInt32, grid, d_image.get(), Scalar::kFloat32, classes, got.data(), nullptr,
                                classes == 100 ? workspace.get() : nullptr),
              outside);
    for (int l = 0; l < classes; ++l) {
      const auto& e = expected[static_cast<std::size_t>(l)];
      const auto& g = got[static_cast<std::size_t>(l)];
      ASSERT_EQ(g.count, e.count) << "label " << l;
      for (int a = 0; a < 3; ++a) {
        EXPECT_EQ(g.box_min[a], e.box_min[a]);
        EXPECT_EQ(g.box_max[a], e.box_max[a]);
        EXPECT_DOUBLE_EQ(g.index_sum[a], e.index_sum[a]);  // whole numbers below 2^53: exact in any order
      }
      EXPECT_NEAR(g.sum, e.sum, 1e-9 * (std::abs(e.sum) + e.sum_sq));
      EXPECT_NEAR(g.sum_sq, e.sum_sq, 1e-12 * e.sum_sq + 1e-9);
      EXPECT_EQ(g.min, e.min);
      EXPECT_EQ(g.max, e.max);
    }
  }
}

TEST(KernelsCuda, ConnectedRootsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  const Grid grid = Grid::dense(48, 57, 63);
  const auto n = static_cast<std::size_t>(grid.voxels());
  // Densities around each connectivity's percolation threshold: long, branching components.
  for (const float density : {0.1f, 0.25f, 0.32f, 0.5f}) {
    std::bernoulli_distribution d(density);
    std::vector<std::uint8_t> mask(n);
    for (auto& m : mask) m = d(rng) ? 1 : 0;
    DeviceVector<std::uint8_t> d_mask(mask);
    for (const int connectivity : {6, 18, 26}) {
      std::vector<std::int32_t> expected(n);
      connected_roots(mask.data(), grid, connectivity, expected.data());
      DeviceVector<std::int32_t> d_roots(n);
      cuda::connected_roots(d_mask.get(), grid, connectivity, d_roots.get(), nullptr);
      EXPECT_EQ(d_roots.host(), expected) << "density " << density << ", connectivity " << connectivity;
    }
  }
}

/// Perfusion curves of an arterial input of `samples` frames, deconvolved on the CPU and on the
/// device (with the caller's workspace or without): every output equal bit for bit.
void expect_deconvolution_matches(std::int64_t samples, std::int64_t n, double limit, bool workspace) {
  const double dt = 1.5;
  const at::Tensor aif = testing::gamma_variate_aif(samples, dt);
  const testing::CirculantBasis b = testing::circulant_basis(aif, dt);
  const std::vector<std::int32_t> levels = testing::levels_above(b.singular, 0.02);
  // 64 tissue curves repeated, each copy with its own noise level (0 … 4 HU): lanes that stop at
  // different levels of the search.
  const at::Tensor base = testing::random_tissue(aif, dt, 64, 0.0);
  const at::Tensor sd = 4.0 * torch::rand({n, 1});
  const at::Tensor curves =
      (base.repeat({(n + 63) / 64, 1}).slice(0, 0, n) + sd * torch::randn({n, samples})).contiguous();
  const auto to_vector = [](const at::Tensor& t) {
    return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  };
  const auto host_curves = to_vector(curves), analysis = to_vector(b.analysis), synthesis = to_vector(b.synthesis);
  ResidueBasis basis;
  basis.samples = samples, basis.length = 2 * samples, basis.components = 2 * samples;
  basis.analysis = analysis.data(), basis.synthesis = synthesis.data();
  basis.levels = levels.data(), basis.n_levels = static_cast<std::int64_t>(levels.size());
  basis.max_oscillation = limit;
  const auto count = static_cast<std::size_t>(n);
  std::vector<float> peak(count), peak_at(count);
  std::vector<std::int32_t> components(count);
  deconvolve_curves(host_curves.data(), n, basis, {peak.data(), peak_at.data(), components.data()});

  DeviceVector<float> d_curves(host_curves), d_analysis(analysis), d_synthesis(synthesis), d_peak(count),
      d_peak_at(count);
  DeviceVector<std::int32_t> d_components(count);
  DeviceVector<unsigned char> d_workspace(workspace ? cuda::deconvolve_workspace_bytes(n, basis) : 1);
  ResidueBasis device_basis = basis;
  device_basis.analysis = d_analysis.get(), device_basis.synthesis = d_synthesis.get();
  cuda::deconvolve_curves(d_curves.get(), n, device_basis, {d_peak.get(), d_peak_at.get(), d_components.get()}, nullptr,
                          workspace ? d_workspace.get() : nullptr);
  const auto got_peak = d_peak.host(), got_at = d_peak_at.host();
  const auto got_components = d_components.host();
  const std::string where = "T " + std::to_string(samples) + ", limit " + std::to_string(limit);
  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_EQ(got_components[i], components[i]) << where << ", curve " << i;
    ASSERT_EQ(std::memcmp(&got_peak[i], &peak[i], sizeof(float)), 0)
        << where << ", curve " << i << ": " << got_peak[i] << " vs " << peak[i];
    ASSERT_EQ(std::memcmp(&got_at[i], &peak_at[i], sizeof(float)), 0)
        << where << ", curve " << i << ": " << got_at[i] << " vs " << peak_at[i];
  }
  if (limit > 0) {
    EXPECT_LT(*std::min_element(components.begin(), components.end()), levels.back()) << where;
  }
}

TEST(KernelsCuda, DeconvolveCurvesMatchesCpu) {
  SKIP_WITHOUT_GPU();
  torch::manual_seed(7);
  expect_deconvolution_matches(30, 5003, 0.095, false);
  expect_deconvolution_matches(40, 4099, 0.095, true);
  expect_deconvolution_matches(40, 1001, 0.0, false);     // plain SVD
  expect_deconvolution_matches(30, 140000, 0.095, true);  // more curves than threads at once
  expect_deconvolution_matches(64, 777, 0.095, false);    // basis over 48 KB of shared memory
  expect_deconvolution_matches(128, 333, 0.095, false);   // basis beyond shared memory: read from global
}

TEST(KernelsCuda, DictionaryMeansMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  const std::int64_t n = 300, K = 1100;  // one block of 1 024 entries and a ragged tail
  auto scores = random_floats(static_cast<std::size_t>(n * K), -6, 8, rng);
  const auto scaled = random_floats(static_cast<std::size_t>(2 * K), 0.1f, 10, rng);
  const auto plain = random_floats(static_cast<std::size_t>(K), -3, 15, rng);
  DictionaryValues cpu{K, scaled.data(), plain.data(), 0.5f};
  std::vector<float> want(static_cast<std::size_t>(3 * n));
  dictionary_means(scores.data(), n, cpu, want.data());
  DeviceVector<float> d_scores(scores), d_scaled(scaled), d_plain(plain), d_out(static_cast<std::size_t>(3 * n));
  const DictionaryValues gpu{K, d_scaled.get(), d_plain.get(), 0.5f};
  cuda::dictionary_means(d_scores.get(), n, gpu, d_out.get(), nullptr);
  const auto got = d_out.host();
  // expf against the CPU's polynomial (2 ulp): the sums agree to a few ulp.
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5f + 1e-5f * std::fabs(want[i])) << "value " << i;
  }
}

TEST(KernelsCuda, BestMixtureScoresMatchCpuBitForBit) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const std::int64_t n = 20001, K = 1651;  // neither a multiple of the block nor of the CPU's 16 lanes
  const auto scores = random_floats(static_cast<std::size_t>(n * K), -100, 100, rng);
  const auto share = random_floats(static_cast<std::size_t>(n), -150, 150, rng);
  auto gain = random_floats(static_cast<std::size_t>(K), 1, 3.2f, rng);
  auto offset = random_floats(static_cast<std::size_t>(K), -3, 3, rng);
  for (std::size_t k = 0; k < gain.size(); k += 5) gain[k] = offset[k] = 0;  // entries left out
  const MixtureValues cpu{K, gain.data(), offset.data()};
  std::vector<float> want(static_cast<std::size_t>(n));
  best_mixture_scores(scores.data(), share.data(), n, cpu, want.data());
  DeviceVector<float> d_scores(scores), d_share(share), d_gain(gain), d_offset(offset), d_out(want.size());
  const MixtureValues gpu{K, d_gain.get(), d_offset.get()};
  cuda::best_mixture_scores(d_scores.get(), d_share.get(), n, gpu, d_out.get(), nullptr);
  const auto got = d_out.host();
  std::size_t positive = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
        << "row " << i << ": " << got[i] << " against " << want[i];
    positive += want[i] > 0;
  }
  EXPECT_GT(positive, want.size() / 2);
}

}  // namespace
}  // namespace vitruvian::kernels
