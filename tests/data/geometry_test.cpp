// Geometry: LPS/RAS affines round-trip, oblique grids, and bad affines rejected with the source.
#include "data/geometry.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/errors.h"

namespace vitruvian::data {
namespace {

Geometry oblique() {
  Geometry g;
  g.spacing = {0.7, 0.8, 2.5};
  g.origin = {-120.5, 33.25, 410.0};
  const double a = 0.3;  // rotation about z, then a tilt about x
  const double c = std::cos(a), s = std::sin(a), c2 = std::cos(0.1), s2 = std::sin(0.1);
  // columns: R_x(0.1) * R_z(a)
  const double rz[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
  const double rx[9] = {1, 0, 0, 0, c2, -s2, 0, s2, c2};
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col) {
      double v = 0;
      for (int k = 0; k < 3; ++k) v += rx[r * 3 + k] * rz[k * 3 + col];
      g.direction[r * 3 + col] = v;
    }
  return g;
}

TEST(Geometry, IndexToLpsPlacesVoxels) {
  const Geometry g = oblique();
  const auto m = g.index_to_lps();
  // voxel (i, j, k) = (2, 3, 4)
  for (int r = 0; r < 3; ++r) {
    const double expected = g.origin[r] + g.direction[r * 3 + 0] * 0.7 * 2 + g.direction[r * 3 + 1] * 0.8 * 3 +
                            g.direction[r * 3 + 2] * 2.5 * 4;
    EXPECT_NEAR(m[r * 4 + 0] * 2 + m[r * 4 + 1] * 3 + m[r * 4 + 2] * 4 + m[r * 4 + 3], expected, 1e-9);
  }
  EXPECT_EQ(m[15], 1.0);
}

TEST(Geometry, RasAffineRoundTrips) {
  const Geometry g = oblique();
  const auto ras = g.index_to_ras();
  EXPECT_NEAR(ras[3], -g.origin[0], 1e-12);
  EXPECT_NEAR(ras[7], -g.origin[1], 1e-12);
  EXPECT_NEAR(ras[11], g.origin[2], 1e-12);
  const Geometry back = Geometry::from_ras_affine(ras, "test");
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(back.spacing[i], g.spacing[i], 1e-12);
    EXPECT_NEAR(back.origin[i], g.origin[i], 1e-12);
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(back.direction[i], g.direction[i], 1e-12);
  EXPECT_TRUE(back.matches(g));
}

TEST(Geometry, MatchesUsesRelativeTolerance) {
  Geometry a = oblique(), b = a;
  b.spacing[2] *= 1.00005;
  EXPECT_TRUE(a.matches(b));
  b.spacing[2] = a.spacing[2] * 1.01;
  EXPECT_FALSE(a.matches(b));
  b = a;
  b.origin[0] += 1.0;  // a whole millimetre off
  EXPECT_FALSE(a.matches(b));
}

TEST(Geometry, ShearedOrZeroAffinesAreRefusedNamingTheSource) {
  std::array<double, 16> ras{1, 0.5, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  try {
    Geometry::from_ras_affine(ras, "scan.nii.gz");
    FAIL() << "a sheared affine was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("scan.nii.gz"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shears"), std::string::npos) << e.what();
  }
  ras = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  EXPECT_THROW(Geometry::from_ras_affine(ras, "zero.nii"), InputError);
  Geometry bad;
  bad.spacing[1] = -1.0;
  EXPECT_THROW(bad.validate("bad"), InputError);
}

}  // namespace
}  // namespace vitruvian::data
