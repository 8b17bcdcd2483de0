// Where a voxel grid sits in the patient: spacing, origin and direction cosines in DICOM's LPS
// patient coordinates (the convention of docs/FORMAT.md, ITK and DICOM), and the affine they make.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace vitruvian::data {

/// Index axes are (i, j, k) = (x, y, z): i runs fastest in memory, so a [z, y, x] array element
/// [k][j][i] sits at  origin + direction * diag(spacing) * (i, j, k)  in LPS millimetres
/// (x grows to the patient's Left, y to Posterior, z to Superior).
struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  ///< mm between voxel centres along i, j, k
  std::array<double, 3> origin{0.0, 0.0, 0.0};   ///< LPS mm of the centre of voxel (0, 0, 0)
  /// Row-major 3×3; column c is the LPS unit vector of index axis c.
  std::array<double, 9> direction{1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0};

  /// Row-major 4×4 voxel index (i, j, k, 1) → LPS mm.
  std::array<double, 16> index_to_lps() const;
  /// The same affine in RAS+ (NIfTI's world): the first two rows negated.
  std::array<double, 16> index_to_ras() const;
  /// From a NIfTI-style RAS affine (row-major 4×4): spacing = column norms, direction = the
  /// normalised columns turned to LPS. Throws InputError (naming `source`) when a column is
  /// zero or the columns are not orthogonal within `tolerance` (cosine).
  static Geometry from_ras_affine(const std::array<double, 16>& ras, const std::string& source,
                                  double tolerance = 1e-4);

  /// Spacing equal within `relative` (fraction), origin within `relative` × the largest
  /// spacing (mm), direction cosines within `relative` (absolute).
  bool matches(const Geometry& other, double relative = 1e-4) const;
  /// "spacing 0.70×0.70×2.50 mm, origin (…) mm, direction […]" for messages and `inspect`.
  std::string describe() const;
  /// Checks spacing > 0 and finite, direction orthonormal; throws InputError naming `source`.
  void validate(const std::string& source) const;
};

/// `geometry` with the origin moved to voxel `start_zyx`: origin + direction * diag(spacing) *
/// start_xyz (the geometry of a box of the grid).
Geometry box_geometry(const Geometry& geometry, const std::array<std::int64_t, 3>& start_zyx);

}  // namespace vitruvian::data
