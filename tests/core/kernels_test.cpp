// The CPU kernels (the references of the CUDA ones) against plain LibTorch op sequences and a
// flood fill, on random inputs.
#include "core/kernels/kernels.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <vector>

#include "core/components.h"
#include "core/errors.h"
#include "core/kernels/dispatch.h"
#include "tests/core/perfusion_curves.h"

namespace vitruvian::kernels {
namespace {

/// `call` must throw InputError whose text holds `needle`.
void expect_input_error(const std::function<void()>& call, const char* needle) {
  try {
    call();
    ADD_FAILURE() << "accepted: " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

using torch::indexing::Slice;

TEST(Kernels, AccumulateWindowsEqualsSlicedAdds) {
  torch::manual_seed(1);
  const std::int64_t classes = 3;
  const at::Tensor logits = torch::randn({4, classes, 5, 6, 7});
  const at::Tensor importance = torch::rand({5, 6, 7}) + 0.01;
  // A strided accumulator: a view into a larger buffer, like the stitcher's band rows.
  const at::Tensor buffer = torch::randn({classes, 11, 13, 17});
  const at::Tensor weight_buffer = torch::rand({11, 13, 17});
  const at::Tensor before = buffer.clone();
  at::Tensor values = buffer.slice(1, 1, 10).slice(3, 0, 15);
  at::Tensor weight = weight_buffer.slice(0, 1, 10).slice(2, 0, 15);
  at::Tensor expected = values.clone(), expected_weight = weight.clone();
  const std::vector<std::int64_t> origins{0, 0, 0, 2, 3, 4, 4, 7, 8, 2, 3, 5};  // overlapping windows
  for (int b = 0; b < 4; ++b) {
    const auto* o = &origins[static_cast<std::size_t>(3 * b)];
    expected.slice(1, o[0], o[0] + 5).slice(2, o[1], o[1] + 6).slice(3, o[2], o[2] + 7).add_(logits[b] * importance);
    expected_weight.slice(0, o[0], o[0] + 5).slice(1, o[1], o[1] + 6).slice(2, o[2], o[2] + 7).add_(importance);
  }
  accumulate_windows(logits, importance, origins.data(), values, weight);
  EXPECT_TRUE(torch::equal(values, expected));  // fp32: the same sums in the same order
  EXPECT_TRUE(torch::equal(weight, expected_weight));
  EXPECT_TRUE(torch::equal(buffer.slice(3, 15), before.slice(3, 15)));  // outside the view: untouched
  EXPECT_TRUE(torch::equal(buffer.slice(1, 0, 1), before.slice(1, 0, 1)));

  // fp16: within half precision of the float result.
  at::Tensor half = buffer.slice(1, 1, 10).slice(3, 0, 15).to(torch::kHalf).contiguous();
  const at::Tensor start = half.to(torch::kFloat);
  at::Tensor w2 = torch::zeros({9, 13, 15});
  accumulate_windows(logits, importance, origins.data(), half, w2);
  at::Tensor reference = start.clone();
  for (int b = 0; b < 4; ++b) {
    const auto* o = &origins[static_cast<std::size_t>(3 * b)];
    reference.slice(1, o[0], o[0] + 5).slice(2, o[1], o[1] + 6).slice(3, o[2], o[2] + 7).add_(logits[b] * importance);
  }
  EXPECT_TRUE(torch::allclose(half.to(torch::kFloat), reference, 4e-3, 4e-3));

  const std::vector<std::int64_t> outside{5, 0, 0};
  EXPECT_THROW(accumulate_windows(logits.slice(0, 0, 1), importance, outside.data(), values, weight), InputError);
}

TEST(Kernels, NormalizeEqualsClampSubDiv) {
  torch::manual_seed(2);
  const at::Tensor hu = torch::randint(-1024, 3000, {7, 9, 11}, torch::kShort);
  const Normalization norm{-200.5, 1500.25, 40.5, 123.75};
  const at::Tensor expected = hu.to(torch::kFloat).clamp(norm.lower, norm.upper).sub(norm.mean).div(norm.std);
  EXPECT_TRUE(torch::allclose(normalize(hu, norm), expected, 0, 1e-6));
  const at::Tensor mr = torch::rand({5, 6, 7}, torch::kDouble) * 900;
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor z = normalize(mr, {-inf, inf, 300.0, 50.0});
  EXPECT_TRUE(torch::allclose(z, ((mr - 300.0) / 50.0).to(torch::kFloat), 0, 1e-6));
  const at::Tensor wide = torch::randint(-1024, 3000, {4, 5}, torch::kLong);  // read through float32
  EXPECT_TRUE(torch::allclose(normalize(wide, norm), wide.to(torch::kFloat).clamp(norm.lower, norm.upper).sub(norm.mean).div(norm.std)));
}

/// Output (i, j, k) → source index a · (i, j, k) + t, as grid_sample coordinates with
/// align_corners (−1 … 1 over the outermost centres).
at::Tensor sample_grid(const IndexMap& map, const std::array<std::int64_t, 3>& src_zyx, const std::array<std::int64_t, 3>& dst_zyx) {
  const at::Tensor k = torch::arange(dst_zyx[0], torch::kDouble).view({-1, 1, 1}).expand({dst_zyx[0], dst_zyx[1], dst_zyx[2]});
  const at::Tensor j = torch::arange(dst_zyx[1], torch::kDouble).view({1, -1, 1}).expand_as(k);
  const at::Tensor i = torch::arange(dst_zyx[2], torch::kDouble).view({1, 1, -1}).expand_as(k);
  std::vector<at::Tensor> coords;
  for (int c = 0; c < 3; ++c) {  // x, y, z
    const at::Tensor p = map.a[c * 3] * i + map.a[c * 3 + 1] * j + map.a[c * 3 + 2] * k + map.t[c];
    const double size = static_cast<double>(src_zyx[2 - c]);
    coords.push_back(p.clamp(0, size - 1) / (size - 1) * 2 - 1);
  }
  return torch::stack(coords, -1).unsqueeze(0);  // [1, D, H, W, 3] as (x, y, z)
}

TEST(Kernels, ResampleEqualsGridSample) {
  torch::manual_seed(3);
  const std::array<std::int64_t, 3> src_zyx{9, 10, 12}, dst_zyx{7, 13, 11};
  const at::Tensor src = torch::randn({9, 10, 12}, torch::kDouble).mul(100).to(torch::kShort);
  IndexMap map;  // scaled, slightly rotated about z, shifted
  const double c = std::cos(0.1), s = std::sin(0.1);
  const double a[9] = {0.9 * c, -0.8 * s, 0, 0.9 * s, 0.8 * c, 0, 0, 0, 1.3};
  std::copy(a, a + 9, map.a);
  map.t[0] = 0.7, map.t[1] = -0.3, map.t[2] = 0.2;
  const at::Tensor grid = sample_grid(map, src_zyx, dst_zyx);
  const at::Tensor source = src.to(torch::kDouble).view({1, 1, 9, 10, 12});

  at::Tensor linear = torch::empty({7, 13, 11}, torch::kFloat);
  resample(src, linear, map, {true, false, 0});
  const at::Tensor expected = torch::grid_sampler(source, grid, 0, 0, true).view({7, 13, 11});
  EXPECT_TRUE(torch::allclose(linear.to(torch::kDouble), expected, 0, 1e-3));

  at::Tensor nearest = torch::empty({7, 13, 11}, torch::kShort);
  resample(src, nearest, map, {false, false, 0});
  const at::Tensor expected_nearest = torch::grid_sampler(source, grid, 1, 0, true).view({7, 13, 11});
  EXPECT_TRUE(torch::equal(nearest.to(torch::kDouble), expected_nearest));

  // Points beyond the box get the fill value; inside ones are unchanged.
  map.t[0] = 3.0;
  at::Tensor filled = torch::empty({7, 13, 11}, torch::kShort);
  resample(src, filled, map, {false, true, -7});
  at::Tensor clamped = torch::empty({7, 13, 11}, torch::kShort);
  resample(src, clamped, map, {false, false, 0});
  const at::Tensor x = map.a[0] * torch::arange(11, torch::kDouble).view({1, 1, -1}) +
                       map.a[1] * torch::arange(13, torch::kDouble).view({1, -1, 1}) + map.t[0];
  const at::Tensor y = map.a[3] * torch::arange(11, torch::kDouble).view({1, 1, -1}) +
                       map.a[4] * torch::arange(13, torch::kDouble).view({1, -1, 1}) + map.t[1];
  const at::Tensor zc = map.a[8] * torch::arange(7, torch::kDouble).view({-1, 1, 1}) + map.t[2];
  const at::Tensor out = (x > 11.5) | (x < -0.5) | (y > 9.5) | (y < -0.5) | (zc > 8.5) | (zc < -0.5);
  ASSERT_GT(out.sum().item<std::int64_t>(), 0);
  ASSERT_LT(out.sum().item<std::int64_t>(), out.numel());
  EXPECT_TRUE(torch::equal(filled, torch::where(out, torch::full_like(clamped, -7), clamped)));
}

TEST(Kernels, SoftmaxArgmaxEqualsTorch) {
  torch::manual_seed(4);
  for (const auto type : {torch::kFloat, torch::kHalf}) {
    const at::Tensor band = (torch::randn({5, 6, 9, 10}) * 4).to(type);
    const at::Tensor weight = torch::rand({6, 9, 10}) + 0.1;
    const at::Tensor values = band.slice(1, 1, 5).slice(3, 0, 8);  // rows of a band, cropped
    const at::Tensor w = weight.slice(0, 1, 5).slice(2, 0, 8);
    at::Tensor prob;
    const at::Tensor labels = softmax_argmax(values, w, torch::kByte, &prob);
    const at::Tensor logits = values.to(torch::kFloat) / w;
    EXPECT_TRUE(torch::equal(labels.to(torch::kLong), logits.argmax(0)));
    EXPECT_TRUE(torch::allclose(prob, std::get<0>(logits.softmax(0).max(0)), 1e-5, 1e-6));
    EXPECT_TRUE(torch::equal(softmax_argmax(values, w, torch::kInt).to(torch::kLong), logits.argmax(0)));
  }
  // NaN wins, as in torch.argmax, and its probability is NaN.
  at::Tensor with_nan = torch::randn({3, 1, 1, 4});
  with_nan.index_put_({2, 0, 0, 1}, std::numeric_limits<float>::quiet_NaN());
  at::Tensor nan_prob;
  const at::Tensor nan_labels = softmax_argmax(with_nan, torch::ones({1, 1, 4}), torch::kByte, &nan_prob);
  EXPECT_EQ(nan_labels[0][0][1].item<int>(), 2);
  EXPECT_TRUE(std::isnan(nan_prob[0][0][1].item<float>()));
  EXPECT_TRUE(torch::equal(nan_labels.to(torch::kLong), with_nan.argmax(0)));
  // The first of equal maxima, as torch.argmax.
  const at::Tensor tie = torch::ones({3, 1, 1, 2});
  EXPECT_EQ(softmax_argmax(tie, torch::ones({1, 1, 2}), torch::kByte).sum().item<int>(), 0);
}

TEST(Kernels, LabelStatsEqualTorchReductions) {
  torch::manual_seed(5);
  const std::int64_t n = 6;
  // Blocky labels (regions, not noise) and one label above the range.
  at::Tensor labels = torch::randint(0, n, {3, 4, 5}, torch::kByte);
  labels = torch::nn::functional::interpolate(labels.to(torch::kFloat).view({1, 1, 3, 4, 5}),
                                              torch::nn::functional::InterpolateFuncOptions().size(std::vector<std::int64_t>{12, 15, 17}).mode(torch::kNearest))
               .view({12, 15, 17})
               .to(torch::kByte);
  labels.index_put_({3, 4, 5}, 9);
  const at::Tensor image = torch::randint(-1000, 2000, {12, 15, 17}, torch::kShort);
  std::int64_t outside = 0;
  const auto stats = label_stats(labels, &image, n, &outside);
  EXPECT_EQ(outside, 1);
  for (std::int64_t l = 0; l < n; ++l) {
    const at::Tensor mask = labels == l;
    const std::int64_t count = mask.sum().item<std::int64_t>();
    ASSERT_EQ(stats[static_cast<std::size_t>(l)].count, count) << "label " << l;
    if (count == 0) continue;
    const auto& s = stats[static_cast<std::size_t>(l)];
    const at::Tensor where = mask.nonzero().to(torch::kDouble);  // [count, 3] z, y, x
    const at::Tensor values = image.masked_select(mask).to(torch::kDouble);
    for (int a = 0; a < 3; ++a) {
      EXPECT_EQ(s.box_min[a], where.select(1, a).min().item<double>());
      EXPECT_EQ(s.box_max[a], where.select(1, a).max().item<double>());
      EXPECT_DOUBLE_EQ(s.index_sum[a], where.select(1, a).sum().item<double>());
    }
    EXPECT_DOUBLE_EQ(s.sum, values.sum().item<double>());
    EXPECT_DOUBLE_EQ(s.sum_sq, (values * values).sum().item<double>());
    EXPECT_EQ(s.min, values.min().item<double>());
    EXPECT_EQ(s.max, values.max().item<double>());
  }
  const auto no_image = label_stats(labels.to(torch::kInt), nullptr, n);
  for (std::int64_t l = 0; l < n; ++l) EXPECT_EQ(no_image[static_cast<std::size_t>(l)].count, stats[static_cast<std::size_t>(l)].count);
}

/// Component roots by breadth-first flood fill from each unvisited voxel in scan order.
std::vector<std::int32_t> flood_fill_roots(const at::Tensor& mask, int connectivity) {
  const std::int64_t nz = mask.size(0), ny = mask.size(1), nx = mask.size(2);
  const auto* m = mask.data_ptr<std::uint8_t>();
  std::vector<std::int32_t> roots(static_cast<std::size_t>(mask.numel()), 0);
  for (std::int64_t start = 0; start < mask.numel(); ++start) {
    if (m[start] == 0 || roots[static_cast<std::size_t>(start)] != 0) continue;
    std::deque<std::int64_t> queue{start};
    roots[static_cast<std::size_t>(start)] = static_cast<std::int32_t>(start + 1);
    while (!queue.empty()) {
      const std::int64_t v = queue.front();
      queue.pop_front();
      const std::int64_t z = v / (ny * nx), y = (v / nx) % ny, x = v % nx;
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int order = std::abs(dz) + std::abs(dy) + std::abs(dx);
            if (order == 0 || (connectivity == 6 && order > 1) || (connectivity == 18 && order > 2)) continue;
            const std::int64_t zz = z + dz, yy = y + dy, xx = x + dx;
            if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
            const std::int64_t u = (zz * ny + yy) * nx + xx;
            if (m[u] == 0 || roots[static_cast<std::size_t>(u)] != 0) continue;
            roots[static_cast<std::size_t>(u)] = static_cast<std::int32_t>(start + 1);
            queue.push_back(u);
          }
    }
  }
  return roots;
}

TEST(Kernels, ConnectedRootsEqualFloodFill) {
  torch::manual_seed(6);
  for (const double density : {0.3, 0.5, 0.7}) {
    const at::Tensor mask = (torch::rand({9, 11, 13}) < density).to(torch::kByte);
    for (const int connectivity : {6, 18, 26}) {
      const at::Tensor roots = connected_roots(mask, connectivity);
      const auto expected = flood_fill_roots(mask, connectivity);
      const auto* r = roots.data_ptr<std::int32_t>();
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), r)) << "density " << density << ", connectivity " << connectivity;
    }
  }
  EXPECT_THROW(connected_roots(torch::ones({2, 2, 2}), 8), InputError);
}

/// The kept residue of one curve, computed plainly in double: each level's residue summed
/// afresh, OI = Σ|r[l] − 2r[l−1] + r[l−2]| / (L · max|r|).
struct ReferenceResult {
  double peak = 0, peak_at = 0, oi_margin = 0;  ///< oi_margin: the smallest |OI − limit| the search met
  std::int32_t components = 0;
};

ReferenceResult reference_deconvolution(const std::vector<double>& c, const at::Tensor& analysis,
                                        const at::Tensor& synthesis, const std::vector<std::int32_t>& levels,
                                        double max_oscillation) {
  const std::int64_t samples = analysis.size(1), length = synthesis.size(1);
  const auto a = analysis.accessor<float, 2>();
  const auto s = synthesis.accessor<float, 2>();
  ReferenceResult out;
  out.oi_margin = std::numeric_limits<double>::infinity();
  for (std::size_t i = levels.size(); i-- > 0;) {
    const std::int32_t m = levels[i];
    std::vector<double> r(static_cast<std::size_t>(length), 0.0);
    for (std::int32_t k = 0; k < m; ++k) {
      double z = 0;
      for (std::int64_t t = 0; t < samples; ++t) z += static_cast<double>(a[k][t]) * c[static_cast<std::size_t>(t)];
      for (std::int64_t l = 0; l < length; ++l) r[static_cast<std::size_t>(l)] += z * static_cast<double>(s[k][l]);
    }
    double max_abs = 0, oscillation = 0;
    std::size_t best = 0;
    for (std::size_t l = 0; l < r.size(); ++l) {
      max_abs = std::max(max_abs, std::abs(r[l]));
      if (r[l] > r[best]) best = l;
      if (l >= 2) oscillation += std::abs(r[l] - 2 * r[l - 1] + r[l - 2]);
    }
    const double oi = max_abs == 0 ? 0 : oscillation / (static_cast<double>(length) * max_abs);
    const bool last = i == 0 || max_oscillation <= 0;
    if (!last) out.oi_margin = std::min(out.oi_margin, std::abs(oi - max_oscillation));
    if (!last && oi > max_oscillation) continue;
    out.peak = r[best];
    out.peak_at = static_cast<double>(best);
    if (best > 0 && best + 1 < r.size()) {
      const double curvature = r[best - 1] - 2 * r[best] + r[best + 1];
      if (curvature < 0) out.peak_at += 0.5 * (r[best - 1] - r[best + 1]) / curvature;
    }
    out.components = m;
    return out;
  }
  return out;
}

struct PerfusionCase {
  double dt = 1.5;
  at::Tensor aif;
  testing::CirculantBasis basis;
  std::vector<std::int32_t> levels;
};

PerfusionCase perfusion_case(std::int64_t samples) {
  PerfusionCase p;
  p.aif = testing::gamma_variate_aif(samples, p.dt);
  p.basis = testing::circulant_basis(p.aif, p.dt);
  p.levels = testing::levels_above(p.basis.singular, 0.02);
  return p;
}

// largest_component and remove_small_components label only the box of a CPU mask's set voxels:
// the same answers as the components of the whole grid (ties to the first in scan order).
TEST(Components, LargestAndSmallOnesFromTheSetBoxEqualTheWholeGrid) {
  torch::manual_seed(11);
  for (int trial = 0; trial < 6; ++trial) {
    at::Tensor mask = torch::zeros({20, 30, 25}, torch::kByte);
    if (trial > 0) {  // trial 0: empty
      const int z0 = trial % 3, y0 = 2 + trial, x0 = 25 - 9 - trial;
      mask.slice(0, z0, z0 + 11).slice(1, y0, y0 + 15).slice(2, x0, x0 + 9) =
          (torch::rand({11, 15, 9}) < 0.3 + 0.05 * trial).to(torch::kByte);
    }
    const MaskBox box = mask_box(mask.data_ptr<std::uint8_t>(), 20, 30, 25);
    const at::Tensor set = mask.nonzero();
    EXPECT_EQ(box.empty(), set.size(0) == 0) << "trial " << trial;
    for (int d = 0; d < 3 && set.size(0) > 0; ++d) {
      EXPECT_EQ(box.lo[d], set.select(1, d).min().item<std::int64_t>()) << "trial " << trial;
      EXPECT_EQ(box.hi[d], set.select(1, d).max().item<std::int64_t>() + 1) << "trial " << trial;
    }
    const Components six = connected_components(mask, 6);
    at::Tensor expected = torch::zeros_like(mask);
    if (six.count() > 0) {
      const auto biggest = std::max_element(six.sizes.begin(), six.sizes.end()) - six.sizes.begin() + 1;
      expected = (six.labels == static_cast<std::int32_t>(biggest)).to(torch::kByte);
    }
    if (trial == 0) {  // a tie, away from the origin: the first in scan order wins
      mask[5][7][9] = 1, mask[5][7][10] = 1, mask[9][20][3] = 1, mask[9][21][3] = 1;
      expected = torch::zeros_like(mask);
      expected[5][7][9] = 1, expected[5][7][10] = 1;
      EXPECT_TRUE(at::equal(largest_component(mask), expected));
      mask.zero_();
      expected.zero_();
    }
    EXPECT_TRUE(at::equal(largest_component(mask), expected)) << "trial " << trial;
    EXPECT_TRUE(at::equal(largest_component(mask.to(torch::kBool)), expected)) << "trial " << trial;
    for (const std::int64_t min_voxels : {2, 5, 40}) {
      const Components all = connected_components(mask, 26);
      at::Tensor kept = mask.clone();
      const at::Tensor sizes = torch::tensor(std::vector<std::int64_t>(all.sizes.begin(), all.sizes.end()));
      at::Tensor small = torch::zeros_like(mask, torch::kBool);
      for (std::int64_t c = 0; c < all.count(); ++c) {
        if (sizes[c].item<std::int64_t>() < min_voxels)
          small.logical_or_(all.labels == static_cast<std::int32_t>(c + 1));
      }
      const std::int64_t removed = remove_small_components(kept, min_voxels);
      EXPECT_EQ(removed, small.sum().item<std::int64_t>()) << "trial " << trial << ", min " << min_voxels;
      EXPECT_TRUE(at::equal(kept, mask.masked_fill(small, 0))) << "trial " << trial << ", min " << min_voxels;
    }
  }
}

TEST(Components, RemovingSmallOnesRefusesAMaskItCannotEdit) {
  at::Tensor flat = torch::zeros({4, 5}, torch::kByte), floats = torch::zeros({2, 3, 4});
  at::Tensor strided = torch::zeros({2, 3, 8}, torch::kByte).slice(2, 0, 8, 2);
  for (at::Tensor* mask : {&flat, &floats, &strided}) {
    try {
      remove_small_components(*mask, 5);
      ADD_FAILURE() << "accepted a mask of shape " << mask->sizes();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("expected a contiguous uint8 [z, y, x] mask on the CPU"), std::string::npos)
          << e.what();
    }
  }
}

TEST(Kernels, DeconvolveCurvesMatchesDoubleReference) {
  torch::manual_seed(7);
  const PerfusionCase p = perfusion_case(30);
  ASSERT_GE(p.levels.size(), 5u);
  const at::Tensor curves = testing::random_tissue(p.aif, p.dt, 203, 2.0);
  for (const double limit : {0.095, 0.0}) {
    const Deconvolved d = deconvolve_curves(curves, p.basis.analysis, p.basis.synthesis, p.levels, limit);
    ASSERT_EQ(d.peak.sizes(), at::IntArrayRef({203}));
    int compared = 0;
    for (std::int64_t i = 0; i < curves.size(0); ++i) {
      const at::Tensor row = curves[i].to(torch::kDouble).contiguous();
      const std::vector<double> c(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
      const ReferenceResult ref = reference_deconvolution(c, p.basis.analysis, p.basis.synthesis, p.levels, limit);
      if (ref.oi_margin < 1e-4) continue;  // float and double may fall on either side of the limit
      ++compared;
      ASSERT_EQ(d.components[i].item<std::int32_t>(), ref.components) << "curve " << i << ", limit " << limit;
      EXPECT_NEAR(d.peak[i].item<float>(), ref.peak, 1e-4 * std::abs(ref.peak) + 1e-7) << "curve " << i;
      EXPECT_NEAR(d.peak_at[i].item<float>(), ref.peak_at, 1e-3) << "curve " << i;
    }
    EXPECT_GE(compared, 200) << "limit " << limit;
  }
}

TEST(Kernels, DeconvolveCurvesSearchesDownForNoise) {
  torch::manual_seed(8);
  const PerfusionCase p = perfusion_case(40);
  const std::int32_t top = p.levels.back();
  torch::manual_seed(9);
  const at::Tensor clean = testing::random_tissue(p.aif, p.dt, 64, 0.0);
  torch::manual_seed(9);
  const at::Tensor noisy = testing::random_tissue(p.aif, p.dt, 64, 3.0);
  const Deconvolved a = deconvolve_curves(clean, p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  const Deconvolved b = deconvolve_curves(noisy, p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  const double clean_mean = a.components.to(torch::kDouble).mean().item<double>();
  const double noisy_mean = b.components.to(torch::kDouble).mean().item<double>();
  EXPECT_LT(noisy_mean, clean_mean);
  EXPECT_LT(noisy_mean, top);
  // Plain SVD: the largest level, whatever the noise.
  const Deconvolved plain = deconvolve_curves(noisy, p.basis.analysis, p.basis.synthesis, p.levels, 0.0);
  EXPECT_TRUE(torch::all(plain.components == top).item<bool>());
}

TEST(Kernels, DeconvolveCurvesFindsTheDelay) {
  const PerfusionCase p = perfusion_case(40);
  const double mtt = 4.0;
  for (const std::int64_t delay : {0, 2, 5, 9}) {
    const at::Tensor c =
        testing::tissue_curves(p.aif, p.dt, torch::full({1}, 0.01, torch::kDouble),
                               torch::full({1}, delay, torch::kLong), torch::full({1}, mtt, torch::kDouble));
    const Deconvolved d = deconvolve_curves(c.to(torch::kFloat), p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
    EXPECT_NEAR(d.peak_at[0].item<float>(), static_cast<double>(delay), 0.75) << "delay " << delay;
    EXPECT_NEAR(d.peak[0].item<float>(), 0.01, 0.004) << "delay " << delay;  // the flow, smoothed by truncation
  }
}

TEST(Kernels, DeconvolveCurvesIndependentOfSplit) {
  torch::manual_seed(10);
  const PerfusionCase p = perfusion_case(30);
  const at::Tensor curves = testing::random_tissue(p.aif, p.dt, 16 * 40 + 5, 2.0);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const Deconvolved one = deconvolve_curves(curves, p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  at::set_num_threads(2);
  const Deconvolved two = deconvolve_curves(curves, p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  at::set_num_threads(threads);
  // Shifted by 5 curves: every curve in another lane of another block.
  const Deconvolved shifted =
      deconvolve_curves(curves.slice(0, 5), p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  for (const auto* other : {&two}) {
    EXPECT_TRUE(torch::equal(one.peak, other->peak));
    EXPECT_TRUE(torch::equal(one.peak_at, other->peak_at));
    EXPECT_TRUE(torch::equal(one.components, other->components));
  }
  EXPECT_TRUE(torch::equal(one.peak.slice(0, 5), shifted.peak));
  EXPECT_TRUE(torch::equal(one.peak_at.slice(0, 5), shifted.peak_at));
  EXPECT_TRUE(torch::equal(one.components.slice(0, 5), shifted.components));
  // Some curves stop early in the search and some do not: the lanes of a block part ways.
  EXPECT_LT(one.components.min().item<std::int32_t>(), one.components.max().item<std::int32_t>());
  // A zero curve: OI 0, so the largest level, and a zero peak at 0.
  const Deconvolved zero =
      deconvolve_curves(torch::zeros({3, 30}), p.basis.analysis, p.basis.synthesis, p.levels, 0.095);
  EXPECT_TRUE(torch::all(zero.components == p.levels.back()).item<bool>());
  EXPECT_TRUE(torch::all(zero.peak == 0).item<bool>() && torch::all(zero.peak_at == 0).item<bool>());
}

TEST(Kernels, DeconvolveCurvesRejectsBadBases) {
  const PerfusionCase p = perfusion_case(30);
  const at::Tensor curves = torch::ones({4, 30});
  const at::Tensor& a = p.basis.analysis;
  const at::Tensor& s = p.basis.synthesis;
  const auto expect_error = [&](const at::Tensor& c, const at::Tensor& an, const at::Tensor& sy,
                                const std::vector<std::int32_t>& levels, const char* needle) {
    expect_input_error([&] { deconvolve_curves(c, an, sy, levels, 0.095); }, needle);
  };
  expect_error(curves, a, s, {}, "0 levels");
  expect_error(curves, a, s, {0, 3}, "level 0");
  expect_error(curves, a, s, {3, 61}, "level 61");
  expect_error(curves, a, s, {5, 5}, "levels 5 then 5");
  expect_error(curves, a, s, {7, 3}, "levels 7 then 3");
  expect_error(curves, a, s.slice(1, 0, 50), {3}, "60 components for residues of length 50");
  expect_error(torch::ones({4, 29}), a, s, {3}, "curves [4, 29], analysis [60, 30]");
  expect_error(curves, a.slice(1, 0, 0), s, {3}, "analysis");
  expect_error(curves.to(torch::kDouble), a, s, {3}, "the curves of type Double");
  expect_error(curves, a, s.to(torch::kDouble), {3}, "the synthesis matrix of type Double");
}

/// Kernel 8's values in double, from torch ops: the reference.
at::Tensor dictionary_reference(const at::Tensor& scores, const at::Tensor& scaled, const at::Tensor& plain,
                                double inverse) {
  const at::Tensor p = scores.to(at::kDouble).clamp_min(0);
  const at::Tensor best = std::get<0>(p.max(1, true));
  const at::Tensor w = ((p.square() - best.square()) * inverse).exp();
  const at::Tensor total = w.sum(1, true);
  const at::Tensor flow = at::matmul(w * p, scaled.to(at::kDouble).t());
  const at::Tensor delay = at::matmul(w, plain.to(at::kDouble).unsqueeze(1));
  return at::cat({flow, delay}, 1) / total;
}

TEST(Kernels, DictionaryMeansMatchDoubleReference) {
  // Rows of scores around a few sharp best entries and many negative ones; K = 1 100 crosses one
  // block of 1 024 and leaves a tail that is not a whole number of lanes.
  torch::manual_seed(8);
  const std::int64_t n = 64, K = 1100;
  const at::Tensor scores = torch::randn({n, K}) * 3 + torch::linspace(-2, 6, K).unsqueeze(0);
  const at::Tensor scaled = torch::rand({2, K}) * 10 + 0.1;
  const at::Tensor plain = torch::linspace(-3, 15, K);
  for (const double inverse : {0.05, 0.5, 5.0}) {
    const at::Tensor got = dictionary_means(scores, scaled, plain, inverse);
    const at::Tensor want = dictionary_reference(scores, scaled, plain, inverse);
    ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{n, 3}));
    EXPECT_TRUE(torch::allclose(got.to(at::kDouble), want, 2e-5, 1e-5))
        << "inverse " << inverse << ": largest difference " << (got.to(at::kDouble) - want).abs().max().item<double>();
  }
  // Rows are independent: a slice gives the same bits as the whole.
  const at::Tensor whole = dictionary_means(scores, scaled, plain, 0.5);
  EXPECT_TRUE(torch::equal(dictionary_means(scores.slice(0, 7, 40), scaled, plain, 0.5), whole.slice(0, 7, 40)));
  // A row with no positive score: every entry fits CBF 0 and weighs 1; the flow is 0, the
  // delay the plain values' mean.
  const at::Tensor none = dictionary_means(-torch::ones({1, K}), scaled, plain, 0.5);
  EXPECT_EQ(none[0][0].item<float>(), 0.0f);
  EXPECT_NEAR(none[0][2].item<float>(), plain.mean().item<float>(), 1e-4);
  // A NaN score makes its row NaN (the CUDA kernel does the same), not a silent finite answer.
  at::Tensor bad = scores.slice(0, 0, 2).clone();
  bad[1][5] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor with_nan = dictionary_means(bad, scaled, plain, 0.5);
  EXPECT_TRUE(torch::equal(with_nan[0], whole[0]));
  EXPECT_TRUE(with_nan[1].isnan().all().item<bool>());
}

TEST(Kernels, DictionaryMeansRejectBadInput) {
  const at::Tensor scores = torch::ones({4, 10}), scaled = torch::ones({2, 10}), plain = torch::ones({10});
  expect_input_error(
      [&] {
        dictionary_means(scores, torch::ones({10, 2}), plain, 1);
      },
      "expected [n, K], [2, K] and [K]");
  expect_input_error(
      [&] {
        dictionary_means(scores, scaled, torch::ones({10, 1}), 1);
      },
      "expected [n, K], [2, K] and [K]");
  expect_input_error([&] { dictionary_means(scores.to(at::kDouble), scaled, plain, 1); }, "the scores of type");
  expect_input_error([&] { dictionary_means(scores, scaled, plain, 0); }, "expected a positive finite number");
  expect_input_error(
      [&] {
        dictionary_means(torch::ones({4, 0}), torch::ones({2, 0}), torch::ones({0}), 1);
      },
      "a dictionary of 0 entries");
}

// Kernel 9 against its definition in LibTorch's ops (each product and the difference rounded
// once, as in the kernel): random scores with negative ones, entries left out at gain and offset
// 0 (as the model fit's mixture leaves them), counts of rows and entries that are not multiples
// of the 16 lanes. The maximum does not depend on the order, so the two agree bit for bit.
TEST(Kernels, BestMixtureScoresEqualTheirDefinition) {
  torch::manual_seed(5);
  const std::int64_t n = 301, entries = 1651;
  const at::Tensor scores = torch::randn({n, entries}) * 40, share = torch::randn({n}) * 60;
  const at::Tensor kept = torch::rand({entries}) > 0.2;
  const at::Tensor rho = torch::rand({entries}) * 1.9 - 0.95;
  const at::Tensor gain = torch::where(kept, 1 / (1 - rho * rho).sqrt(), torch::zeros_like(rho));
  const at::Tensor offset = rho * gain;
  const at::Tensor got = best_mixture_scores(scores, share, gain, offset);
  const at::Tensor want = (scores * gain - share.unsqueeze(1) * offset).amax(1).clamp_min(0);
  ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{n}));
  EXPECT_TRUE(torch::equal(got, want)) << (got - want).abs().max().item<float>();
  EXPECT_GT((got > 0).sum().item<std::int64_t>(), n / 2);  // not all clamped
  // Rows are independent: one row alone gives the bits the batch gave.
  for (const std::int64_t row : {0L, 150L, 300L}) {
    EXPECT_EQ(
        best_mixture_scores(scores.slice(0, row, row + 1), share.slice(0, row, row + 1), gain, offset).item<float>(),
        got[row].item<float>());
  }
  // No positive term: 0. A NaN term is passed over, as the CUDA kernel passes it over.
  EXPECT_EQ(best_mixture_scores(-torch::ones({1, 20}), torch::zeros({1}), torch::ones({20}), torch::zeros({20}))
                .item<float>(),
            0.0f);
  at::Tensor bad = scores.slice(0, 0, 1).clone();
  bad[0][3] = std::numeric_limits<float>::quiet_NaN();
  const float with_nan = best_mixture_scores(bad, share.slice(0, 0, 1), gain, offset).item<float>();
  EXPECT_FALSE(std::isnan(with_nan));
  EXPECT_LE(with_nan, got[0].item<float>());
}

TEST(Kernels, BestMixtureScoresRejectBadInput) {
  const at::Tensor scores = torch::ones({4, 10}), share = torch::ones({4}), gain = torch::ones({10});
  const char* shapes = "expected [n, K], [n], [K] and [K]";
  expect_input_error([&] { best_mixture_scores(scores, torch::ones({5}), gain, gain); }, shapes);
  expect_input_error([&] { best_mixture_scores(scores, share, torch::ones({9}), gain); }, shapes);
  expect_input_error([&] { best_mixture_scores(scores, share, gain, torch::ones({2, 5})); }, shapes);
  expect_input_error([&] { best_mixture_scores(scores, share.to(at::kDouble), gain, gain); }, "the shares of type");
  expect_input_error(
      [&] {
        best_mixture_scores(torch::ones({4, 0}), share, torch::ones({0}), torch::ones({0}));
      },
      "a mixture of 0 entries");
}

}  // namespace
}  // namespace vitruvian::kernels
