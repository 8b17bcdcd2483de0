// Preprocessing against plain reference code on random volumes: resampling through LPS (scalar
// trilinear/nearest loops), intensity statistics (sorted reference), normalisation, body crop.
#include "data/preprocess.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/components.h"
#include "core/errors.h"

namespace vitruvian::data {
namespace {

using Vec3 = std::array<double, 3>;

at::Tensor uniform(std::vector<std::int64_t> shape, double lo, double hi, std::mt19937_64& rng,
                   at::ScalarType dtype = at::kFloat) {
  at::Tensor t = at::empty(shape, at::kDouble);
  std::uniform_real_distribution<double> u(lo, hi);
  double* p = t.data_ptr<double>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t.to(dtype);
}

/// R_z(c) * R_y(b) * R_x(a): an exactly orthonormal, oblique direction matrix.
std::array<double, 9> rotation(double a, double b, double c) {
  const double rx[9] = {1, 0, 0, 0, std::cos(a), -std::sin(a), 0, std::sin(a), std::cos(a)};
  const double ry[9] = {std::cos(b), 0, std::sin(b), 0, 1, 0, -std::sin(b), 0, std::cos(b)};
  const double rz[9] = {std::cos(c), -std::sin(c), 0, std::sin(c), std::cos(c), 0, 0, 0, 1};
  double yx[9] = {};
  std::array<double, 9> out{};
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col)
      for (int k = 0; k < 3; ++k) yx[r * 3 + col] += ry[r * 3 + k] * rx[k * 3 + col];
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col)
      for (int k = 0; k < 3; ++k) out[r * 3 + col] += rz[r * 3 + k] * yx[k * 3 + col];
  return out;
}

Geometry oblique(Vec3 spacing, Vec3 origin, Vec3 angles) {
  Geometry g;
  g.spacing = spacing;
  g.origin = origin;
  g.direction = rotation(angles[0], angles[1], angles[2]);
  return g;
}

/// LPS mm of continuous index (i, j, k) = (x, y, z).
Vec3 lps(const Geometry& g, const Vec3& index) {
  Vec3 p = g.origin;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) p[r] += g.direction[r * 3 + c] * g.spacing[c] * index[c];
  return p;
}

/// Continuous index (x, y, z) of an LPS point: diag(1/spacing) * direction^T * (p - origin).
Vec3 index_of(const Geometry& g, const Vec3& p) {
  Vec3 idx{};
  for (int c = 0; c < 3; ++c) {
    for (int r = 0; r < 3; ++r) idx[c] += g.direction[r * 3 + c] * (p[r] - g.origin[r]);
    idx[c] /= g.spacing[c];
  }
  return idx;
}

Volume make_volume(at::Tensor voxels, VoxelType type, const Geometry& g) {
  Volume v;
  v.voxels = voxels.contiguous();
  v.type = type;
  v.geometry = g;
  v.modality = "CT";
  return v;
}

double voxel(const at::Tensor& v, std::int64_t x, std::int64_t y, std::int64_t z) {
  return v.index({z, y, x}).item<double>();
}

/// Point inside the box of voxels [-0.5, n - 0.5] on every axis (n as x, y, z)?
bool inside_box(const Vec3& s, const std::array<std::int64_t, 3>& n) {
  for (int c = 0; c < 3; ++c)
    if (s[c] < -0.5 || s[c] > static_cast<double>(n[c]) - 0.5) return false;
  return true;
}

/// Distance to the nearest box face or nearest-neighbour tie, to skip points where rounding decides.
double ambiguity(const Vec3& s, const std::array<std::int64_t, 3>& n) {
  double d = 1.0;
  for (int c = 0; c < 3; ++c) {
    d = std::min(d, std::abs(s[c] + 0.5));
    d = std::min(d, std::abs(s[c] - (static_cast<double>(n[c]) - 0.5)));
    d = std::min(d, std::abs(s[c] - std::floor(s[c]) - 0.5));
  }
  return d;
}

/// Scalar trilinear interpolation of a [z,y,x] tensor at (x, y, z), clamped to the edge voxels.
double reference_linear(const at::Tensor& v, const Vec3& s) {
  const std::array<std::int64_t, 3> n{v.size(2), v.size(1), v.size(0)};
  std::int64_t lo[3], hi[3];
  double f[3];
  for (int c = 0; c < 3; ++c) {
    const double q = std::min(std::max(s[c], 0.0), static_cast<double>(n[c] - 1));
    lo[c] = static_cast<std::int64_t>(std::floor(q));
    hi[c] = std::min(lo[c] + 1, n[c] - 1);
    f[c] = q - static_cast<double>(lo[c]);
  }
  double sum = 0.0;
  for (int dz = 0; dz < 2; ++dz)
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        const double w = (dx ? f[0] : 1 - f[0]) * (dy ? f[1] : 1 - f[1]) * (dz ? f[2] : 1 - f[2]);
        sum += w * voxel(v, dx ? hi[0] : lo[0], dy ? hi[1] : lo[1], dz ? hi[2] : lo[2]);
      }
  return sum;
}

double reference_nearest(const at::Tensor& v, const Vec3& s) {
  const std::array<std::int64_t, 3> n{v.size(2), v.size(1), v.size(0)};
  std::int64_t idx[3];
  for (int c = 0; c < 3; ++c) idx[c] = std::min(std::max<std::int64_t>(std::llround(s[c]), 0), n[c] - 1);
  return voxel(v, idx[0], idx[1], idx[2]);
}

// ---------------------------------------------------------------- resample_to_spacing

TEST(ResampleToSpacing, ShapeAndGeometryKeepThePhysicalBox) {
  std::mt19937_64 rng(1);
  const Geometry g = oblique({0.8, 1.1, 2.5}, {-40.0, 12.5, 300.0}, {0.2, -0.1, 0.4});
  const Volume v = make_volume(uniform({13, 17, 20}, -50, 50, rng), VoxelType::kFloat32, g);
  const Vec3 target{1.5, 0.7, 2.0};
  const Volume r = resample_to_spacing(v, target, Interpolation::kLinear);
  // round(20*0.8/1.5) = 11, round(17*1.1/0.7) = 27, round(13*2.5/2) = 16
  EXPECT_EQ(r.voxels.sizes(), at::IntArrayRef({16, 27, 11}));
  EXPECT_EQ(r.type, VoxelType::kFloat32);
  EXPECT_EQ(r.modality, "CT");
  EXPECT_EQ(r.geometry.spacing, target);
  EXPECT_EQ(r.geometry.direction, g.direction);
  const std::array<std::int64_t, 3> n{20, 17, 13}, m{11, 27, 16};
  Vec3 centre_old{}, centre_new{};
  for (int c = 0; c < 3; ++c) {
    centre_old[c] = (static_cast<double>(n[c]) - 1) / 2;
    centre_new[c] = (static_cast<double>(m[c]) - 1) / 2;
    // the box differs by at most half a new voxel (rounding of the size)
    EXPECT_LE(std::abs(static_cast<double>(m[c]) * target[c] - static_cast<double>(n[c]) * g.spacing[c]),
              target[c] / 2 + 1e-12);
  }
  const Vec3 a = lps(g, centre_old), b = lps(r.geometry, centre_new);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(a[c], b[c], 1e-9) << "box centre moved along LPS axis " << c;
}

TEST(ResampleToSpacing, BoxFacesCoincideWhenTheExtentDivides) {
  std::mt19937_64 rng(2);
  const Geometry g = oblique({1.0, 0.5, 3.0}, {10.0, -20.0, 5.0}, {-0.3, 0.2, 0.1});
  const Volume v = make_volume(uniform({10, 12, 8}, 0, 100, rng), VoxelType::kFloat32, g);
  const Vec3 target{2.0, 1.5, 1.0};
  const Volume r = resample_to_spacing(v, target, Interpolation::kLinear);
  EXPECT_EQ(r.voxels.sizes(), at::IntArrayRef({30, 4, 4}));
  const Vec3 first_old = lps(g, {-0.5, -0.5, -0.5}), first_new = lps(r.geometry, {-0.5, -0.5, -0.5});
  const Vec3 last_old = lps(g, {7.5, 11.5, 9.5}), last_new = lps(r.geometry, {3.5, 3.5, 29.5});
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(first_old[c], first_new[c], 1e-9);
    EXPECT_NEAR(last_old[c], last_new[c], 1e-9);
  }
  // a new voxel centre o sits at old index (o + 0.5) * new/old spacing - 0.5 (skimage's convention)
  for (const Vec3 o : {Vec3{0, 0, 0}, Vec3{3, 1, 17}, Vec3{2, 3, 29}}) {
    const Vec3 s = index_of(g, lps(r.geometry, o));
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(s[c], (o[c] + 0.5) * target[c] / g.spacing[c] - 0.5, 1e-9);
  }
}

TEST(ResampleToSpacing, LinearValuesMatchAScalarReferenceThroughLps) {
  std::mt19937_64 rng(3);
  const Geometry g = oblique({0.9, 1.2, 2.2}, {5.0, 6.0, -7.0}, {0.5, 0.3, -0.2});
  const at::Tensor data = uniform({9, 11, 12}, -100, 100, rng);
  const Volume r =
      resample_to_spacing(make_volume(data, VoxelType::kFloat32, g), {1.3, 0.75, 1.7}, Interpolation::kLinear);
  const at::Tensor old64 = data.to(at::kDouble);
  std::int64_t checked = 0;
  for (std::int64_t z = 0; z < r.voxels.size(0); ++z)
    for (std::int64_t y = 0; y < r.voxels.size(1); ++y)
      for (std::int64_t x = 0; x < r.voxels.size(2); ++x) {
        const Vec3 s = index_of(g, lps(r.geometry, {double(x), double(y), double(z)}));
        ASSERT_TRUE(inside_box(s, {12, 11, 9})) << "a new voxel centre left the old box";
        ASSERT_NEAR(voxel(r.voxels, x, y, z), reference_linear(old64, s), 1e-4) << x << "," << y << "," << z;
        ++checked;
      }
  EXPECT_GT(checked, 1000);
}

TEST(ResampleToSpacing, LinearRampStaysALinearRampInLps) {
  const Geometry g = oblique({0.7, 1.3, 2.4}, {-12.0, 30.0, 100.0}, {0.3, -0.4, 0.25});
  auto ramp = [](const Vec3& p) { return 0.3 * p[0] - 0.2 * p[1] + 0.5 * p[2] + 7.0; };
  at::Tensor data = at::empty({8, 10, 14}, at::kDouble);
  auto a = data.accessor<double, 3>();
  for (std::int64_t z = 0; z < 8; ++z)
    for (std::int64_t y = 0; y < 10; ++y)
      for (std::int64_t x = 0; x < 14; ++x) a[z][y][x] = ramp(lps(g, {double(x), double(y), double(z)}));
  const Volume r =
      resample_to_spacing(make_volume(data, VoxelType::kFloat64, g), {1.1, 0.9, 1.6}, Interpolation::kLinear);
  std::int64_t interior = 0;
  for (std::int64_t z = 0; z < r.voxels.size(0); ++z)
    for (std::int64_t y = 0; y < r.voxels.size(1); ++y)
      for (std::int64_t x = 0; x < r.voxels.size(2); ++x) {
        const Vec3 p = lps(r.geometry, {double(x), double(y), double(z)});
        const Vec3 s = index_of(g, p);
        if (s[0] < 0 || s[0] > 13 || s[1] < 0 || s[1] > 9 || s[2] < 0 || s[2] > 7) continue;  // edge-clamped rim
        EXPECT_NEAR(voxel(r.voxels, x, y, z), ramp(p), 1e-4);  // float32 output of values below ~200
        ++interior;
      }
  EXPECT_GT(interior, r.voxels.numel() / 2);
}

TEST(ResampleToSpacing, LabelsKeepTheirTypeAndOnlyExistingValues) {
  std::mt19937_64 rng(4);
  const std::vector<int> labels{0, 3, 7, 200};
  at::Tensor data = at::empty({9, 10, 11}, at::kByte);
  std::uniform_int_distribution<int> pick(0, 3);
  for (std::int64_t i = 0; i < data.numel(); ++i) data.data_ptr<std::uint8_t>()[i] = std::uint8_t(labels[pick(rng)]);
  const Geometry g = oblique({1.0, 1.0, 2.0}, {0, 0, 0}, {0.1, 0.2, 0.3});
  const Volume r =
      resample_to_spacing(make_volume(data, VoxelType::kUInt8, g), {0.7, 1.6, 1.3}, Interpolation::kNearest);
  EXPECT_EQ(r.type, VoxelType::kUInt8);
  EXPECT_EQ(r.voxels.scalar_type(), at::kByte);
  const std::set<int> allowed(labels.begin(), labels.end());
  std::set<int> seen;
  std::int64_t compared = 0;
  for (std::int64_t z = 0; z < r.voxels.size(0); ++z)
    for (std::int64_t y = 0; y < r.voxels.size(1); ++y)
      for (std::int64_t x = 0; x < r.voxels.size(2); ++x) {
        const double value = voxel(r.voxels, x, y, z);
        ASSERT_TRUE(allowed.count(int(value))) << value;
        seen.insert(int(value));
        const Vec3 s = index_of(g, lps(r.geometry, {double(x), double(y), double(z)}));
        if (ambiguity(s, {11, 10, 9}) < 1e-6) continue;
        EXPECT_EQ(value, reference_nearest(data, s));
        ++compared;
      }
  EXPECT_EQ(seen, allowed);
  EXPECT_GT(compared, r.voxels.numel() / 2);
}

TEST(ResampleToSpacing, IdentitySpacingReturnsTheSameVoxels) {
  std::mt19937_64 rng(5);
  const Geometry g = oblique({0.8, 0.9, 3.0}, {1, 2, 3}, {0.4, 0.1, -0.3});
  const Volume v = make_volume(uniform({5, 6, 7}, -1000, 1000, rng), VoxelType::kFloat32, g);
  const Volume r = resample_to_spacing(v, g.spacing, Interpolation::kLinear);
  EXPECT_TRUE(at::equal(r.voxels, v.voxels));
  EXPECT_EQ(r.geometry.origin, g.origin);
  const Volume labels = make_volume(uniform({5, 6, 7}, -50, 50, rng, at::kShort), VoxelType::kInt16, g);
  const Volume rl = resample_to_spacing(labels, g.spacing, Interpolation::kNearest);
  EXPECT_EQ(rl.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(rl.voxels, labels.voxels));
}

TEST(ResampleToSpacing, FramesOfA4dVolumeAreResampledAlike) {
  std::mt19937_64 rng(6);
  const Geometry g = oblique({1.0, 1.2, 2.0}, {0, 0, 0}, {0.0, 0.3, 0.0});
  Volume v = make_volume(uniform({3, 6, 7, 8}, 0, 10, rng), VoxelType::kFloat32, g);
  v.frame_times_s = {0.0, 1.5, 3.0};
  const Volume r = resample_to_spacing(v, {0.6, 1.5, 1.1}, Interpolation::kLinear);
  ASSERT_EQ(r.voxels.dim(), 4);
  EXPECT_EQ(r.frame_times_s, v.frame_times_s);
  for (std::int64_t t = 0; t < 3; ++t) {
    const Volume frame = make_volume(v.voxels[t], VoxelType::kFloat32, g);
    EXPECT_TRUE(at::equal(r.voxels[t], resample_to_spacing(frame, {0.6, 1.5, 1.1}, Interpolation::kLinear).voxels));
  }
}

TEST(ResampleToSpacing, BadSpacingIsRefusedNamingTheValue) {
  std::mt19937_64 rng(7);
  const Volume v = make_volume(uniform({4, 4, 4}, 0, 1, rng), VoxelType::kFloat32, Geometry{});
  try {
    resample_to_spacing(v, {1.0, 0.0, 1.0}, Interpolation::kLinear);
    FAIL() << "a zero spacing was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("target spacing 0 mm along axis 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resample_to_spacing(v, {1.0, 1.0, std::nan("")}, Interpolation::kLinear), InputError);
  EXPECT_THROW(resample_to_spacing(v, {-2.0, 1.0, 1.0}, Interpolation::kNearest), InputError);
}

// ---------------------------------------------------------------- resample_onto

TEST(ResampleOnto, IdentityGeometryGivesTheSameVoxels) {
  std::mt19937_64 rng(10);
  const Geometry g = oblique({0.7, 1.1, 2.3}, {-3, 4, 50}, {0.6, -0.2, 0.9});
  const Volume v = make_volume(uniform({6, 7, 9}, -100, 100, rng), VoxelType::kFloat32, g);
  const Volume lin = resample_onto(v, g, {6, 7, 9}, Interpolation::kLinear, -1.0);
  EXPECT_LE(at::max(at::abs(lin.voxels - v.voxels)).item<double>(), 1e-5);
  const Volume near = resample_onto(v, g, {6, 7, 9}, Interpolation::kNearest, -1.0);
  EXPECT_TRUE(at::equal(near.voxels, v.voxels));
  EXPECT_TRUE(near.geometry.matches(g));
}

TEST(ResampleOnto, PermutedFlippedShiftedReferenceGivesThePermutedVoxels) {
  std::mt19937_64 rng(11);
  const Geometry gs = oblique({0.8, 1.3, 2.1}, {20, -10, 70}, {0.35, 0.15, -0.5});
  const std::array<std::int64_t, 3> n{8, 7, 6};  // x, y, z
  const at::Tensor image = uniform({n[2], n[1], n[0]}, -100, 100, rng);
  const at::Tensor labels = uniform({n[2], n[1], n[0]}, 0, 9, rng, at::kShort);
  // reference axis a runs along source axis perm[a], in direction sign[a]
  const int perm[3] = {2, 0, 1};
  const int sign[3] = {-1, +1, -1};
  const Vec3 s0{-2, 8, 4};  // source index of reference voxel (0, 0, 0): partly outside
  Geometry gr;
  for (int a = 0; a < 3; ++a) {
    gr.spacing[a] = gs.spacing[perm[a]];
    for (int r = 0; r < 3; ++r) gr.direction[r * 3 + a] = sign[a] * gs.direction[r * 3 + perm[a]];
  }
  gr.origin = lps(gs, s0);
  const std::array<std::int64_t, 3> shape_zyx{9, 10, 6};
  const double fill = -999.0;
  const Volume lin =
      resample_onto(make_volume(image, VoxelType::kFloat32, gs), gr, shape_zyx, Interpolation::kLinear, fill);
  const Volume near =
      resample_onto(make_volume(labels, VoxelType::kInt16, gs), gr, shape_zyx, Interpolation::kNearest, -5);
  ASSERT_EQ(lin.voxels.sizes(), at::IntArrayRef({9, 10, 6}));
  EXPECT_EQ(near.voxels.scalar_type(), at::kShort);
  std::int64_t inside = 0, outside = 0;
  for (std::int64_t k = 0; k < shape_zyx[0]; ++k)
    for (std::int64_t j = 0; j < shape_zyx[1]; ++j)
      for (std::int64_t i = 0; i < shape_zyx[2]; ++i) {
        const std::int64_t r[3] = {i, j, k};
        std::int64_t s[3] = {std::int64_t(s0[0]), std::int64_t(s0[1]), std::int64_t(s0[2])};
        for (int a = 0; a < 3; ++a) s[perm[a]] += sign[a] * r[a];
        const bool in = s[0] >= 0 && s[0] < n[0] && s[1] >= 0 && s[1] < n[1] && s[2] >= 0 && s[2] < n[2];
        (in ? inside : outside) += 1;
        const double expect_lin = in ? voxel(image, s[0], s[1], s[2]) : fill;
        const double expect_near = in ? voxel(labels, s[0], s[1], s[2]) : -5.0;
        ASSERT_NEAR(voxel(lin.voxels, i, j, k), expect_lin, 1e-4) << i << "," << j << "," << k;
        ASSERT_EQ(voxel(near.voxels, i, j, k), expect_near) << i << "," << j << "," << k;
      }
  EXPECT_GT(inside, 100);
  EXPECT_GT(outside, 100);
}

TEST(ResampleOnto, ObliqueReferenceMatchesTheScalarReference) {
  std::mt19937_64 rng(12);
  const Geometry gs = oblique({0.9, 1.3, 2.1}, {-30, 15, 120}, {0.3, -0.2, 0.5});
  const std::array<std::int64_t, 3> n{14, 12, 10};
  const at::Tensor image = uniform({n[2], n[1], n[0]}, -100, 100, rng, at::kDouble);
  const at::Tensor labels = uniform({n[2], n[1], n[0]}, 0, 250, rng, at::kByte);
  Geometry gr = oblique({1.7, 0.8, 1.2}, {0, 0, 0}, {-0.4, 0.25, 0.1});
  const std::array<std::int64_t, 3> m{9, 13, 11};  // x, y, z
  // centre the reference on the source's box, then push it partly out
  const Vec3 centre = lps(gs, {6.5, 5.5, 4.5});
  const Vec3 half = lps(gr, {4.0, 6.0, 5.0});
  for (int c = 0; c < 3; ++c) gr.origin[c] = centre[c] - half[c] + (c == 0 ? 6.0 : c == 1 ? -3.0 : 4.0);
  const Volume lin =
      resample_onto(make_volume(image, VoxelType::kFloat64, gs), gr, {m[2], m[1], m[0]}, Interpolation::kLinear, 12.5);
  const Volume near =
      resample_onto(make_volume(labels, VoxelType::kUInt8, gs), gr, {m[2], m[1], m[0]}, Interpolation::kNearest, 255);
  EXPECT_EQ(lin.type, VoxelType::kFloat32);
  EXPECT_EQ(near.type, VoxelType::kUInt8);
  std::int64_t inside = 0, outside = 0;
  for (std::int64_t k = 0; k < m[2]; ++k)
    for (std::int64_t j = 0; j < m[1]; ++j)
      for (std::int64_t i = 0; i < m[0]; ++i) {
        const Vec3 s = index_of(gs, lps(gr, {double(i), double(j), double(k)}));
        const bool in = inside_box(s, n);
        (in ? inside : outside) += 1;
        const double expect_lin = in ? reference_linear(image, s) : 12.5;
        ASSERT_NEAR(voxel(lin.voxels, i, j, k), expect_lin, 1e-4) << i << "," << j << "," << k;
        if (ambiguity(s, n) < 1e-6) continue;
        ASSERT_EQ(voxel(near.voxels, i, j, k), in ? reference_nearest(labels, s) : 255.0) << i << "," << j << "," << k;
      }
  EXPECT_GT(inside, 300);
  EXPECT_GT(outside, 100);
}

TEST(ResampleOnto, FillOutsideTheLabelTypeAndEmptyShapesAreRefused) {
  std::mt19937_64 rng(13);
  const Volume v = make_volume(uniform({4, 4, 4}, 0, 9, rng, at::kByte), VoxelType::kUInt8, Geometry{});
  try {
    resample_onto(v, Geometry{}, {4, 4, 4}, Interpolation::kNearest, -1.0);
    FAIL() << "fill -1 accepted for uint8";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fill value -1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resample_onto(v, Geometry{}, {4, 4, 4}, Interpolation::kNearest, 2.5), InputError);
  EXPECT_NO_THROW(resample_onto(v, Geometry{}, {4, 4, 4}, Interpolation::kLinear, -1.0));
  EXPECT_THROW(resample_onto(v, Geometry{}, {4, 0, 4}, Interpolation::kLinear, 0.0), InputError);
  Geometry skew;
  skew.direction = {1, 0.5, 0, 0, 1, 0, 0, 0, 1};
  EXPECT_THROW(resample_onto(v, skew, {4, 4, 4}, Interpolation::kLinear, 0.0), InputError);
}

// ---------------------------------------------------------------- intensities

double reference_percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double h = q / 100.0 * double(values.size() - 1);
  const auto lo = std::size_t(h);
  return lo + 1 < values.size() ? values[lo] * (1 - (h - double(lo))) + values[lo + 1] * (h - double(lo)) : values[lo];
}

struct Case {
  at::Tensor image, mask;
  std::vector<double> foreground;
};

Case random_case(std::mt19937_64& rng, std::vector<std::int64_t> shape) {
  Case c;
  c.image = uniform(shape, 0, 1, rng).pow(2).mul(1400).sub(200);     // skewed, -200..1200
  c.mask = uniform(shape, 0, 1, rng).lt(0.35).to(at::kByte).mul(2);  // label value 2
  for (std::int64_t i = 0; i < c.image.numel(); ++i) {
    if (c.mask.data_ptr<std::uint8_t>()[i]) c.foreground.push_back(c.image.data_ptr<float>()[i]);
  }
  return c;
}

TEST(IntensityStats, MatchASortedReference) {
  std::mt19937_64 rng(20);
  const Case c = random_case(rng, {8, 9, 10});
  ASSERT_GT(c.foreground.size(), 100u);
  const IntensityStats s = foreground_intensity_stats(c.image, c.mask, 1'000'000, rng);
  double sum = 0, sq = 0;
  for (double x : c.foreground) sum += x;
  const double mean = sum / double(c.foreground.size());
  for (double x : c.foreground) sq += (x - mean) * (x - mean);
  EXPECT_EQ(s.count, std::int64_t(c.foreground.size()));
  EXPECT_NEAR(s.mean, mean, 1e-9 * std::abs(mean));
  EXPECT_NEAR(s.std, std::sqrt(sq / double(c.foreground.size())), 1e-9 * s.std);
  EXPECT_NEAR(s.lower, reference_percentile(c.foreground, 0.5), 1e-9);
  EXPECT_NEAR(s.upper, reference_percentile(c.foreground, 99.5), 1e-9);
  const auto below = std::count_if(c.foreground.begin(), c.foreground.end(), [&](double x) { return x < s.lower; });
  EXPECT_LE(std::abs(double(below) - 0.005 * double(c.foreground.size())), 1.0);
}

TEST(IntensityStats, SamplingDrawsDistinctForegroundVoxelsReproducibly) {
  std::mt19937_64 rng(21);
  const Case c = random_case(rng, {16, 16, 16});
  std::vector<double> foreground = c.foreground;
  std::sort(foreground.begin(), foreground.end());
  std::mt19937_64 a(99), b(99);
  const std::vector<double> samples = sample_foreground_intensities(c.image, c.mask, 300, a);
  ASSERT_EQ(samples.size(), 300u);
  EXPECT_EQ(samples, sample_foreground_intensities(c.image, c.mask, 300, b));
  for (double x : samples) EXPECT_TRUE(std::binary_search(foreground.begin(), foreground.end(), x)) << x;
  EXPECT_EQ(std::set<double>(samples.begin(), samples.end()).size(), 300u);  // without replacement
  const IntensityStats all = intensity_stats(c.foreground), part = intensity_stats(samples);
  EXPECT_NEAR(part.mean, all.mean, 5 * all.std / std::sqrt(300.0));
  EXPECT_EQ(sample_foreground_intensities(c.image, at::zeros_like(c.mask), 10, a).size(), 0u);
}

TEST(IntensityStats, MergeGivesThePooledMeanAndStd) {
  std::mt19937_64 rng(22);
  const Case c = random_case(rng, {10, 10, 10});
  const std::vector<double> first(c.foreground.begin(), c.foreground.begin() + 100);
  const std::vector<double> second(c.foreground.begin() + 100, c.foreground.end());
  const IntensityStats a = intensity_stats(first), b = intensity_stats(second);
  const IntensityStats merged = merge({a, b}), pooled = intensity_stats(c.foreground);
  EXPECT_EQ(merged.count, pooled.count);
  EXPECT_NEAR(merged.mean, pooled.mean, 1e-9 * std::abs(pooled.mean));
  EXPECT_NEAR(merged.std, pooled.std, 1e-9 * pooled.std);
  const double w = 100.0 / double(c.foreground.size());
  EXPECT_NEAR(merged.lower, w * a.lower + (1 - w) * b.lower, 1e-9);
  EXPECT_NEAR(merged.upper, w * a.upper + (1 - w) * b.upper, 1e-9);
  EXPECT_THROW(merge({}), InputError);
}

TEST(IntensityStats, EmptyForegroundAndMismatchedShapesAreRefused) {
  std::mt19937_64 rng(23);
  const at::Tensor image = uniform({4, 5, 6}, 0, 1, rng);
  EXPECT_THROW(foreground_intensity_stats(image, at::zeros({4, 5, 6}, at::kByte), 100, rng), InputError);
  EXPECT_THROW(foreground_intensity_stats(image, at::ones({4, 5, 7}, at::kByte), 100, rng), InputError);
  EXPECT_THROW(foreground_intensity_stats(image, at::ones({4, 5, 6}, at::kByte), 0, rng), InputError);
  EXPECT_THROW(intensity_stats({1.0, std::nan("")}), InputError);
}

TEST(NormalizeCt, ClipsThenStandardises) {
  std::mt19937_64 rng(30);
  const at::Tensor image = uniform({7, 8, 9}, -1200, 1500, rng, at::kShort);
  IntensityStats s;
  s.mean = 40, s.std = 250, s.lower = -200, s.upper = 900;
  const at::Tensor out = normalize_ct(image, s);
  ASSERT_EQ(out.scalar_type(), at::kFloat);
  ASSERT_EQ(out.sizes(), image.sizes());
  const at::Tensor x = image.to(at::kDouble);
  for (std::int64_t i = 0; i < image.numel(); ++i) {
    const double v = x.data_ptr<double>()[i];
    const double expect = (std::min(std::max(v, -200.0), 900.0) - 40.0) / 250.0;
    ASSERT_NEAR(out.data_ptr<float>()[i], expect, 1e-5) << v;
  }
  EXPECT_NEAR(out.max().item<double>(), (900.0 - 40.0) / 250.0, 1e-6);  // clipping applied
  EXPECT_NEAR(out.min().item<double>(), (-200.0 - 40.0) / 250.0, 1e-6);
}

TEST(NormalizeCt, ForegroundStatsGiveZeroMeanUnitStdOnTheMask) {
  std::mt19937_64 rng(31);
  const Case c = random_case(rng, {10, 11, 12});
  IntensityStats s = foreground_intensity_stats(c.image, c.mask, 1'000'000, rng);
  const at::Tensor clipped = normalize_ct(c.image, s).masked_select(c.mask.ne(0)).to(at::kDouble);
  EXPECT_GT(s.lower, c.image.min().item<double>());
  EXPECT_LT(clipped.max().item<double>(), (c.image.max().item<double>() - s.mean) / s.std);
  EXPECT_NEAR(clipped.mean().item<double>(), 0.0, 0.02);  // clipping 1% of the voxels moves it a little
  // without clipping inside the foreground: exactly standardised
  s.lower = -1e4, s.upper = 1e4;
  const at::Tensor fg = normalize_ct(c.image, s).masked_select(c.mask.ne(0)).to(at::kDouble);
  EXPECT_NEAR(fg.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(fg.std(/*unbiased=*/false).item<double>(), 1.0, 1e-5);
}

TEST(NormalizeCt, InvalidStatsAreRefused) {
  const at::Tensor image = at::ones({2, 2, 2});
  IntensityStats s;
  s.lower = 10, s.upper = 5;
  EXPECT_THROW(normalize_ct(image, s), InputError);
  s.lower = 0, s.std = std::nan("");
  EXPECT_THROW(normalize_ct(image, s), InputError);
  s.std = 0.0;  // guarded: a constant range maps to finite values
  EXPECT_TRUE(at::isfinite(normalize_ct(image, s)).all().item<bool>());
}

TEST(NormalizeZscore, ZeroMeanUnitStdOverTheMaskOrTheVolume) {
  std::mt19937_64 rng(40);
  const at::Tensor image = uniform({9, 10, 11}, 20, 90, rng);
  const at::Tensor mask = uniform({9, 10, 11}, 0, 1, rng).lt(0.4);
  const at::Tensor masked = normalize_zscore(image, &mask);
  ASSERT_EQ(masked.scalar_type(), at::kFloat);
  const at::Tensor inside = masked.masked_select(mask).to(at::kDouble);
  EXPECT_NEAR(inside.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(inside.std(/*unbiased=*/false).item<double>(), 1.0, 1e-5);
  // voxels outside the mask get the same transform
  const at::Tensor fg = image.masked_select(mask).to(at::kDouble);
  const double m = fg.mean().item<double>(), s = fg.std(false).item<double>();
  const at::Tensor expect = (image.to(at::kDouble) - m) / s;
  EXPECT_LE(at::max(at::abs(masked.to(at::kDouble) - expect)).item<double>(), 1e-5);
  const at::Tensor whole = normalize_zscore(image).to(at::kDouble);
  EXPECT_NEAR(whole.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(whole.std(false).item<double>(), 1.0, 1e-5);
}

TEST(NormalizeZscore, ConstantImageGivesZerosAndBadMasksAreRefused) {
  const at::Tensor flat = at::full({3, 4, 5}, 17.0);
  const at::Tensor out = normalize_zscore(flat);
  EXPECT_TRUE(at::equal(out, at::zeros_like(out)));
  const at::Tensor empty = at::zeros({3, 4, 5}, at::kBool);
  EXPECT_THROW(normalize_zscore(flat, &empty), InputError);
  const at::Tensor wrong = at::ones({3, 4, 6}, at::kBool);
  EXPECT_THROW(normalize_zscore(flat, &wrong), InputError);
}

// ---------------------------------------------------------------- body box and crop

TEST(BodyBox, BoxOfAKnownBlobWithClampedMargin) {
  std::mt19937_64 rng(50);
  at::Tensor image = uniform({12, 14, 16}, -1000, -900, rng);
  image.slice(0, 3, 7).slice(1, 5, 12).slice(2, 2, 9).copy_(uniform({4, 7, 7}, -500, 800, rng));
  Box b = body_box(image, -600, 2);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{1, 3, 0}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{8, 11, 11}));  // y end clamped at 14, x start at 0
  b = body_box(image, -600, 0);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{3, 5, 2}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{4, 7, 7}));
  b = body_box(image, -600, 100);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{12, 14, 16}));
  // nothing above: the whole volume
  b = body_box(image, 1000, 3);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{12, 14, 16}));
  EXPECT_THROW(body_box(image, -600, -1), InputError);
  EXPECT_THROW(body_box(image[0][0], -600, 0), InputError);
}

TEST(BodyBox, AnyChannelCounts) {
  std::mt19937_64 rng(51);
  at::Tensor image = uniform({2, 12, 14, 16}, -1000, -900, rng);
  image[0].slice(0, 3, 7).slice(1, 5, 12).slice(2, 2, 9).fill_(100);
  // Channel 1 alone continues the body to z 10, y 1 and x 15.
  image[1].slice(0, 6, 11).slice(1, 1, 6).slice(2, 8, 16).fill_(50.0);
  const Box b = body_box(image, -600, 0);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{3, 1, 2}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{8, 11, 14}));
}

TEST(BodyBox, TableAndStrayObjectsAreNotTheBody) {
  // A CT frame: the body, a table below it across the whole width (one air voxel apart), a
  // detached arm beside it and a bright speck in the air; only the body makes the box.
  std::mt19937_64 rng(53);
  at::Tensor image = uniform({20, 40, 48}, -1010, -990, rng);
  image.slice(0, 2, 18).slice(1, 8, 28).slice(2, 10, 38).copy_(uniform({16, 20, 28}, -120, 80, rng));  // body
  image.slice(1, 29, 32).fill_(200.0);                                                              // table
  image.slice(0, 4, 14).slice(1, 12, 22).slice(2, 40, 45).fill_(40.0);                              // arm
  image[0][0][0].fill_(900.0);                                                                      // speck
  const Box b = body_box(image, -500, 1);
  EXPECT_EQ(b.start_zyx, (std::array<std::int64_t, 3>{1, 7, 9}));
  EXPECT_EQ(b.size_zyx, (std::array<std::int64_t, 3>{18, 22, 30}));
}

TEST(BodyBox, RunsGiveTheBoxOfTheLargestSixConnectedPartAsLabelsDo) {
  // Against the label volume's answer (connected_components, largest part, the first on a tie),
  // over random masks from sparse specks to nearly full, 3D and with channels, several types.
  std::mt19937_64 rng(54);
  std::uniform_real_distribution<double> fill(0.05, 0.75);
  for (int trial = 0; trial < 40; ++trial) {
    SCOPED_TRACE(trial);
    const std::int64_t Z = 1 + trial % 7, Y = 2 + (trial * 5) % 13, X = 1 + (trial * 3) % 17;
    const std::int64_t channels = trial % 4 == 3 ? 2 : 1;
    at::Tensor image = uniform({channels, Z, Y, X}, 0, 1, rng);
    const double threshold = 1 - fill(rng);
    double t = threshold;
    if (trial % 3 == 1) image = (image * 1000).to(at::kShort), t = std::floor(threshold * 1000);
    const at::Tensor above = (image > t).any(0);
    const Components parts = connected_components(above, 6);
    Box expected{{0, 0, 0}, {Z, Y, X}};
    if (parts.count() > 0) {
      const auto biggest = std::max_element(parts.sizes.begin(), parts.sizes.end()) - parts.sizes.begin() + 1;
      const at::Tensor where = (parts.labels == biggest).nonzero();
      for (int d = 0; d < 3; ++d) {
        const std::int64_t low = where.select(1, d).min().item<std::int64_t>();
        expected.start_zyx[d] = low;
        expected.size_zyx[d] = where.select(1, d).max().item<std::int64_t>() + 1 - low;
      }
    }
    const Box got = body_box(channels == 1 ? image[0] : image, t, 0);
    EXPECT_EQ(got.start_zyx, expected.start_zyx);
    EXPECT_EQ(got.size_zyx, expected.size_zyx);
  }
}

TEST(Crop, CroppedGeometryPlacesVoxelsWhereTheyWere) {
  std::mt19937_64 rng(52);
  const Geometry g = oblique({0.7, 0.9, 2.5}, {-100, 50, 200}, {0.2, 0.5, -0.3});
  const Volume v = make_volume(uniform({12, 14, 16}, -100, 100, rng), VoxelType::kFloat32, g);
  const Box box{{2, 3, 4}, {5, 6, 7}};
  const Volume c = crop(v, box);
  ASSERT_EQ(c.voxels.sizes(), at::IntArrayRef({5, 6, 7}));
  EXPECT_TRUE(c.voxels.is_contiguous());
  EXPECT_TRUE(at::equal(c.voxels, v.voxels.slice(0, 2, 7).slice(1, 3, 9).slice(2, 4, 11)));
  EXPECT_EQ(c.geometry.spacing, g.spacing);
  EXPECT_EQ(c.geometry.direction, g.direction);
  for (const Vec3 o : {Vec3{0, 0, 0}, Vec3{6, 5, 4}, Vec3{3, 1, 2}}) {
    const Vec3 a = lps(c.geometry, o), b = lps(g, {o[0] + 4, o[1] + 3, o[2] + 2});
    for (int r = 0; r < 3; ++r) EXPECT_NEAR(a[r], b[r], 1e-9);
    EXPECT_EQ(voxel(c.voxels, std::int64_t(o[0]), std::int64_t(o[1]), std::int64_t(o[2])),
              voxel(v.voxels, std::int64_t(o[0]) + 4, std::int64_t(o[1]) + 3, std::int64_t(o[2]) + 2));
  }
  EXPECT_THROW(crop(v, Box{{2, 3, 4}, {5, 6, 13}}), InputError);
  EXPECT_THROW(crop(v, Box{{2, -1, 4}, {5, 6, 7}}), InputError);
  EXPECT_THROW(crop(v, Box{{2, 3, 4}, {5, 0, 7}}), InputError);
}

TEST(Crop, FramesOfA4dVolumeAreCroppedAlike) {
  std::mt19937_64 rng(53);
  Volume v = make_volume(uniform({3, 6, 7, 8}, 0, 10, rng), VoxelType::kFloat32, Geometry{});
  v.frame_times_s = {0, 1, 2};
  const Volume c = crop(v, Box{{1, 2, 3}, {4, 4, 4}});
  EXPECT_TRUE(at::equal(c.voxels, v.voxels.slice(1, 1, 5).slice(2, 2, 6).slice(3, 3, 7)));
  EXPECT_EQ(c.frame_times_s, v.frame_times_s);
  EXPECT_EQ(c.geometry.origin, (Vec3{3, 2, 1}));
}

}  // namespace
}  // namespace vitruvian::data
