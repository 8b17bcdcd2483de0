// Geometry: affines in LPS and RAS, and the checks importers rely on.
#include "data/geometry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace vitruvian::data {

std::array<double, 16> Geometry::index_to_lps() const {
  std::array<double, 16> m{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m[r * 4 + c] = direction[r * 3 + c] * spacing[c];
    m[r * 4 + 3] = origin[r];
  }
  m[15] = 1.0;
  return m;
}

std::array<double, 16> Geometry::index_to_ras() const {
  std::array<double, 16> m = index_to_lps();
  for (int c = 0; c < 4; ++c) {
    m[c] = -m[c];
    m[4 + c] = -m[4 + c];
  }
  return m;
}

Geometry Geometry::from_ras_affine(const std::array<double, 16>& ras, const std::string& source, double tolerance) {
  Geometry g;
  std::array<std::array<double, 3>, 3> columns{};
  for (int c = 0; c < 3; ++c) {
    const double x = -ras[c], y = -ras[4 + c], z = ras[8 + c];  // RAS → LPS
    const double norm = std::sqrt(x * x + y * y + z * z);
    if (!(norm > 0.0) || !std::isfinite(norm)) {
      throw InputError(source, fmt::format("the affine's column {} is zero or not finite; expected a voxel size > 0 "
                                           "along every axis", c));
    }
    g.spacing[c] = norm;
    columns[c] = {x / norm, y / norm, z / norm};
  }
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) {
      const double cosine = columns[a][0] * columns[b][0] + columns[a][1] * columns[b][1] + columns[a][2] * columns[b][2];
      if (std::abs(cosine) > tolerance) {
        throw InputError(source, fmt::format("the affine shears the grid (axes {} and {} at cosine {:.3g}); expected "
                                             "orthogonal voxel axes", a, b, cosine));
      }
    }
  }
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) g.direction[r * 3 + c] = columns[c][r];
  }
  g.origin = {-ras[3], -ras[7], ras[11]};
  return g;
}

bool Geometry::matches(const Geometry& other, double relative) const {
  const double largest = *std::max_element(spacing.begin(), spacing.end());
  for (int i = 0; i < 3; ++i) {
    if (std::abs(spacing[i] - other.spacing[i]) > relative * std::max(spacing[i], other.spacing[i])) return false;
    if (std::abs(origin[i] - other.origin[i]) > relative * largest + 1e-6) return false;
  }
  for (int i = 0; i < 9; ++i) {
    if (std::abs(direction[i] - other.direction[i]) > relative) return false;
  }
  return true;
}

std::string Geometry::describe() const {
  std::array<double, 9> d = direction;
  for (double& v : d) v += 0.0;  // -0 prints as 0
  return fmt::format("spacing {:.4g}x{:.4g}x{:.4g} mm, origin ({:.4g}, {:.4g}, {:.4g}) mm LPS, direction [{:.3g} {:.3g} "
                     "{:.3g}; {:.3g} {:.3g} {:.3g}; {:.3g} {:.3g} {:.3g}]",
                     spacing[0], spacing[1], spacing[2], origin[0], origin[1], origin[2], d[0], d[1], d[2], d[3], d[4],
                     d[5], d[6], d[7], d[8]);
}

void Geometry::validate(const std::string& source) const {
  for (int i = 0; i < 3; ++i) {
    if (!(spacing[i] > 0.0) || !std::isfinite(spacing[i])) {
      throw InputError(source, fmt::format("voxel spacing {} along axis {} is not a positive number of mm", spacing[i], i));
    }
    if (!std::isfinite(origin[i])) throw InputError(source, "the origin is not finite");
  }
  for (int a = 0; a < 3; ++a) {
    for (int b = 0; b < 3; ++b) {
      double dot = 0.0;
      for (int r = 0; r < 3; ++r) dot += direction[r * 3 + a] * direction[r * 3 + b];
      if (std::abs(dot - (a == b ? 1.0 : 0.0)) > 1e-3) {
        throw InputError(source, "the direction cosines are not orthonormal: " + describe());
      }
    }
  }
}

Geometry box_geometry(const Geometry& geometry, const std::array<std::int64_t, 3>& start_zyx) {
  const std::array<double, 16> m = geometry.index_to_lps();
  Geometry out = geometry;
  for (int r = 0; r < 3; ++r) {
    out.origin[r] = m[r * 4] * static_cast<double>(start_zyx[2]) + m[r * 4 + 1] * static_cast<double>(start_zyx[1]) +
                    m[r * 4 + 2] * static_cast<double>(start_zyx[0]) + m[r * 4 + 3];
  }
  return out;
}

}  // namespace vitruvian::data
