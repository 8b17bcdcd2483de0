// The phantom renderer's scene: implicit shapes (ellipsoids, tapered tubes, cylinders,
// half-spaces) painted in order with materials, on a smoothly deformed template, into a label
// map and intensity series with partial-volume edges and CT/MR noise. Private to data/.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "data/volume.h"

namespace vitruvian::data::phantom {

struct Vec3 {
  double x = 0, y = 0, z = 0;
  Vec3 operator+(const Vec3& o) const { return {x + o.x, y + o.y, z + o.z}; }
  Vec3 operator-(const Vec3& o) const { return {x - o.x, y - o.y, z - o.z}; }
  Vec3 operator*(double s) const { return {x * s, y * s, z * s}; }
  Vec3 operator/(double s) const { return {x / s, y / s, z / s}; }
  double operator[](int axis) const { return axis == 0 ? x : axis == 1 ? y : z; }
};
inline double dot(const Vec3& a, const Vec3& b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
inline double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }
inline Vec3 normalized(const Vec3& a) { return a / norm(a); }
inline Vec3 lerp(const Vec3& a, const Vec3& b, double t) { return a + (b - a) * t; }

/// SplitMix64 finaliser: a well-mixed 64-bit hash, portable and cheap.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Two independent standard normals from one counter (Box–Muller): noise that depends on
/// (key, counter) alone, so any thread split gives the same values.
inline void normal_pair(std::uint64_t key, std::uint64_t counter, float& n1, float& n2) {
  const std::uint64_t h = mix64(key ^ mix64(counter));
  const double u1 = (static_cast<double>(h >> 32) + 0.5) * 0x1.0p-32;
  const double u2 = static_cast<double>(h & 0xffffffffull) * 0x1.0p-32;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586 * u2;
  n1 = static_cast<float>(r * std::cos(angle));
  n2 = static_cast<float>(r * std::sin(angle));
}

/// Axis-aligned box in template millimetres.
struct Box {
  Vec3 lo{-1e9, -1e9, -1e9}, hi{1e9, 1e9, 1e9};
};

/// One implicit shape in template coordinates (LPS millimetres of an average adult): eval()
/// is an approximate signed distance in mm, negative inside, exact on the surface.
struct Shape {
  enum class Type { kEllipsoid, kRoundCone, kCylinderZ, kHalfSpace };
  Type type = Type::kEllipsoid;
  std::array<float, 3> centre{};   ///< ellipsoid / cylinder centre; cone start; plane point
  std::array<float, 9> rotation{};  ///< ellipsoid: rows are its local axes (world → local)
  std::array<float, 3> inverse_radii{};
  std::array<float, 3> axis{};  ///< cone: end − start; plane: unit outward normal
  float length2 = 0;            ///< cone: |axis|²
  float radius_start = 0, radius_end = 0;
  float z_low = 0, z_high = 0;  ///< cylinder extent along z
  Box bounds;

  /// Ellipsoid with semi-axes `radii` along the columns of `axes` (orthonormal, local → world).
  static Shape ellipsoid(const Vec3& centre, const Vec3& radii, const std::array<Vec3, 3>& axes);
  static Shape ellipsoid(const Vec3& centre, const Vec3& radii);
  /// A tube segment from a (radius ra) to b (radius rb), with round ends.
  static Shape round_cone(const Vec3& a, const Vec3& b, double ra, double rb);
  /// Elliptic cylinder along z: semi-axes rx, ry around (cx, cy), flat ends at z_low, z_high.
  static Shape cylinder_z(double cx, double cy, double rx, double ry, double z_low, double z_high);
  /// Everything on the side of the plane through `point` opposite to `outward` normal.
  static Shape half_space(const Vec3& point, const Vec3& outward);

  float eval(float x, float y, float z) const;
  double eval(const Vec3& p) const { return eval(static_cast<float>(p.x), static_cast<float>(p.y), static_cast<float>(p.z)); }
};

/// A shape painted with one material, intersected with every clip shape.
struct Primitive {
  Shape shape;
  std::vector<Shape> clips;
  int material = 0;

  float eval(float x, float y, float z) const {
    float d = shape.eval(x, y, z);
    for (const Shape& clip : clips) d = std::max(d, clip.eval(x, y, z));
    return d;
  }
  double eval(const Vec3& p) const {
    return eval(static_cast<float>(p.x), static_cast<float>(p.y), static_cast<float>(p.z));
  }
};

/// How a material's signal changes through a 4D (perfusion) series.
enum class Enhancement { kNone, kArterial, kTissue, kPenumbra, kCore, kVenous };
inline constexpr int kEnhancements = 6;

/// A tissue: the label it belongs to and its noise-free value in each series (drawn per study
/// from the documented range).
struct Material {
  std::string name;
  int label = 0;
  std::vector<float> values;  ///< one per series (4D series: the value before contrast)
  Enhancement enhancement = Enhancement::kNone;
};

/// Pieces of the scene in paint order: later ones cover earlier ones.
struct Scene {
  std::vector<Material> materials;  ///< index 0 is air outside the body
  std::vector<Primitive> primitives;

  int add(int material, const Shape& shape, std::vector<Shape> clips = {}) {
    primitives.push_back(Primitive{shape, std::move(clips), material});
    return static_cast<int>(primitives.size()) - 1;
  }
  /// A tube along `points` with radius interpolated from radii.front() to radii.back() per point.
  void tube(int material, const std::vector<Vec3>& points, const std::vector<double>& radii);
  /// Material index at template point `p` (the last primitive containing it; 0 outside all).
  int material_at(const Vec3& p) const;
};

/// What a series looks like: one entry per series of the study.
struct SeriesModel {
  std::string name;
  std::string modality;  ///< "CT" or "MR"
  VoxelType type = VoxelType::kInt16;
  double noise_sigma = 0;  ///< CT: Gaussian HU; MR: Rician sigma in signal units
  bool rician = false;
  double bias_amplitude = 0;  ///< MR: amplitude of the smooth multiplicative bias field
  int bias_field = 0;         ///< series with the same number share one bias field (one coil)
  /// 4D: time of each frame (s) and each enhancement's added signal per frame.
  std::vector<double> frame_times_s;
  std::array<std::vector<float>, kEnhancements> curves;  ///< indexed by Enhancement
};

/// Where the template sits in the patient: p = offset + scale · Rz(yaw) · (t − D(p)), with D a
/// smooth random displacement (products of sines, amplitudes in template mm).
struct Placement {
  double scale = 1.0;
  double yaw_rad = 0.0;
  Vec3 offset;
  struct Term {
    double amplitude = 0;                 ///< mm
    std::array<double, 3> omega{}, phase{};  ///< rad/mm and rad along x, y, z (patient)
  };
  std::array<std::vector<Term>, 3> displacement;  ///< per template axis (at most 8 terms each)
  /// The --deformation factor the terms were drawn with: their gradient stays below 0.24 times it.
  double max_gradient_factor = 1.0;
  double max_displacement() const;
  /// Template point → patient LPS point (solves the implicit displacement by iteration).
  Vec3 to_patient(const Vec3& t) const;
  /// Patient LPS point → template point.
  Vec3 to_template(const Vec3& p) const;
};

/// The voxel grid of a study (axis-aligned LPS, identity direction).
struct Grid {
  std::array<std::int64_t, 3> shape_zyx{};
  std::array<double, 3> spacing_xyz{};
  std::array<double, 3> origin_xyz{};
};

struct Rendered {
  at::Tensor labels;               ///< uint8 [z,y,x]
  std::array<std::int64_t, 256> label_counts{};  ///< voxels per label id
  std::vector<at::Tensor> series;  ///< per SeriesModel: int16 or int32 (uint16) [z,y,x] / [t,z,y,x]
};

/// Paints the scene and synthesises every series. Each voxel depends only on its position, the
/// scene, `noise_seed` and the models, so any thread count gives identical bytes.
Rendered render(const Scene& scene, const Placement& placement, const Grid& grid,
                const std::vector<SeriesModel>& models, std::uint64_t noise_seed, int threads);

}  // namespace vitruvian::data::phantom
