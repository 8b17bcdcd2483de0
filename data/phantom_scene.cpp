// Implicit shapes, the deformed template placement and the slice-parallel renderer.
#include "data/phantom_scene.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "core/errors.h"

namespace vitruvian::data::phantom {
namespace {

std::array<float, 3> to_float(const Vec3& v) {
  return {static_cast<float>(v.x), static_cast<float>(v.y), static_cast<float>(v.z)};
}

Box sphere_box(const Vec3& c, double r) { return Box{{c.x - r, c.y - r, c.z - r}, {c.x + r, c.y + r, c.z + r}}; }

Box intersect(const Box& a, const Box& b) {
  return Box{{std::max(a.lo.x, b.lo.x), std::max(a.lo.y, b.lo.y), std::max(a.lo.z, b.lo.z)},
             {std::min(a.hi.x, b.hi.x), std::min(a.hi.y, b.hi.y), std::min(a.hi.z, b.hi.z)}};
}

/// Index range [low, high] (inclusive) of a primitive on the grid; empty when low > high.
struct IndexBox {
  std::array<std::int64_t, 3> low{}, high{};  // x, y, z
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shapes

Shape Shape::ellipsoid(const Vec3& centre, const Vec3& radii, const std::array<Vec3, 3>& axes) {
  Shape s;
  s.type = Type::kEllipsoid;
  s.centre = to_float(centre);
  for (int row = 0; row < 3; ++row) {
    const auto a = to_float(axes[row]);
    for (int col = 0; col < 3; ++col) s.rotation[row * 3 + col] = a[col];
  }
  for (int axis = 0; axis < 3; ++axis) {
    if (!(radii[axis] > 0)) throw InternalError("phantom", "phantom ellipsoid with a radius <= 0");
    s.inverse_radii[axis] = static_cast<float>(1.0 / radii[axis]);
  }
  // Bounding box of the rotated ellipsoid: half-extent along world axis w is
  // sqrt(sum_k (r_k * axes[k][w])^2).
  Vec3 half;
  for (int w = 0; w < 3; ++w) {
    double sum = 0;
    for (int k = 0; k < 3; ++k) sum += std::pow(radii[k] * axes[k][w], 2);
    (w == 0 ? half.x : w == 1 ? half.y : half.z) = std::sqrt(sum);
  }
  s.bounds = Box{centre - half, centre + half};
  return s;
}

Shape Shape::ellipsoid(const Vec3& centre, const Vec3& radii) {
  return ellipsoid(centre, radii, {Vec3{1, 0, 0}, Vec3{0, 1, 0}, Vec3{0, 0, 1}});
}

Shape Shape::round_cone(const Vec3& a, const Vec3& b, double ra, double rb) {
  Shape s;
  s.type = Type::kRoundCone;
  s.centre = to_float(a);
  s.axis = to_float(b - a);
  s.length2 = static_cast<float>(dot(b - a, b - a));
  s.radius_start = static_cast<float>(ra);
  s.radius_end = static_cast<float>(rb);
  const double r = std::max(ra, rb);
  const Box ba = sphere_box(a, r), bb = sphere_box(b, r);
  s.bounds = Box{{std::min(ba.lo.x, bb.lo.x), std::min(ba.lo.y, bb.lo.y), std::min(ba.lo.z, bb.lo.z)},
                 {std::max(ba.hi.x, bb.hi.x), std::max(ba.hi.y, bb.hi.y), std::max(ba.hi.z, bb.hi.z)}};
  return s;
}

Shape Shape::cylinder_z(double cx, double cy, double rx, double ry, double z_low, double z_high) {
  Shape s;
  s.type = Type::kCylinderZ;
  s.centre = {static_cast<float>(cx), static_cast<float>(cy), 0.f};
  s.inverse_radii = {static_cast<float>(1.0 / rx), static_cast<float>(1.0 / ry), 1.f};
  s.z_low = static_cast<float>(z_low);
  s.z_high = static_cast<float>(z_high);
  s.bounds = Box{{cx - rx, cy - ry, z_low}, {cx + rx, cy + ry, z_high}};
  return s;
}

Shape Shape::half_space(const Vec3& point, const Vec3& outward) {
  Shape s;
  s.type = Type::kHalfSpace;
  s.centre = to_float(point);
  s.axis = to_float(normalized(outward));
  return s;  // unbounded
}

float Shape::eval(float x, float y, float z) const {
  const float px = x - centre[0], py = y - centre[1], pz = z - centre[2];
  switch (type) {
    case Type::kEllipsoid: {
      // Distance estimate k0 (k0 − 1) / k1 (exact on the surface, good near it).
      const float qx = (rotation[0] * px + rotation[1] * py + rotation[2] * pz) * inverse_radii[0];
      const float qy = (rotation[3] * px + rotation[4] * py + rotation[5] * pz) * inverse_radii[1];
      const float qz = (rotation[6] * px + rotation[7] * py + rotation[8] * pz) * inverse_radii[2];
      const float k0 = std::sqrt(qx * qx + qy * qy + qz * qz);
      const float rx = qx * inverse_radii[0], ry = qy * inverse_radii[1], rz = qz * inverse_radii[2];
      const float k1 = std::sqrt(rx * rx + ry * ry + rz * rz);
      if (k1 < 1e-12f) return -1.f / std::max({inverse_radii[0], inverse_radii[1], inverse_radii[2]});
      return k0 * (k0 - 1.f) / k1;
    }
    case Type::kRoundCone: {
      float t = (px * axis[0] + py * axis[1] + pz * axis[2]) / length2;
      t = std::clamp(t, 0.f, 1.f);
      const float dx = px - t * axis[0], dy = py - t * axis[1], dz = pz - t * axis[2];
      return std::sqrt(dx * dx + dy * dy + dz * dz) - (radius_start + t * (radius_end - radius_start));
    }
    case Type::kCylinderZ: {
      const float qx = px * inverse_radii[0], qy = py * inverse_radii[1];
      const float k0 = std::sqrt(qx * qx + qy * qy);
      const float rx = qx * inverse_radii[0], ry = qy * inverse_radii[1];
      const float k1 = std::sqrt(rx * rx + ry * ry);
      const float radial = k1 < 1e-12f ? -1.f / std::max(inverse_radii[0], inverse_radii[1]) : k0 * (k0 - 1.f) / k1;
      return std::max(radial, std::max(z_low - z, z - z_high));
    }
    case Type::kHalfSpace:
      return px * axis[0] + py * axis[1] + pz * axis[2];
  }
  return 1.f;
}

// ---------------------------------------------------------------------------------------------
// Scene

void Scene::tube(int material, const std::vector<Vec3>& points, const std::vector<double>& radii) {
  if (points.size() < 2 || radii.size() != points.size()) throw InternalError("phantom", "phantom tube needs >= 2 points and a radius each");
  for (std::size_t n = 0; n + 1 < points.size(); ++n) {
    if (norm(points[n + 1] - points[n]) < 1e-6) continue;
    add(material, Shape::round_cone(points[n], points[n + 1], radii[n], radii[n + 1]));
  }
}

int Scene::material_at(const Vec3& p) const {
  int material = 0;
  for (const Primitive& primitive : primitives) {
    // A point inside a primitive lies inside its shape's bounds: test those first (cheap).
    const Box& b = primitive.shape.bounds;
    if (p.x < b.lo.x || p.x > b.hi.x || p.y < b.lo.y || p.y > b.hi.y || p.z < b.lo.z || p.z > b.hi.z) continue;
    if (primitive.eval(p) < 0) material = primitive.material;
  }
  return material;
}

// ---------------------------------------------------------------------------------------------
// Placement

double Placement::max_displacement() const {
  double largest = 0;
  for (const auto& terms : displacement) {
    double sum = 0;
    for (const Term& term : terms) sum += std::abs(term.amplitude);
    largest = std::max(largest, sum);
  }
  return largest;
}

namespace {

Vec3 displacement_at(const Placement& placement, const Vec3& p) {
  double d[3] = {0, 0, 0};
  for (int c = 0; c < 3; ++c) {
    for (const auto& term : placement.displacement[c]) {
      d[c] += term.amplitude * std::sin(term.omega[0] * p.x + term.phase[0]) *
              std::sin(term.omega[1] * p.y + term.phase[1]) * std::sin(term.omega[2] * p.z + term.phase[2]);
    }
  }
  return {d[0], d[1], d[2]};
}

/// Rz(yaw) · v
Vec3 rotate_z(const Vec3& v, double angle) {
  const double c = std::cos(angle), s = std::sin(angle);
  return {c * v.x - s * v.y, s * v.x + c * v.y, v.z};
}

}  // namespace

Vec3 Placement::to_template(const Vec3& p) const {
  return rotate_z(p - offset, -yaw_rad) / scale + displacement_at(*this, p);
}

Vec3 Placement::to_patient(const Vec3& t) const {
  Vec3 p = offset + rotate_z(t, yaw_rad) * scale;
  for (int iteration = 0; iteration < 20; ++iteration) {
    p = offset + rotate_z(t - displacement_at(*this, p), yaw_rad) * scale;
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Rendering

namespace {

/// Grid index → template coordinates, t = L (p − offset) + D(p): L linear, D a sum of separable
/// sine terms per axis, each tabulated along x, y and z once.
class TemplateMap {
 public:
  TemplateMap(const Placement& placement, const Grid& grid) {
    const std::int64_t Z = grid.shape_zyx[0], Y = grid.shape_zyx[1], X = grid.shape_zyx[2];
    const auto& h = grid.spacing_xyz;
    const auto& o = grid.origin_xyz;
    const double scale = placement.scale;
    const double c = std::cos(-placement.yaw_rad) / scale, s = std::sin(-placement.yaw_rad) / scale;
    const Vec3 base = Vec3{o[0], o[1], o[2]} - placement.offset;
    t0_ = {c * base.x - s * base.y, s * base.x + c * base.y, base.z / scale};
    di_ = {c * h[0], s * h[0], 0}, dj_ = {-s * h[1], c * h[1], 0}, dk_ = {0, 0, h[2] / scale};
    for (int axis = 0; axis < 3; ++axis) {
      if (placement.displacement[axis].size() > kMaxTerms) {
        throw InternalError("phantom", "more than 8 displacement terms per axis");
      }
      for (const auto& term : placement.displacement[axis]) {
        Term a{term.amplitude, std::vector<float>(X), std::vector<float>(Y), std::vector<float>(Z)};
        for (std::int64_t i = 0; i < X; ++i)
          a.x[i] = static_cast<float>(std::sin(term.omega[0] * (o[0] + i * h[0]) + term.phase[0]));
        for (std::int64_t j = 0; j < Y; ++j)
          a.y[j] = static_cast<float>(std::sin(term.omega[1] * (o[1] + j * h[1]) + term.phase[1]));
        for (std::int64_t k = 0; k < Z; ++k)
          a.z[k] = static_cast<float>(std::sin(term.omega[2] * (o[2] + k * h[2]) + term.phase[2]));
        terms_[axis].push_back(std::move(a));
      }
    }
  }

  /// The template coordinates of every voxel of slice k, row-major [y][x].
  void slice(std::int64_t k, std::int64_t Y, std::int64_t X, float* tx, float* ty, float* tz) const {
    for (std::int64_t j = 0; j < Y; ++j) {
      float row_terms[3][kMaxTerms];  // amplitude · y · z per term
      for (int axis = 0; axis < 3; ++axis) {
        for (std::size_t n = 0; n < terms_[axis].size(); ++n) {
          const Term& term = terms_[axis][n];
          row_terms[axis][n] = static_cast<float>(term.amplitude) * term.y[j] * term.z[k];
        }
      }
      const Vec3 row = t0_ + dj_ * static_cast<double>(j) + dk_ * static_cast<double>(k);
      for (std::int64_t i = 0; i < X; ++i) {
        float d[3] = {0, 0, 0};
        for (int axis = 0; axis < 3; ++axis) {
          for (std::size_t n = 0; n < terms_[axis].size(); ++n) d[axis] += row_terms[axis][n] * terms_[axis][n].x[i];
        }
        const std::int64_t v = j * X + i;
        tx[v] = static_cast<float>(row.x + di_.x * i) + d[0];
        ty[v] = static_cast<float>(row.y + di_.y * i) + d[1];
        tz[v] = static_cast<float>(row.z) + d[2];
      }
    }
  }

 private:
  static constexpr std::size_t kMaxTerms = 8;
  struct Term {
    double amplitude;
    std::vector<float> x, y, z;
  };
  Vec3 t0_, di_, dj_, dk_;
  std::array<std::vector<Term>, 3> terms_;
};

/// Each primitive's index box: its template box through the inverse placement, widened by the
/// largest displacement and one voxel of partial volume.
std::vector<IndexBox> primitive_boxes(const Scene& scene, const Placement& placement, const Grid& grid) {
  const auto& h = grid.spacing_xyz;
  const auto& o = grid.origin_xyz;
  const std::int64_t sizes[3] = {grid.shape_zyx[2], grid.shape_zyx[1], grid.shape_zyx[0]};
  const double margin = placement.max_displacement() * placement.scale + 2 * std::max({h[0], h[1], h[2]});
  std::vector<IndexBox> boxes(scene.primitives.size());
  for (std::size_t n = 0; n < scene.primitives.size(); ++n) {
    const Primitive& primitive = scene.primitives[n];
    Box box = primitive.shape.bounds;
    for (const Shape& clip : primitive.clips) box = intersect(box, clip.bounds);
    Vec3 lo{1e30, 1e30, 1e30}, hi{-1e30, -1e30, -1e30};
    for (int corner = 0; corner < 8; ++corner) {
      const Vec3 t{corner & 1 ? box.hi.x : box.lo.x, corner & 2 ? box.hi.y : box.lo.y, corner & 4 ? box.hi.z : box.lo.z};
      const Vec3 p = placement.offset + rotate_z(t, placement.yaw_rad) * placement.scale;
      lo = {std::min(lo.x, p.x), std::min(lo.y, p.y), std::min(lo.z, p.z)};
      hi = {std::max(hi.x, p.x), std::max(hi.y, p.y), std::max(hi.z, p.z)};
    }
    for (int axis = 0; axis < 3; ++axis) {
      const double low = std::floor((lo[axis] - margin - o[axis]) / h[axis]);
      const double high = std::ceil((hi[axis] + margin - o[axis]) / h[axis]);
      boxes[n].low[axis] = static_cast<std::int64_t>(std::clamp(low, 0.0, static_cast<double>(sizes[axis])));
      boxes[n].high[axis] = static_cast<std::int64_t>(std::clamp(high, -1.0, static_cast<double>(sizes[axis] - 1)));
    }
  }
  return boxes;
}

/// A series' smooth multiplicative bias field, separable: (1 + x[i]) (1 + y[j]) (1 + z[k]); empty
/// when the series has none.
struct BiasField {
  std::vector<float> x, y, z;
};

std::vector<BiasField> bias_fields(const std::vector<SeriesModel>& models, const Grid& grid, std::uint64_t noise_seed) {
  const auto& h = grid.spacing_xyz;
  std::vector<BiasField> bias(models.size());
  for (std::size_t m = 0; m < models.size(); ++m) {
    if (models[m].bias_amplitude <= 0) continue;
    std::mt19937_64 rng(mix64(noise_seed ^ (0xb1a5ull + static_cast<std::uint64_t>(models[m].bias_field))));
    auto axis_field = [&](std::int64_t n, double spacing) {
      const double phase = static_cast<double>(rng() >> 11) * 0x1.0p-53 * 6.283185307179586;
      const double period = 500.0 + static_cast<double>(rng() >> 11) * 0x1.0p-53 * 400.0;  // mm
      std::vector<float> f(n);
      for (std::int64_t i = 0; i < n; ++i) {
        f[i] = static_cast<float>(models[m].bias_amplitude * std::sin(6.283185307179586 * i * spacing / period + phase));
      }
      return f;
    };
    bias[m] = BiasField{axis_field(grid.shape_zyx[2], h[0]), axis_field(grid.shape_zyx[1], h[1]),
                        axis_field(grid.shape_zyx[0], h[2])};
  }
  return bias;
}

/// Each material's noise-free value in every series and frame (its value plus its enhancement
/// curve), [series][frame][material], looked up per voxel instead of recomputed.
std::vector<std::vector<std::vector<float>>> material_levels(const Scene& scene,
                                                             const std::vector<SeriesModel>& models) {
  std::vector<std::vector<std::vector<float>>> levels(models.size());
  for (std::size_t m = 0; m < models.size(); ++m) {
    const std::size_t frames = models[m].frame_times_s.empty() ? 1 : models[m].frame_times_s.size();
    levels[m].assign(frames, std::vector<float>(scene.materials.size()));
    for (std::size_t f = 0; f < frames; ++f) {
      for (std::size_t mat = 0; mat < scene.materials.size(); ++mat) {
        const Material& material = scene.materials[mat];
        const float curve = models[m].frame_times_s.empty() ? 0.f : models[m].curves[static_cast<int>(material.enhancement)][f];
        levels[m][f][mat] = material.values[m] + curve;
      }
    }
  }
  return levels;
}

Rendered allocate(const Grid& grid, const std::vector<SeriesModel>& models) {
  const std::int64_t Z = grid.shape_zyx[0], Y = grid.shape_zyx[1], X = grid.shape_zyx[2];
  Rendered out;
  out.labels = at::empty({Z, Y, X}, at::kByte);
  for (const SeriesModel& model : models) {
    if (model.type != VoxelType::kInt16 && model.type != VoxelType::kUInt16) {
      throw InternalError("phantom", "phantom series must be int16 or uint16");
    }
    const auto dtype = model.type == VoxelType::kInt16 ? at::kShort : at::kInt;
    out.series.push_back(model.frame_times_s.empty()
                             ? at::empty({Z, Y, X}, dtype)
                             : at::empty({static_cast<std::int64_t>(model.frame_times_s.size()), Z, Y, X}, dtype));
  }
  return out;
}

/// One slice's materials: per voxel the two main ones (`first` the larger) and the first's
/// fraction, from each primitive's coverage (0.5 on its surface, linear over `h_eff`), later
/// primitives painted over earlier ones.
struct SliceMaterials {
  std::vector<std::uint8_t> first, second;
  std::vector<float> weight;

  explicit SliceMaterials(std::int64_t plane) : first(plane), second(plane), weight(plane) {}

  void paint(const Scene& scene, const std::vector<IndexBox>& boxes, std::int64_t k, std::int64_t X,
             float coverage_scale, const float* tx, const float* ty, const float* tz) {
    std::fill(first.begin(), first.end(), 0);
    std::fill(second.begin(), second.end(), 0);
    std::fill(weight.begin(), weight.end(), 1.f);
    // Raw pointers in locals: a byte store may alias any object, so members would be reloaded.
    std::uint8_t* const a = first.data();
    std::uint8_t* const b = second.data();
    float* const w = weight.data();
    for (std::size_t n = 0; n < scene.primitives.size(); ++n) {
      const IndexBox& box = boxes[n];
      if (k < box.low[2] || k > box.high[2]) continue;
      const Primitive& primitive = scene.primitives[n];
      const auto m = static_cast<std::uint8_t>(primitive.material);
      for (std::int64_t j = box.low[1]; j <= box.high[1]; ++j) {
        for (std::int64_t i = box.low[0]; i <= box.high[0]; ++i) {
          const std::int64_t v = j * X + i;
          add(a[v], b[v], w[v], m, 0.5f - primitive.eval(tx[v], ty[v], tz[v]) * coverage_scale);
        }
      }
    }
  }

 private:
  /// Material m covers `cover` of a voxel whose main materials are `first` (its share `weight`)
  /// and `second`.
  static void add(std::uint8_t& first, std::uint8_t& second, float& weight, std::uint8_t m, float cover) {
    if (cover <= 0.f) return;
    if (cover >= 1.f) {
      first = second = m;
      weight = 1.f;
    } else if (first == m) {
      weight = std::max(weight, cover);
    } else if (second == m) {
      const float fraction = std::max(1.f - weight, cover);
      if (fraction >= 0.5f) {
        second = first;
        first = m;
        weight = fraction;
      } else {
        weight = 1.f - fraction;
      }
    } else if (cover >= 0.5f) {
      second = first;
      first = m;
      weight = cover;
    } else if (cover > 1.f - weight) {
      second = m;
      weight = 1.f - cover;
    }
  }
};

/// Slice k of every frame of series m: the two materials mixed, the bias field, the noise, and
/// rounding to the series' type.
void write_series_slice(const SeriesModel& model, std::size_t m, const std::vector<std::vector<float>>& levels,
                        const BiasField& bias, const SliceMaterials& slice, std::uint64_t noise_seed, std::int64_t k,
                        std::int64_t Z, std::int64_t Y, std::int64_t X, at::Tensor& series) {
  const std::int64_t plane = Y * X;
  const std::int64_t frames = model.frame_times_s.empty() ? 1 : static_cast<std::int64_t>(model.frame_times_s.size());
  const float sigma = static_cast<float>(model.noise_sigma);
  const bool has_bias = !bias.x.empty();
  for (std::int64_t f = 0; f < frames; ++f) {
    const std::uint64_t key =
        mix64(noise_seed ^ mix64((static_cast<std::uint64_t>(m) << 32) | static_cast<std::uint64_t>(f)));
    const std::int64_t frame_offset = (f * Z + k) * plane;
    std::int16_t* out16 = model.type == VoxelType::kInt16 ? series.data_ptr<std::int16_t>() + frame_offset : nullptr;
    std::int32_t* out32 = model.type == VoxelType::kUInt16 ? series.data_ptr<std::int32_t>() + frame_offset : nullptr;
    const float* level = levels[static_cast<std::size_t>(f)].data();
    for (std::int64_t j = 0; j < Y; ++j) {
      const float row_bias = has_bias ? (1.f + bias.y[j]) * (1.f + bias.z[k]) : 1.f;
      float n1 = 0, n2 = 0;
      for (std::int64_t i = 0; i < X; ++i) {
        const std::int64_t v = j * X + i;
        const std::int64_t voxel = k * plane + v;
        // Gaussian noise takes one normal per voxel (a pair serves two voxels); Rician two.
        if (model.rician) {
          normal_pair(key, static_cast<std::uint64_t>(voxel), n1, n2);
        } else if (i == 0 || (voxel & 1) == 0) {
          normal_pair(key, static_cast<std::uint64_t>(voxel >> 1), n1, n2);
        }
        const float w = slice.weight[v];
        float value = w * level[slice.first[v]] + (1.f - w) * level[slice.second[v]];
        if (has_bias) value *= (1.f + bias.x[i]) * row_bias;
        if (model.rician) {
          const float re = value + sigma * n1, im = sigma * n2;
          value = std::sqrt(re * re + im * im);
        } else {
          value += sigma * ((voxel & 1) == 0 ? n1 : n2);
        }
        const float rounded = std::nearbyint(value);
        if (out16 != nullptr) {
          out16[v] = static_cast<std::int16_t>(std::clamp(rounded, -32768.f, 32767.f));
        } else {
          out32[v] = static_cast<std::int32_t>(std::clamp(rounded, 0.f, 65535.f));
        }
      }
    }
  }
}

}  // namespace

Rendered render(const Scene& scene, const Placement& placement, const Grid& grid,
                const std::vector<SeriesModel>& models, std::uint64_t noise_seed, int threads) {
  if (scene.materials.size() > 255) throw InternalError("phantom", "phantom scene with more than 255 materials");
  const std::int64_t Z = grid.shape_zyx[0], Y = grid.shape_zyx[1], X = grid.shape_zyx[2];
  const auto& h = grid.spacing_xyz;
  const float coverage_scale = static_cast<float>(placement.scale / ((h[0] + h[1] + h[2]) / 3.0));
  const TemplateMap to_template(placement, grid);
  const std::vector<IndexBox> boxes = primitive_boxes(scene, placement, grid);
  const std::vector<BiasField> bias = bias_fields(models, grid, noise_seed);
  const auto levels = material_levels(scene, models);
  std::vector<std::uint8_t> material_label(scene.materials.size());
  for (std::size_t m = 0; m < scene.materials.size(); ++m)
    material_label[m] = static_cast<std::uint8_t>(scene.materials[m].label);

  Rendered out = allocate(grid, models);
  const std::int64_t plane = Y * X;
  std::uint8_t* labels = out.labels.data_ptr<std::uint8_t>();
#pragma omp parallel num_threads(std::max(1, threads))
  {
    std::vector<float> tx(plane), ty(plane), tz(plane);
    SliceMaterials slice(plane);
    std::array<std::int64_t, 256> counts{};  // this thread's; integer sums do not depend on the split
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t k = 0; k < Z; ++k) {
      to_template.slice(k, Y, X, tx.data(), ty.data(), tz.data());
      slice.paint(scene, boxes, k, X, coverage_scale, tx.data(), ty.data(), tz.data());
      for (std::int64_t v = 0; v < plane; ++v) {
        labels[k * plane + v] = material_label[slice.first[v]];
        ++counts[material_label[slice.first[v]]];
      }
      for (std::size_t m = 0; m < models.size(); ++m) {
        write_series_slice(models[m], m, levels[m], bias[m], slice, noise_seed, k, Z, Y, X, out.series[m]);
      }
    }
#pragma omp critical
    for (std::size_t id = 0; id < counts.size(); ++id) out.label_counts[id] += counts[id];
  }
  return out;
}

}  // namespace vitruvian::data::phantom
