// Inference building blocks against plain references: the banded stitcher against the
// whole-volume blend (smaller than, equal to, not a multiple of the window, deep volumes, fp16),
// connected components against flood fill on random masks, largest component and hole filling,
// class extents and intensities, lesion sizes of drawn spheres, and the Agatston score of
// drawn calcifications.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <deque>

#include "core/errors.h"
#include "models/measures.h"
#include "models/postprocess.h"
#include "models/stitcher.h"

namespace vitruvian::models {
namespace {

TEST(Stitcher, BandedLabelsEqualTheWholeVolumeBlend) {
  torch::manual_seed(7);
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(2, 4, 3).padding(1));
  torch::NoGradGuard no_grad;
  const WindowForward forward = [&](const at::Tensor& x) { return conv->forward(x); };
  SlidingWindowOptions o;
  o.window = {6, 8, 7};
  o.batch = 3;
  // Smaller than, equal to, a multiple of, not a multiple of the window; deep volumes slide the band many times.
  for (const auto& shape : std::vector<std::array<std::int64_t, 3>>{{4, 5, 3}, {6, 8, 7}, {12, 16, 14}, {13, 19, 9}, {61, 9, 8}}) {
    const at::Tensor image = torch::randn({2, shape[0], shape[1], shape[2]});
    const at::Tensor whole = sliding_window_logits(image, 4, forward, o).argmax(0);
    std::int64_t calls = 0, windows = 0;
    const at::Tensor banded = sliding_window_labels(image, 4, forward, o, Accumulation::kFloat32,
                                                    [&](std::int64_t done, std::int64_t total) {
                                                      ++calls;
                                                      windows = total;
                                                      EXPECT_LE(done, total);
                                                    });
    ASSERT_EQ(banded.sizes(), whole.sizes());
    EXPECT_EQ(banded.scalar_type(), at::kByte);
    EXPECT_TRUE(torch::equal(banded.to(torch::kLong), whole)) << shape[0] << "x" << shape[1] << "x" << shape[2];
    EXPECT_EQ(calls, (windows + o.batch - 1) / o.batch);
    // fp16 accumulation: the same labels but where two classes are within half-precision rounding.
    const at::Tensor half = sliding_window_labels(image, 4, forward, o, Accumulation::kFloat16);
    EXPECT_GE((half.to(torch::kLong) == whole).to(torch::kDouble).mean().item<double>(), 0.99);
  }
  o.mirror_axes = 5;  // z and x flips
  const at::Tensor image = torch::randn({2, 20, 10, 9});
  EXPECT_TRUE(torch::equal(sliding_window_labels(image, 4, forward, o).to(torch::kLong),
                           sliding_window_logits(image, 4, forward, o).argmax(0)));
  EXPECT_EQ(band_bytes({400, 512, 512}, 10, {128, 128, 128}, Accumulation::kFloat16), 128LL * 512 * 512 * (10 * 2 + 4));
}

/// Flood fill: the reference labelling, numbered in scan order of first voxel.
at::Tensor flood_fill(const at::Tensor& mask, int connectivity) {
  const std::int64_t nz = mask.size(0), ny = mask.size(1), nx = mask.size(2);
  auto m = mask.accessor<bool, 3>();
  at::Tensor out = torch::zeros({nz, ny, nx}, torch::kInt);
  auto o = out.accessor<std::int32_t, 3>();
  std::int32_t next = 0;
  for (std::int64_t z = 0; z < nz; ++z)
    for (std::int64_t y = 0; y < ny; ++y)
      for (std::int64_t x = 0; x < nx; ++x) {
        if (!m[z][y][x] || o[z][y][x] != 0) continue;
        o[z][y][x] = ++next;
        std::deque<std::array<std::int64_t, 3>> queue{{z, y, x}};
        while (!queue.empty()) {
          const auto p = queue.front();
          queue.pop_front();
          for (int dz = -1; dz <= 1; ++dz)
            for (int dy = -1; dy <= 1; ++dy)
              for (int dx = -1; dx <= 1; ++dx) {
                const int order = std::abs(dz) + std::abs(dy) + std::abs(dx);
                if (order == 0 || (connectivity == 6 && order > 1) || (connectivity == 18 && order > 2)) continue;
                const std::int64_t a = p[0] + dz, b = p[1] + dy, c = p[2] + dx;
                if (a < 0 || b < 0 || c < 0 || a >= nz || b >= ny || c >= nx || !m[a][b][c] || o[a][b][c] != 0) continue;
                o[a][b][c] = next;
                queue.push_back({a, b, c});
              }
        }
      }
  return out;
}

TEST(Stitcher, BandPlacementFallsBackToTheHostFromTheSizeThatRanOutOfMemory) {
  BandPlacement gpu(c10::Device(c10::kCUDA, 1));
  EXPECT_EQ(gpu.choose(1000), c10::Device(c10::kCUDA, 1));
  gpu.record_out_of_memory(5000);
  EXPECT_EQ(gpu.choose(4999), c10::Device(c10::kCUDA, 1));
  EXPECT_EQ(gpu.choose(5000), c10::Device(c10::kCPU));
  gpu.record_out_of_memory(7000);  // a larger failure does not raise the threshold
  EXPECT_EQ(gpu.choose(6000), c10::Device(c10::kCPU));
  EXPECT_EQ(gpu.smallest_failed(), 5000);
  EXPECT_EQ(BandPlacement(c10::kCPU).choose(1), c10::Device(c10::kCPU));
}

TEST(ConnectedComponents, EqualFloodFillOnRandomMasks) {
  torch::manual_seed(11);
  for (const int connectivity : {6, 18, 26}) {
    for (const double density : {0.2, 0.35, 0.5}) {
      const at::Tensor mask = torch::rand({9, 13, 11}) < density;
      const Components c = connected_components(mask, connectivity);
      const at::Tensor expected = flood_fill(mask, connectivity);
      EXPECT_TRUE(torch::equal(c.labels, expected)) << connectivity << " " << density;
      EXPECT_EQ(c.count(), expected.max().item<std::int64_t>());
      std::int64_t total = 0;
      for (std::int64_t i = 0; i < c.count(); ++i) {
        EXPECT_EQ(c.sizes[static_cast<std::size_t>(i)], (expected == i + 1).sum().item<std::int64_t>());
        total += c.sizes[static_cast<std::size_t>(i)];
      }
      EXPECT_EQ(total, mask.sum().item<std::int64_t>());
    }
  }
  EXPECT_THROW(connected_components(torch::zeros({3, 3}), 26), InputError);
  EXPECT_THROW(connected_components(torch::zeros({3, 3, 3}), 8), InputError);
}

TEST(Postprocess, KeepsTheLargestComponentAndFillsEnclosedBackground) {
  at::Tensor labels = torch::zeros({12, 12, 12}, torch::kByte);
  labels.slice(0, 1, 8).slice(1, 1, 8).slice(2, 1, 8).fill_(1);     // a 7³ cube of class 1
  labels.slice(0, 3, 6).slice(1, 3, 6).slice(2, 3, 6).fill_(0);     // a 3³ hole in it
  labels[4][4][4] = 2;                                              // another class inside the hole stays
  labels.slice(0, 10, 12).slice(1, 10, 12).slice(2, 10, 12).fill_(1);  // a stray 2³ piece of class 1
  EXPECT_EQ(keep_largest_component(labels, 1), 8);
  EXPECT_EQ((labels == 1).sum().item<std::int64_t>(), 7 * 7 * 7 - 27);
  EXPECT_EQ(fill_holes(labels, 1), 26);
  EXPECT_EQ((labels == 1).sum().item<std::int64_t>(), 7 * 7 * 7 - 1);
  EXPECT_EQ(labels[4][4][4].item<int>(), 2);
  // Background open to the border is not a hole.
  at::Tensor cup = torch::zeros({8, 8, 8}, torch::kByte);
  cup.slice(0, 2, 6).slice(1, 2, 6).slice(2, 2, 8).fill_(3);
  cup.slice(0, 3, 5).slice(1, 3, 5).slice(2, 3, 8).fill_(0);
  EXPECT_EQ(fill_holes(cup, 3), 0);
}

TEST(Measures, ExtentsAndIntensitiesEqualDirectComputation) {
  torch::manual_seed(3);
  const at::Tensor labels = torch::randint(0, 4, {7, 9, 6}, torch::kByte);
  const at::Tensor image = torch::randn({7, 9, 6}) * 100;
  const auto extents = class_extents(labels, 5);
  const auto intensities = class_intensities(labels, image, 5);
  for (std::int64_t c = 1; c < 4; ++c) {
    const at::Tensor where = (labels == c).nonzero().to(torch::kDouble);
    const auto& e = extents[static_cast<std::size_t>(c)];
    ASSERT_EQ(e.voxels, where.size(0));
    for (int a = 0; a < 3; ++a) {
      EXPECT_EQ(e.box_min[a], where.select(1, a).min().item<std::int64_t>());
      EXPECT_EQ(e.box_max[a], where.select(1, a).max().item<std::int64_t>());
      EXPECT_NEAR(e.centroid[a], where.select(1, a).mean().item<double>(), 1e-9);
    }
    const at::Tensor values = image.masked_select(labels == c).to(torch::kDouble);
    const auto& s = intensities[static_cast<std::size_t>(c)];
    EXPECT_EQ(s.count, values.numel());
    EXPECT_NEAR(s.mean, values.mean().item<double>(), 1e-3);
    EXPECT_NEAR(s.std, values.std(false).item<double>(), 1e-3);
    EXPECT_NEAR(s.p05, values.quantile(0.05).item<double>(), 1e-3);
    EXPECT_NEAR(s.p50, values.quantile(0.5).item<double>(), 1e-3);
    EXPECT_NEAR(s.p95, values.quantile(0.95).item<double>(), 1e-3);
  }
  EXPECT_EQ(extents[4].voxels, 0);
  EXPECT_EQ(intensities[4].count, 0);
  EXPECT_THROW(class_extents(labels, 3), InputError);  // label 3 outside 0..2
}

at::Tensor sphere(std::array<std::int64_t, 3> shape, std::array<double, 3> centre, double radius_mm, std::array<double, 3> spacing) {
  const auto axis = [&](int a) { return (torch::arange(shape[a], torch::kDouble) - centre[a]) * spacing[a]; };
  const at::Tensor z = axis(0).view({-1, 1, 1}), y = axis(1).view({1, -1, 1}), x = axis(2).view({1, 1, -1});
  return (z * z + y * y + x * x) <= radius_mm * radius_mm;
}

TEST(Measures, LesionVolumesAndDiametersOfDrawnSpheres) {
  const std::array<double, 3> spacing{1.0, 0.5, 0.5};
  at::Tensor mask = sphere({60, 80, 80}, {20, 20, 20}, 8, spacing) | sphere({60, 80, 80}, {40, 60, 60}, 4, spacing);
  mask[55][5][5] = true;  // a one-voxel speck
  const auto found = lesions(mask, spacing, 2);
  ASSERT_EQ(found.size(), 2u);  // the speck is below min_voxels
  constexpr double kPi = 3.14159265358979323846;
  EXPECT_NEAR(found[0].volume_ml, 4.0 / 3 * kPi * 512 / 1000, 0.05 * 4.0 / 3 * kPi * 512 / 1000);
  EXPECT_NEAR(found[0].equivalent_diameter_mm, 16, 0.5);
  EXPECT_NEAR(found[0].axial_diameter_mm, 16, 0.6);
  EXPECT_NEAR(found[1].axial_diameter_mm, 8, 0.6);
  EXPECT_NEAR(found[0].centroid[0], 20, 1e-6);
  EXPECT_NEAR(found[1].centroid[2], 60, 1e-6);
  EXPECT_EQ(lesions(mask, spacing).size(), 3u);
}

TEST(Measures, AgatstonScoresDrawnCalcificationsPerArtery) {
  // 3 mm slices, 0.5 mm pixels: a 4×4-pixel (4 mm²) lesion of 250 HU on two slices near "lad",
  // a 6×2-pixel (3 mm²) one of 450 HU on one slice near "rca", a 3-pixel (0.75 mm²) speck
  // below the area rule, and calcium outside the region (bone) that must not count.
  const std::array<double, 3> spacing{3.0, 0.5, 0.5};
  at::Tensor hu = torch::full({10, 40, 40}, 40.0);
  at::Tensor lad = torch::zeros({10, 40, 40}, torch::kBool), rca = torch::zeros({10, 40, 40}, torch::kBool);
  lad.slice(0, 2, 6).slice(1, 5, 7).slice(2, 5, 30).fill_(true);
  rca.slice(0, 6, 9).slice(1, 30, 32).slice(2, 5, 30).fill_(true);
  hu.slice(0, 3, 5).slice(1, 7, 11).slice(2, 10, 14).fill_(250);
  hu[3][8][11] = 320;  // the peak on one slice raises that slice's weight to 3
  hu.slice(0, 7, 8).slice(1, 27, 29).slice(2, 10, 16).fill_(450);
  hu.slice(0, 7, 8).slice(1, 27, 28).slice(2, 22, 25).fill_(900);
  hu.slice(0, 0, 10).slice(1, 0, 2).fill_(700);  // bone along an edge, outside the region
  hu.slice(0, 2, 8).slice(1, 36, 40).slice(2, 36, 40).fill_(800);  // bone reaching into the region from outside
  at::Tensor region = torch::ones({10, 40, 40}, torch::kBool);
  region.slice(1, 0, 3).fill_(false);
  region.slice(1, 38, 40).fill_(false);
  const CalciumReport r = agatston(hu, region, {{"lad", lad}, {"rca", rca}}, spacing);
  EXPECT_NEAR(r.arteries.at("lad").agatston, 4 * 3 + 4 * 2, 1e-9);  // slice factor 3 / 3
  EXPECT_NEAR(r.arteries.at("rca").agatston, 3 * 4, 1e-9);
  EXPECT_EQ(r.arteries.at("lad").lesions, 1);
  EXPECT_EQ(r.arteries.at("rca").lesions, 1);
  EXPECT_NEAR(r.arteries.at("lad").volume_mm3, 32 * 0.75, 1e-9);
  EXPECT_NEAR(r.total.agatston, 32, 1e-9);
  EXPECT_EQ(r.unassigned.lesions, 0);
  // Without arteries the same lesions are unassigned; without calcium nothing scores.
  const CalciumReport bare = agatston(hu, region, {}, spacing);
  EXPECT_NEAR(bare.unassigned.agatston, 32, 1e-9);
  EXPECT_EQ(agatston(torch::zeros({4, 4, 4}), torch::ones({4, 4, 4}), {}, spacing).total.lesions, 0);
}

TEST(Measures, AgatstonCreditsALesionTouchingItsArteryOnAGridCoarserThanTheMargin) {
  // One calcified voxel in a 3.5 mm grid touching "lad" diagonally in-plane: centres 4.9 mm
  // apart, more than the 3 mm margin but within one voxel diagonal (6.1 mm). "rca" is 14 mm away.
  const std::array<double, 3> spacing{3.5, 3.5, 3.5};
  at::Tensor hu = torch::full({5, 12, 12}, 40.0);
  at::Tensor lad = torch::zeros({5, 12, 12}, torch::kBool), rca = torch::zeros({5, 12, 12}, torch::kBool);
  lad.slice(1, 4, 5).slice(2, 0, 5).fill_(true);    // row 4, columns 0-4
  rca.slice(1, 9, 10).slice(2, 6, 12).fill_(true);  // row 9, columns 6-11
  hu[2][5][5] = 600;
  const CalciumReport r = agatston(hu, torch::ones({5, 12, 12}, torch::kBool), {{"lad", lad}, {"rca", rca}}, spacing);
  EXPECT_EQ(r.arteries.at("lad").lesions, 1);
  EXPECT_NEAR(r.arteries.at("lad").agatston, 3.5 * 3.5 * 4 * 3.5 / 3, 1e-9);  // one pixel, weight 4
  EXPECT_EQ(r.arteries.at("rca").lesions, 0);
  EXPECT_EQ(r.unassigned.lesions, 0);
  // On a fine grid the margin rules: a 2 × 2-pixel lesion 3.5 mm (7 rows at 0.5 mm) from the
  // artery is unassigned.
  at::Tensor fine_hu = torch::full({5, 12, 12}, 40.0), fine_lad = torch::zeros({5, 12, 12}, torch::kBool);
  fine_lad.slice(1, 2, 3).slice(2, 0, 5).fill_(true);
  fine_hu.slice(0, 2, 3).slice(1, 9, 11).slice(2, 0, 2).fill_(600);
  const CalciumReport fine = agatston(fine_hu, torch::ones({5, 12, 12}, torch::kBool), {{"lad", fine_lad}}, {0.5, 0.5, 0.5});
  EXPECT_EQ(fine.unassigned.lesions, 1);
  EXPECT_EQ(fine.arteries.at("lad").lesions, 0);
}

}  // namespace
}  // namespace vitruvian::models
