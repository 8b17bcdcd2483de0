// Scan framing: the field of view drawn per study from the kind's range, the grid placed
// off-centre on the patient, the table under the body and, for some kinds, the arms at its sides.
#include "data/phantom_framing.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/errors.h"
#include "data/random.h"

namespace vitruvian::data::phantom {
namespace {

constexpr std::uint64_t kFramingStream = 0x6672616d696e67ull;  // "framing"

/// The body's outermost reach from `from` along the unit vector `dir` (template mm, within
/// `reach`); 0 when it is not met.
double outermost(const Scene& scene, const Vec3& from, const Vec3& dir, double reach) {
  for (double d = reach; d > 0; d -= 2.0) {
    if (scene.material_at(from + dir * d) != 0) return d;
  }
  return 0;
}

/// The template z range the grid covers (a little wider: the subject's scale and offset are
/// small).
std::pair<double, double> covered_z(const Builder& b, const Framing& framing) {
  const double low = (framing.centre.z - 0.5 * framing.fov.z - b.subject.offset.z) / b.subject.scale - 10;
  const double high = (framing.centre.z + 0.5 * framing.fov.z - b.subject.offset.z) / b.subject.scale + 10;
  return {low, high};
}

/// A new material for one of the surrounding tissues, its values drawn from `rng`.
int add_material(Builder& b, const std::vector<TissueSpec>& tissues, const std::string& name, std::mt19937_64& rng) {
  for (const TissueSpec& t : tissues) {
    if (t.name != name) continue;
    Material m{t.name, label_id(t.label), {}, Enhancement::kNone};
    for (const auto& [low, high] : t.ranges) m.values.push_back(static_cast<float>(low + (high - low) * uniform01(rng)));
    b.scene.materials.push_back(std::move(m));
    return static_cast<int>(b.scene.materials.size()) - 1;
  }
  throw InternalError("phantom", "no surrounding tissue '" + name + "' for " + phantom_kind_name(b.spec.kind));
}

/// Slab [y_top, y_top + thickness] of half-width `half_width`, along the whole z axis.
Primitive slab(int material, double y_top, double thickness, double half_width) {
  const Shape sides = Shape::cylinder_z(0, y_top + 0.5 * thickness, half_width, 4 * half_width, -2000, 2000);
  return Primitive{sides,
                   {Shape::half_space(Vec3{0, y_top, 0}, Vec3{0, -1, 0}),
                    Shape::half_space(Vec3{0, y_top + thickness, 0}, Vec3{0, 1, 0})},
                   material};
}

}  // namespace

Framing draw_framing(const PhantomOptions& options, std::int64_t index, PhantomKind kind) {
  Framing f;
  if (options.framing != PhantomFraming::kScan) return f;
  const KindSpec& spec = kind_spec(kind);
  auto rng = seeded_rng({options.seed, static_cast<std::uint64_t>(index), kFramingStream});
  auto draw = [&](double low, double high) { return low + (high - low) * uniform01(rng); };
  const FramingRange& r = spec.framing;
  f.scan = true;
  const double fov_x = draw(r.fov_x_low, r.fov_x_high);
  const double fov_z = draw(r.fov_z_low, r.fov_z_high);
  f.fov.x = options.fov_xyz[0] > 0 ? options.fov_xyz[0] : fov_x;
  f.fov.y = options.fov_xyz[1] > 0 ? options.fov_xyz[1] : f.fov.x * spec.field_of_view.y / spec.field_of_view.x;
  f.fov.z = options.fov_xyz[2] > 0 ? options.fov_xyz[2] : fov_z;
  // Off-centre: up to 5 % of the field of view in-plane, 8 % of the coverage along z.
  f.centre = Vec3{draw(-0.05, 0.05) * f.fov.x, draw(-0.05, 0.05) * f.fov.y, draw(-0.08, 0.08) * f.fov.z};
  f.arms = draw(0, 1) < r.arms_down;
  f.seed = rng();
  return f;
}

Grid framed_grid(const Framing& framing, const std::array<std::int64_t, 3>& centred_shape_zyx,
                 const std::array<double, 3>& spacing_xyz) {
  Grid grid;
  grid.spacing_xyz = spacing_xyz;
  const double fov[3] = {framing.fov.x, framing.fov.y, framing.fov.z};
  const double centre[3] = {framing.centre.x, framing.centre.y, framing.centre.z};
  for (int axis = 0; axis < 3; ++axis) {
    const std::int64_t n = framing.scan ? std::max<std::int64_t>(8, std::llround(fov[axis] / spacing_xyz[axis]))
                                        : centred_shape_zyx[2 - axis];
    grid.shape_zyx[2 - axis] = n;
    grid.origin_xyz[axis] = centre[axis] - 0.5 * static_cast<double>(n - 1) * spacing_xyz[axis];
  }
  return grid;
}

std::vector<TissueSpec> surrounding_tissues(const KindSpec& spec) {
  // CT in HU; MR signal: foam and carbon fibre give almost none, cortical bone little.
  struct Values {
    const char* name;
    const char* label;
    std::pair<double, double> ct, mr;
  };
  static const Values values[] = {
      {"table_pad", "", {-900, -750}, {0, 10}},
      {"table_shell", "", {100, 250}, {0, 10}},
      {"table_core", "", {-960, -880}, {0, 10}},
      {"arm_bone", "body", {700, 1100}, {40, 80}},
  };
  std::vector<TissueSpec> out;
  for (const Values& v : values) {
    if (std::string(v.name) == "arm_bone" && spec.framing.arms_down <= 0) continue;
    TissueSpec t{v.name, v.label, {}, Enhancement::kNone};
    for (const SeriesSpec& s : spec.series) t.ranges.push_back(s.modality == "MR" ? v.mr : v.ct);
    out.push_back(std::move(t));
  }
  return out;
}

void add_surroundings(Builder& b, const Framing& framing) {
  if (!framing.scan) return;
  std::mt19937_64 rng(framing.seed);
  auto draw = [&](double low, double high) { return low + (high - low) * uniform01(rng); };
  const std::vector<TissueSpec> tissues = surrounding_tissues(b.spec);
  const auto [z_low, z_high] = covered_z(b, framing);
  std::vector<Primitive> under;  // in paint order, all under the body

  // The table: the body's back rests on the pad; the shell's top lies the pad's thickness below.
  double back = 0;
  for (double z = z_low; z <= z_high; z += 10) {
    for (double x = -60; x <= 60; x += 20) back = std::max(back, outermost(b.scene, Vec3{x, 0, z}, Vec3{0, 1, 0}, 320));
  }
  const double pad = draw(15, 40), shell = draw(2.5, 4), core = draw(30, 50), half_width = draw(210, 235);
  const int pad_material = add_material(b, tissues, "table_pad", rng);
  const int shell_material = add_material(b, tissues, "table_shell", rng);
  const int core_material = add_material(b, tissues, "table_core", rng);
  under.push_back(slab(pad_material, back - 5, pad + 5, half_width - 15));
  under.push_back(slab(shell_material, back + pad, 2 * shell + core, half_width));
  under.push_back(slab(core_material, back + pad + shell, core, half_width - shell));
  nlohmann::json truth = {{"table", {{"pad_mm", pad * b.subject.scale},
                                     {"thickness_mm", (2 * shell + core) * b.subject.scale},
                                     {"top", b.patient(Vec3{0, back + pad, 0})}}},
                          {"arms", framing.arms ? "at the sides" : "raised (out of view)"}};

  // The arms at the sides: fat round muscle round the humerus (label "body"), a gap of 0–15 mm
  // from the trunk at the height of the body's centre.
  if (framing.arms) {
    const int bone = add_material(b, tissues, "arm_bone", rng);
    const double radius_x = draw(40, 50), radius_y = draw(45, 55), fat = draw(6, 14);
    for (const double side : {-1.0, 1.0}) {
      double reach = 0;
      for (double z = z_low; z <= z_high; z += 10) reach = std::max(reach, outermost(b.scene, Vec3{0, 10, z}, Vec3{side, 0, 0}, 320));
      const double gap = draw(0, 15), y = draw(0, 25);
      const double x = side * (reach + gap + radius_x);
      under.push_back(Primitive{Shape::cylinder_z(x, y, radius_x, radius_y, -2000, 2000), {}, b.tissue("fat")});
      under.push_back(Primitive{Shape::cylinder_z(x, y, radius_x - fat, radius_y - fat, -2000, 2000), {}, b.tissue("muscle")});
      under.push_back(Primitive{Shape::cylinder_z(x + side * 4, y, 11, 11, -2000, 2000), {}, bone});
      under.push_back(Primitive{Shape::cylinder_z(x + side * 4, y, 6, 6, -2000, 2000), {}, b.tissue("fat")});
      truth[side < 0 ? "arm_right" : "arm_left"] = {{"centre", b.patient(Vec3{x, y, 0})}, {"gap_mm", gap * b.subject.scale}};
    }
  }
  b.scene.primitives.insert(b.scene.primitives.begin(), under.begin(), under.end());
  b.truth["framing"] = truth;
}

}  // namespace vitruvian::data::phantom
