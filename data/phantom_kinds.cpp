// The four phantom kinds: series, tissues with their value ranges, and the anatomy (template
// coordinates: LPS millimetres of an average adult, z = 0 at the centre of the field of view).
#include "data/phantom_kinds.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>

#include "core/errors.h"
#include "data/phantom_perfusion.h"
#include "data/random.h"

namespace vitruvian::data::phantom {
namespace {

constexpr double kPi = 3.14159265358979323846;
double radians(double degrees) { return degrees * kPi / 180.0; }

using Range = std::pair<double, double>;
using Frame = std::array<Vec3, 3>;

/// Orthonormal frame whose first axis is `u` and second the part of `hint` orthogonal to it.
Frame frame_from(const Vec3& u_in, const Vec3& hint) {
  const Vec3 u = normalized(u_in);
  const Vec3 v = normalized(hint - u * dot(hint, u));
  return {u, v, cross(u, v)};
}

/// Rotation about z by `angle` of the standard frame.
Frame yawed(double angle) {
  return {Vec3{std::cos(angle), std::sin(angle), 0}, Vec3{-std::sin(angle), std::cos(angle), 0}, Vec3{0, 0, 1}};
}

Vec3 mirror_x(const Vec3& p, double side) { return {p.x * side, p.y, p.z}; }

std::vector<double> taper(std::size_t n, double from, double to) {
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = from + (to - from) * (n == 1 ? 0.0 : static_cast<double>(i) / (n - 1));
  return r;
}

/// Catmull–Rom through `control`, `per_segment` points per span (ends included once).
std::vector<Vec3> smooth_curve(const std::vector<Vec3>& control, int per_segment = 6) {
  if (control.size() < 3) return control;
  std::vector<Vec3> out;
  for (std::size_t i = 0; i + 1 < control.size(); ++i) {
    const Vec3 p0 = control[i == 0 ? 0 : i - 1], p1 = control[i], p2 = control[i + 1];
    const Vec3 p3 = control[std::min(i + 2, control.size() - 1)];
    for (int s = 0; s < per_segment; ++s) {
      const double t = static_cast<double>(s) / per_segment, t2 = t * t, t3 = t2 * t;
      out.push_back((p1 * 2.0 + (p2 - p0) * t + (p0 * 2.0 - p1 * 5.0 + p2 * 4.0 - p3) * t2 + (p1 * 3.0 - p0 - p2 * 3.0 + p3) * t3) *
                    0.5);
    }
  }
  out.push_back(control.back());
  return out;
}

/// Jitters each interior control point by up to `amount` mm (smooth vessels differ per subject).
std::vector<Vec3> jitter(Builder& b, std::vector<Vec3> points, double amount) {
  for (std::size_t i = 1; i + 1 < points.size(); ++i) {
    points[i] = points[i] + Vec3{b.uniform(-amount, amount), b.uniform(-amount, amount), b.uniform(-amount, amount)};
  }
  return points;
}

/// A vessel: Catmull–Rom through `control`, radius tapering from r0 to r1 (never below the
/// grid's connectivity limit where it lies). Returns the sampled centreline.
std::vector<Vec3> vessel(Builder& b, const std::string& tissue, const std::vector<Vec3>& control, double r0, double r1) {
  const auto points = smooth_curve(control);
  auto radii = taper(points.size(), r0, r1);
  for (std::size_t i = 0; i < points.size(); ++i) radii[i] = b.tube_radius_at(points[i], radii[i]);
  b.scene.tube(b.tissue(tissue), points, radii);
  return points;
}

/// A bone as an outer cortical ellipsoid with a cancellous core `shell` mm inside.
void bone_ellipsoid(Builder& b, const std::string& cortical, const std::string& cancellous, const Vec3& c, const Vec3& radii,
                    const Frame& axes, double shell, std::vector<Shape> clips = {}) {
  b.scene.add(b.tissue(cortical), Shape::ellipsoid(c, radii, axes), clips);
  const Vec3 inner{std::max(radii.x - shell, 0.5), std::max(radii.y - shell, 0.5), std::max(radii.z - shell, 0.5)};
  b.scene.add(b.tissue(cancellous), Shape::ellipsoid(c, inner, axes), clips);
}

/// A tubular bone (rib, ramus, femoral shaft): cortical tube with a marrow core.
void bone_tube(Builder& b, const std::string& cortical, const std::string& core, const std::vector<Vec3>& control,
               double radius, double shell) {
  const auto points = smooth_curve(control);
  b.scene.tube(b.tissue(cortical), points, std::vector<double>(points.size(), b.tube_radius(radius)));
  if (radius - shell > b.min_tube_radius) {
    b.scene.tube(b.tissue(core), points, std::vector<double>(points.size(), radius - shell));
  }
}

/// A vertebra: body (cortical shell, cancellous core) with pedicles, lamina and spinous process.
void vertebra(Builder& b, const std::string& cortical, const std::string& cancellous, const Vec3& c, double rx, double ry,
              double height, bool transverse) {
  b.scene.add(b.tissue(cortical), Shape::cylinder_z(c.x, c.y, rx, ry, c.z - height / 2, c.z + height / 2));
  b.scene.add(b.tissue(cancellous), Shape::cylinder_z(c.x, c.y, rx - 2.5, ry - 2.5, c.z - height / 2 + 2, c.z + height / 2 - 2));
  const double back = c.y + ry;
  for (const double side : {-1.0, 1.0}) {
    b.scene.tube(b.tissue(cortical), {Vec3{side * rx * 0.5, back - 3, c.z}, Vec3{side * rx * 0.55, back + 14, c.z - 2}},
                 {b.tube_radius(4.5), b.tube_radius(4.0)});
    b.scene.tube(b.tissue(cortical), {Vec3{side * rx * 0.55, back + 14, c.z - 2}, Vec3{0, back + 22, c.z - 4}},
                 {b.tube_radius(4.0), b.tube_radius(4.0)});
    if (transverse) {
      b.scene.tube(b.tissue(cortical), {Vec3{side * rx * 0.5, back + 8, c.z}, Vec3{side * (rx + 22), back + 10, c.z}},
                   {b.tube_radius(4.5), b.tube_radius(3.5)});
    }
  }
  b.scene.tube(b.tissue(cortical), {Vec3{0, back + 20, c.z - 3}, Vec3{0, back + 32, c.z - height * 0.6}},
               {b.tube_radius(4.5), b.tube_radius(4.0)});
}

/// The trunk wall: subcutaneous fat around muscle around the inner cavity (template ellipses).
struct Trunk {
  double muscle_rx, muscle_ry, cavity_rx, cavity_ry, cavity_cy;
};
void trunk(Builder& b, const Trunk& t, double z_low, double z_high, const std::string& cavity_tissue) {
  const double f = b.subject.fat_mm / b.subject.scale;  // template mm
  b.scene.add(b.tissue("fat"), Shape::cylinder_z(0, 0, t.muscle_rx + 1.3 * f, t.muscle_ry + f, z_low, z_high));
  b.scene.add(b.tissue("muscle"), Shape::cylinder_z(0, 0, t.muscle_rx, t.muscle_ry, z_low, z_high));
  b.scene.add(b.tissue(cavity_tissue), Shape::cylinder_z(0, t.cavity_cy, t.cavity_rx, t.cavity_ry, z_low, z_high));
}

// ---------------------------------------------------------------------------------------------
// Blobs: nodules, lesions, plaques placed where the scene has the right tissue.

struct Blob {
  Vec3 centre;    // template
  double radius;  // template
};

/// Tries to place a sphere of `radius` (template mm) whose surface, widened by the blob gap,
/// lies wholly in `allowed` materials and clear of `others`. Returns false after 200 tries.
bool place_blob(Builder& b, double radius, const Box& region, const std::vector<int>& allowed, const std::vector<Blob>& others,
                Vec3& centre) {
  std::vector<Vec3> directions;
  for (int dz = -1; dz <= 1; ++dz)
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx)
        if (dx || dy || dz) directions.push_back(normalized(Vec3{double(dx), double(dy), double(dz)}));
  auto is_allowed = [&](const Vec3& p) {
    return std::find(allowed.begin(), allowed.end(), b.scene.material_at(p)) != allowed.end();
  };
  for (int attempt = 0; attempt < 200; ++attempt) {
    const Vec3 c{b.uniform(region.lo.x, region.hi.x), b.uniform(region.lo.y, region.hi.y), b.uniform(region.lo.z, region.hi.z)};
    bool ok = is_allowed(c);
    for (const Blob& other : others) ok = ok && norm(c - other.centre) > radius + other.radius + 2 * b.blob_gap;
    for (std::size_t d = 0; ok && d < directions.size(); ++d) ok = is_allowed(c + directions[d] * (radius + b.blob_gap));
    if (ok) {
      centre = c;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Coronary arteries: centrelines found in the grooves between heart chambers.

/// Outermost crossing of the union of `shapes` along origin + dir·d, d in [0, reach]; -1 if none.
double outer_surface(const std::vector<const Shape*>& shapes, const Vec3& origin, const Vec3& dir, double reach) {
  auto inside = [&](double d) {
    const Vec3 p = origin + dir * d;
    for (const Shape* s : shapes) {
      if (s->eval(p) < 0) return true;
    }
    return false;
  };
  double last = -1;
  for (double d = 0; d <= reach; d += 1.0) {
    if (inside(d)) last = d;
  }
  if (last < 0) return -1;
  double lo = last, hi = last + 1.0;
  for (int it = 0; it < 16; ++it) {
    const double mid = 0.5 * (lo + hi);
    (inside(mid) ? lo : hi) = mid;
  }
  return lo;
}

double wrap_angle(double a) {
  while (a > kPi) a -= 2 * kPi;
  while (a < -kPi) a += 2 * kPi;
  return a;
}

struct HeartFrame {
  Vec3 centre;  // on the LV long axis
  Frame axes;   // u (base → apex), v (anterior), w
  std::vector<const Shape*> surface;
  Vec3 direction(double theta) const { return axes[1] * std::cos(theta) + axes[2] * std::sin(theta); }
  double angle_of(const Vec3& d) const { return std::atan2(dot(d, axes[2]), dot(d, axes[1])); }
  Vec3 surface_point(double s, double theta) const {
    const Vec3 origin = centre + axes[0] * s;
    const double d = outer_surface(surface, origin, direction(theta), 120);
    return origin + direction(theta) * std::max(d, 0.0);
  }
};

double groove_cost(const Shape& a, const Shape& b, const Vec3& q) { return std::abs(a.eval(q) - b.eval(q)); }

/// Longitudinal groove (LAD): for each s, the angle near the previous one where a and b meet.
std::vector<Vec3> longitudinal_groove(const HeartFrame& h, const Shape& a, const Shape& b, double s0, double s1,
                                      double theta0) {
  std::vector<Vec3> points;
  double theta = theta0;
  for (double s = s0; s <= s1; s += 2.0) {
    double best = 1e30, best_theta = theta;
    for (double t = theta - radians(12); t <= theta + radians(12); t += radians(1)) {
      const double cost = groove_cost(a, b, h.surface_point(s, t));
      if (cost < best) best = cost, best_theta = t;
    }
    theta = best_theta;
    points.push_back(h.surface_point(s, theta));
  }
  return points;
}

/// Circumferential groove (LCx, RCA): for each angle, the level s where a and b meet.
std::vector<Vec3> circumferential_groove(const HeartFrame& h, const Shape& a, const Shape& b, double theta0, double theta1,
                                         double s_low, double s_high) {
  std::vector<Vec3> points;
  const double step = (theta1 > theta0 ? 1 : -1) * radians(4);
  double s_prev = 0.5 * (s_low + s_high);
  for (double t = theta0; (theta1 - t) * (step > 0 ? 1 : -1) >= 0; t += step) {
    double best = 1e30, best_s = s_prev;
    for (double s = std::max(s_low, s_prev - 8); s <= std::min(s_high, s_prev + 8); s += 1.0) {
      const double cost = groove_cost(a, b, h.surface_point(s, t)) + 0.05 * std::abs(s - s_prev);
      if (cost < best) best = cost, best_s = s;
    }
    if (points.empty()) {  // first point: search the whole range
      for (double s = s_low; s <= s_high; s += 1.0) {
        const double cost = groove_cost(a, b, h.surface_point(s, t));
        if (cost < best) best = cost, best_s = s;
      }
    }
    s_prev = best_s;
    points.push_back(h.surface_point(best_s, t));
  }
  return points;
}

/// Smooths a polyline (three passes of [1 2 1]/4, ends fixed).
std::vector<Vec3> smoothed(std::vector<Vec3> p) {
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<Vec3> q = p;
    for (std::size_t i = 1; i + 1 < p.size(); ++i) q[i] = (p[i - 1] + p[i] * 2.0 + p[i + 1]) * 0.25;
    p = std::move(q);
  }
  return p;
}

/// Lifts surface points outward from the heart axis by `lift` mm so the tube lies on the surface.
std::vector<Vec3> lifted(const HeartFrame& h, const std::vector<Vec3>& points, double lift) {
  std::vector<Vec3> out;
  for (const Vec3& p : points) {
    const Vec3 rel = p - h.centre;
    const Vec3 radial = rel - h.axes[0] * dot(rel, h.axes[0]);
    out.push_back(p + normalized(radial) * lift);
  }
  return out;
}

std::vector<Vec3> joined(const Vec3& from, const std::vector<Vec3>& path, int bridge_points) {
  std::vector<Vec3> out;
  for (int i = 0; i < bridge_points; ++i) out.push_back(lerp(from, path.front(), static_cast<double>(i) / bridge_points));
  out.insert(out.end(), path.begin(), path.end());
  return out;
}

struct Coronary {
  std::string name;
  std::vector<Vec3> points;
  std::vector<double> radii;
};

Coronary coronary(Builder& b, const std::string& name, const std::vector<Vec3>& points, double d0_mm, double d1_mm) {
  Coronary c{name, points, taper(points.size(), 0.5 * d0_mm / b.subject.scale, 0.5 * d1_mm / b.subject.scale)};
  for (std::size_t i = 0; i < points.size(); ++i) c.radii[i] = b.tube_radius_at(points[i], c.radii[i]);
  b.scene.tube(b.tissue("coronary_" + name + "_blood"), c.points, c.radii);
  return c;
}

double path_length(const std::vector<Vec3>& p) {
  double sum = 0;
  for (std::size_t i = 1; i < p.size(); ++i) sum += norm(p[i] - p[i - 1]);
  return sum;
}

// ---------------------------------------------------------------------------------------------
// chest-cardiac: non-contrast CT + coronary CTA of the thorax

/// Lungs, the upper abdomen whose domes shape their bases, and the airway.
void chest_lungs(Builder& b, const Shape& cavity) {
  Scene& sc = b.scene;
  // Lungs, then the upper abdomen whose domes shape their bases.
  sc.add(b.tissue("lung_left_parenchyma"),
         Shape::ellipsoid(Vec3{72 + b.uniform(-3, 3), 5, 15}, Vec3{68, 95, 125} * b.uniform(0.96, 1.04)), {cavity});
  sc.add(b.tissue("lung_right_parenchyma"),
         Shape::ellipsoid(Vec3{-75 + b.uniform(-3, 3), 5, 10}, Vec3{72, 95, 122} * b.uniform(0.96, 1.04)), {cavity});
  const double dome = b.uniform(-8, 8);
  sc.add(b.tissue("upper_abdomen"), Shape::ellipsoid(Vec3{35, 8, -165 + dome}, Vec3{135, 100, 100}), {cavity});
  sc.add(b.tissue("upper_abdomen"), Shape::ellipsoid(Vec3{-45, 8, -150 + dome}, Vec3{120, 100, 100}), {cavity});

  // Airway.
  sc.tube(b.tissue("airway"), {Vec3{0, 12, 200}, Vec3{0, 14, 40}}, {9, 9});
  for (const double side : {-1.0, 1.0}) {
    sc.tube(b.tissue("airway"), {Vec3{0, 14, 42}, Vec3{side * 40, 22, 18}}, {7, b.tube_radius(5)});
  }

}

/// The aorta (from its root, returned with its radius) and the pulmonary arteries.
std::pair<Vec3, double> chest_great_vessels(Builder& b) {
  // Great vessels.
  const Vec3 root{-5 + b.uniform(-3, 3), -10 + b.uniform(-3, 3), -8};
  const double r_aorta = b.uniform(13, 16);
  vessel(b, "aorta_ascending_blood", jitter(b, {root, Vec3{-14, -16, 25}, Vec3{-10, -8, 55}}, 2), r_aorta, r_aorta * 0.95);
  vessel(b, "aorta_arch_blood", {Vec3{-10, -8, 55}, Vec3{8, 8, 70}, Vec3{24, 28, 60}}, r_aorta * 0.95, r_aorta * 0.85);
  vessel(b, "aorta_descending_blood", jitter(b, {Vec3{24, 28, 60}, Vec3{28, 32, 30}, Vec3{28, 34, -60}, Vec3{20, 32, -220}}, 2),
         r_aorta * 0.85, r_aorta * 0.75);
  const Vec3 pa_split{15, -5, 25};
  vessel(b, "pa_blood", jitter(b, {Vec3{6, -34, -18}, Vec3{12, -22, 10}, pa_split}, 2), 13, 12);
  vessel(b, "pa_blood", {pa_split, Vec3{45, 12, 28}, Vec3{75, 22, 20}}, 10, 6);
  vessel(b, "pa_blood", {pa_split, Vec3{-12, 14, 28}, Vec3{-45, 16, 24}, Vec3{-75, 20, 18}}, 10, 6);

  return {root, r_aorta};
}

/// The heart's chambers and the coronary arteries in its grooves (returned, for the plaques).
std::vector<Coronary> chest_heart(Builder& b, const Vec3& root, double r_aorta) {
  Scene& sc = b.scene;
  // Heart: right atrium, left atrium, right ventricle, LV myocardium and cavity.
  const Vec3 apex_dir = normalized(Vec3{0.55 + b.uniform(-0.05, 0.05), -0.45 + b.uniform(-0.05, 0.05), -0.70});
  const Vec3 heart{20 + b.uniform(-4, 4), -20 + b.uniform(-4, 4), -40 + b.uniform(-4, 4)};
  const Frame hf = frame_from(apex_dir, Vec3{0, -1, 0});
  const double hs = b.uniform(0.93, 1.07);  // heart size
  const Vec3 lv_c = heart + apex_dir * 12 + Vec3{8, 8, 0};
  const Vec3 rv_c = heart + apex_dir * 5 + Vec3{-24, -17, 4};
  const Frame rv_axes = frame_from(apex_dir, rv_c - lv_c);
  const Shape ra = Shape::ellipsoid(heart - apex_dir * 32 + Vec3{-36, 6, 2}, Vec3{26, 26, 30} * hs);
  const Shape la = Shape::ellipsoid(heart - apex_dir * 40 + Vec3{10, 18, 4}, Vec3{30, 24, 22} * hs);
  const Shape rv = Shape::ellipsoid(rv_c, Vec3{44, 20, 34} * hs, rv_axes);
  const Shape myo = Shape::ellipsoid(lv_c, Vec3{55, 34, 34} * hs, hf);
  const double wall_mm = b.uniform(8, 12);
  const Shape lv = Shape::ellipsoid(lv_c - apex_dir * 3, Vec3{55 * hs - wall_mm + 2, 34 * hs - wall_mm, 34 * hs - wall_mm}, hf);
  sc.add(b.tissue("ra_blood"), ra);
  sc.add(b.tissue("la_blood"), la);
  sc.add(b.tissue("rv_blood"), rv);
  sc.add(b.tissue("myocardium"), myo);
  sc.add(b.tissue("lv_blood"), lv);

  // Coronary arteries in the grooves: LAD between RV and LV, LCx between LA and LV, RCA
  // between RA and RV; LM and RCA leave the aortic root.
  HeartFrame h{lv_c, hf, {&ra, &la, &rv, &myo}};
  double theta_lad = 0, best = 1e30;
  for (double t = radians(-90); t <= radians(90); t += radians(2)) {
    const double cost = groove_cost(rv, myo, h.surface_point(0, t));
    if (cost < best) best = cost, theta_lad = t;
  }
  auto lad_path = smoothed(longitudinal_groove(h, rv, myo, -30, 50 * hs, theta_lad));
  const double left = h.angle_of(Vec3{1, 0, 0}), right = h.angle_of(Vec3{-1, 0, 0});
  const double to_left = wrap_angle(left - theta_lad) > 0 ? 1 : -1;
  const double to_right = wrap_angle(right - theta_lad) > 0 ? 1 : -1;
  auto lcx_path = smoothed(circumferential_groove(h, la, myo, theta_lad + to_left * radians(35),
                                                  theta_lad + wrap_angle(left - theta_lad) + to_left * radians(70), -55, -15));
  auto rca_path = smoothed(circumferential_groove(h, ra, rv, theta_lad + to_right * radians(40),
                                                  theta_lad + wrap_angle(right - theta_lad) + to_right * radians(80), -55, 0));
  const double lift = 0.3 * 1.5 / b.subject.scale;
  lad_path = lifted(h, lad_path, lift);
  lcx_path = lifted(h, lcx_path, lift);
  rca_path = lifted(h, rca_path, lift);
  const Vec3 lm_start = root + normalized(lad_path.front() - root) * (r_aorta - 2);
  const Vec3 rca_start = root + normalized(rca_path.front() - root) * (r_aorta - 2);
  // The LCx leaves the left main where the LAD begins: painted first, so the LAD (with the left
  // main) stays whole over the branch point.
  std::vector<Coronary> arteries;
  const double lad_d = b.uniform(3.8, 4.5), lad_end = b.uniform(1.5, 1.8);
  arteries.push_back(coronary(b, "lcx", joined(lad_path.front(), lcx_path, 3), b.uniform(3.2, 3.8), b.uniform(1.5, 1.8)));
  arteries.push_back(coronary(b, "lad", joined(lm_start, lad_path, 6), lad_d, lad_end));
  arteries.push_back(coronary(b, "rca", joined(rca_start, rca_path, 6), b.uniform(3.5, 4.2), b.uniform(1.5, 1.8)));
  nlohmann::json coronaries = nlohmann::json::object();
  for (const Coronary& c : arteries) {
    coronaries[c.name] = {{"length_mm", path_length(c.points) * b.subject.scale},
                          {"diameter_mm", {2 * c.radii.front() * b.subject.scale, 2 * c.radii.back() * b.subject.scale}},
                          {"ostium_lps_mm", b.patient(c.points.front())}};
  }
  b.truth["coronaries"] = coronaries;

  return arteries;
}

/// Spine, ribs and sternum around the cavity of `wall`.
void chest_skeleton(Builder& b, const Trunk& wall) {
  Scene& sc = b.scene;
  // Skeleton: spine, ribs, sternum.
  sc.add(b.tissue("disc"), Shape::cylinder_z(0, 50, 20, 16, -400, 400));
  sc.add(b.tissue("spinal_canal"), Shape::cylinder_z(0, 75, 8, 8, -400, 400));
  for (int n = -6; n <= 6; ++n) {
    vertebra(b, "vertebra_cortical", "vertebra_cancellous", Vec3{0, 50, 13.0 + 27.0 * n}, 20, 16, 21, false);
  }
  for (int k = 0; k < 11; ++k) {
    const double z = 138 - 26.0 * k;
    const double grow = 0.62 + 0.38 * std::min(1.0, k / 4.0);
    for (const double side : {-1.0, 1.0}) {
      std::vector<Vec3> control;
      for (int a = 0; a <= 6; ++a) {
        const double theta = radians(105 - 25.0 * a);  // from the spine round to the front
        control.push_back(Vec3{side * (wall.cavity_rx + 7) * grow * std::cos(theta),
                               wall.cavity_cy + (wall.cavity_ry + 6) * std::sin(theta) * (0.7 + 0.3 * grow),
                               z - 42.0 * a / 6.0});
      }
      control.front() = Vec3{side * 14, 52, z + 4};
      bone_tube(b, "rib_cortical", "rib_marrow", control, 5.5, 2.5);
    }
  }
  const double sternum_y = wall.cavity_cy - wall.cavity_ry - 8;
  sc.add(b.tissue("sternum_cortical"), Shape::cylinder_z(0, sternum_y, 17, 7, -85, 95));
  sc.add(b.tissue("sternum_marrow"), Shape::cylinder_z(0, sternum_y, 14, 4, -82, 92));

}

/// Lung nodules with their truth.
void chest_nodules(Builder& b) {
  Scene& sc = b.scene;
  // Lung nodules: 0–5, 3–30 mm, solid or ground glass, wholly inside a lung.
  std::vector<Blob> nodules;
  nlohmann::json nodule_truth = nlohmann::json::array();
  const std::int64_t wanted = b.integer(0, 5);
  const std::vector<int> lung_tissues = {b.tissue("lung_left_parenchyma"), b.tissue("lung_right_parenchyma")};
  for (std::int64_t n = 0; n < wanted; ++n) {
    const double diameter = std::max(b.uniform(3, 30), 2 * b.min_blob_radius * b.subject.scale);
    const double radius = 0.5 * diameter / b.subject.scale;
    const bool solid = b.uniform(0, 1) < 0.6;
    Vec3 centre;
    if (!place_blob(b, radius, Box{{-140, -80, -100}, {140, 80, 140}}, lung_tissues, nodules, centre)) continue;
    const int lung = b.scene.material_at(centre);
    sc.add(b.tissue(solid ? "nodule_solid" : "nodule_ground_glass"), Shape::ellipsoid(centre, Vec3{radius, radius, radius}));
    nodules.push_back({centre, radius});
    nodule_truth.push_back({{"centre_lps_mm", b.patient(centre)},
                            {"diameter_mm", diameter},
                            {"volume_ml", 4.0 / 3.0 * kPi * std::pow(0.5 * diameter, 3) / 1000.0},
                            {"type", solid ? "solid" : "ground_glass"},
                            {"lung", lung == lung_tissues[0] ? "left" : "right"}});
  }
  b.truth["nodules"] = nodule_truth;

}

/// Calcified plaques in `arteries` with their truth.
void chest_plaques(Builder& b, const std::vector<Coronary>& arteries) {
  Scene& sc = b.scene;
  // Calcified plaques: 0–4, eccentric in the proximal half of an artery.
  nlohmann::json plaque_truth = nlohmann::json::array();
  const std::int64_t plaques = b.integer(0, 4);
  for (std::int64_t n = 0; n < plaques; ++n) {
    const Coronary& c = arteries[static_cast<std::size_t>(b.integer(0, 2))];
    const std::size_t at = static_cast<std::size_t>(b.integer(static_cast<std::int64_t>(c.points.size() / 8),
                                                              static_cast<std::int64_t>(c.points.size() / 2)));
    const Vec3 tangent = normalized(c.points[std::min(at + 1, c.points.size() - 1)] - c.points[at > 0 ? at - 1 : 0]);
    const Frame pf = frame_from(tangent, Vec3{b.uniform(-1, 1), b.uniform(-1, 1), b.uniform(-1, 1)});
    // Drawn at its own size (1.5–4 mm across), centred on the voxel nearest the wall spot that
    // lies in this artery's lumen: on a coarse grid the plaque then fills that voxel partly
    // (partial volume, as a small calcification does) and is still in the label map.
    const double radius = 0.5 * b.uniform(1.5, 4.0) / b.subject.scale;
    const int lumen = b.tissue("coronary_" + c.name + "_blood");
    const Vec3 centre = b.voxel_centre_near(c.points[at] + pf[1] * (0.5 * c.radii[at]),
                                            [&](const Vec3& t) { return sc.material_at(t) == lumen; });
    sc.add(b.tissue("plaque"), Shape::ellipsoid(centre, Vec3{1.5 * radius, radius, radius}, pf));
    plaque_truth.push_back({{"artery", c.name},
                            {"centre_lps_mm", b.patient(centre)},
                            {"diameter_mm", 2 * radius * b.subject.scale},
                            {"length_mm", 3 * radius * b.subject.scale},
                            {"volume_ml", 4.0 / 3.0 * kPi * 1.5 * std::pow(radius * b.subject.scale, 3) / 1000.0}});
  }
  b.truth["plaques"] = plaque_truth;
}

void build_chest(Builder& b) {
  const Trunk wall{140, 95, 125, 80, -3};
  trunk(b, wall, -400, 400, "mediastinum");
  const Shape cavity = Shape::cylinder_z(0, wall.cavity_cy, wall.cavity_rx, wall.cavity_ry, -400, 400);
  chest_lungs(b, cavity);
  const auto [root, r_aorta] = chest_great_vessels(b);
  const std::vector<Coronary> arteries = chest_heart(b, root, r_aorta);
  chest_skeleton(b, wall);
  chest_nodules(b);
  chest_plaques(b, arteries);
}

// ---------------------------------------------------------------------------------------------
// head-neck: CT angiography + CT perfusion

/// The superior sagittal sinus: a tube on the midline just inside the inner table of the vault
/// (the ellipse of semi-axes ry, rz around `centre` in the y–z plane), from the frontal base
/// over the vertex to the torcular, widening from front to back.
void sagittal_sinus(Builder& b, const Vec3& centre, double ry, double rz) {
  const double r_front = b.uniform(3.5, 4.0), r_back = b.uniform(4.5, 5.0);
  std::vector<Vec3> points;
  std::vector<double> radii;
  constexpr int kSteps = 33;  // 10° (frontal) to 175° (occipital) in 5° steps
  for (int n = 0; n <= kSteps; ++n) {
    const double phi = radians(10.0 + 5.0 * n), front = -std::cos(phi), up = std::sin(phi);
    const Vec3 table{0, centre.y + ry * front, centre.z + rz * up};
    const Vec3 inward = normalized(Vec3{0, front / ry, up / rz}) * -1.0;
    const double r = b.tube_radius(r_front + (r_back - r_front) * n / kSteps);
    points.push_back(table + inward * (r + 0.5));
    radii.push_back(r);
  }
  b.scene.tube(b.tissue("sinus_blood"), points, radii);
  b.truth["dural_sinus"] = {{"name", "superior sagittal sinus"},
                            {"front_lps_mm", b.patient(points.front())},
                            {"vertex_lps_mm", b.patient(points[points.size() / 2])},
                            {"back_lps_mm", b.patient(points.back())},
                            {"radius_mm", {r_front * b.subject.scale, r_back * b.subject.scale}}};
}

/// Ischaemic territory in one middle cerebral artery's area: penumbra around a core, both
/// clipped to the brain and kept 9 mm lateral of the midline (clear of the sagittal sinus). Their
/// radii come from the range `b.ischemia` names (PhantomIschemia); both ranges draw the same
/// numbers of values, so the rest of a study is the same in either.
void ischemia(Builder& b, const Shape& inside_brain, const Shape& brain_cut) {
  const bool wide = b.ischemia == PhantomIschemia::kWide;
  const double side = b.uniform(0, 1) < 0.5 ? -1.0 : 1.0;
  const Vec3 territory{side * b.uniform(38, 46), b.uniform(-12, 12), b.uniform(62, 74)};
  const double r_territory = b.uniform(26, wide ? 50 : 36);
  const Vec3 core = territory + Vec3{side * 6, b.uniform(-4, 4), b.uniform(-4, 4)};
  const double r_core = r_territory * b.uniform(0.35, wide ? 1.0 : 0.6);
  const Shape lateral = Shape::half_space(Vec3{side * 9, 0, 0}, Vec3{-side, 0, 0});
  b.scene.add(b.tissue("penumbra"), Shape::ellipsoid(territory, Vec3{r_territory, r_territory, r_territory * 0.85}),
              {inside_brain, brain_cut, lateral});
  b.scene.add(b.tissue("core"), Shape::ellipsoid(core, Vec3{r_core, r_core, r_core * 0.85}),
              {inside_brain, brain_cut, lateral});
  b.truth["ischemia"] = {{"side", side < 0 ? "right" : "left"},
                         {"range", phantom_ischemia_name(b.ischemia)},
                         {"territory", "middle cerebral artery"},
                         {"territory_centre_lps_mm", b.patient(territory)},
                         {"territory_radius_mm", r_territory * b.subject.scale},
                         {"core_centre_lps_mm", b.patient(core)},
                         {"core_radius_mm", r_core * b.subject.scale}};
}

/// Carotids, vertebrals, and the circle of Willis with its first branches.
void head_arteries(Builder& b) {
  for (const double s : {-1.0, 1.0}) {
    const Vec3 split{s * 27, 2, -60 + b.uniform(-8, 8)};
    const Vec3 terminus{s * 16, 0, 30};
    vessel(b, "carotid_blood", {Vec3{s * 26, -2, -250}, Vec3{s * 26, 0, -100}, split}, 3.5, 3.2);
    vessel(b, "carotid_blood",
           jitter(b, {split, Vec3{s * 24, 12, -25}, Vec3{s * 20, 14, 0}, Vec3{s * 18, 6, 18}, terminus}, 2), 2.6, 2.0);
    vessel(b, "carotid_blood", jitter(b, {split, Vec3{s * 34, -10, -35}, Vec3{s * 42, -8, -5}}, 2), 2.0, 1.2);
    vessel(b, "vertebral_blood",
           jitter(b,
                  {Vec3{s * 24, 22, -250}, Vec3{s * 22, 24, -60}, Vec3{s * 20, 26, -15}, Vec3{s * 12, 34, 0},
                   Vec3{s * 3, 30, 12}, Vec3{0, 28, 14}},
                  1.5),
           1.9, 1.7);
    vessel(b, "willis_blood", {Vec3{0, 16, 32}, Vec3{s * 12, 16, 33}, Vec3{s * 28, 30, 35}, Vec3{s * 40, 55, 40}}, 1.3,
           1.0);
    vessel(b, "willis_blood", {Vec3{s * 12, 16, 33}, terminus}, 0.8, 0.8);
    vessel(b, "willis_blood", jitter(b, {terminus, Vec3{s * 32, -2, 33}, Vec3{s * 50, 2, 45}, Vec3{s * 58, 10, 62}}, 2),
           1.5, 1.0);
    vessel(b, "willis_blood", {terminus, Vec3{s * 4, -16, 34}, Vec3{s * 2, -30, 50}, Vec3{s * 2, -25, 85}}, 1.2, 0.9);
  }
  vessel(b, "willis_blood", {Vec3{0, 28, 14}, Vec3{0, 20, 26}, Vec3{0, 16, 32}}, 1.8, 1.7);
  vessel(b, "willis_blood", {Vec3{-4, -16, 34}, Vec3{4, -16, 34}}, 0.8, 0.8);
}

/// The perfusion series' curves: a gamma-variate arterial input, tissue by indicator dilution
/// (phantom_perfusion.h) with the ischaemic tissue's Tmax beyond 6 s, and the venous output
/// (the arterial curve delayed and dispersed).
void head_perfusion(Builder& b) {
  SeriesModel& perfusion = b.models[1];
  auto& times = perfusion.frame_times_s;
  const double interval = b.uniform(1.5, 2.0);
  for (std::size_t t = 0; t < times.size(); ++t) times[t] = interval * static_cast<double>(t);
  GammaBolus aif;
  aif.t0_s = b.uniform(4, 7), aif.alpha = 3.0, aif.beta_s = b.uniform(1.2, 1.8), aif.peak_hu = b.uniform(250, 400);
  // Delays beyond the 6 s Tmax threshold; the core's exceeds the penumbra's by 1–1.5 s (it lies
  // deeper in the same territory), so it always peaks last.
  const double penumbra_delay = b.uniform(7, 9.5);
  const struct {
    const char* name;
    const char* label;
    Enhancement kind;
    Flow flow;
  } tissues[] = {
      {"brain", "brain", Enhancement::kTissue, {b.uniform(45, 60), b.uniform(3.5, 4.5), 0.0}},
      {"penumbra", "ischemic_penumbra", Enhancement::kPenumbra, {b.uniform(24, 32), b.uniform(7, 9), penumbra_delay}},
      {"core",
       "ischemic_core",
       Enhancement::kCore,
       {b.uniform(4, 9), b.uniform(9, 12), penumbra_delay + b.uniform(1, 1.5)}}};
  std::vector<double> arterial(times.size());
  for (std::size_t t = 0; t < times.size(); ++t) arterial[t] = aif.at(times[t]);
  auto store = [&](Enhancement kind, const std::vector<double>& curve) {
    perfusion.curves[static_cast<int>(kind)].assign(curve.begin(), curve.end());
  };
  auto peak_of = [&](const std::vector<double>& curve) {
    const auto at = std::max_element(curve.begin(), curve.end()) - curve.begin();
    return std::pair<double, double>{curve[at], times[at]};
  };
  store(Enhancement::kArterial, arterial);
  nlohmann::json flow_truths = nlohmann::json::object();
  for (const auto& tissue : tissues) {
    const auto curve = tissue_curve(aif, tissue.flow, times);
    store(tissue.kind, curve);
    nlohmann::json truth = flow_truth(tissue.flow);
    truth["label"] = tissue.label;
    const auto [peak, peak_time] = peak_of(curve);
    truth["peak_enhancement_hu"] = peak;
    truth["time_to_peak_s"] = peak_time;
    truth["cbv_sampled_ml_100g"] = sampled_cbv(curve, arterial);
    flow_truths[tissue.name] = truth;
  }
  const double venous_delay = b.uniform(4, 6), dispersion = b.uniform(2, 3);
  const auto venous = venous_curve(aif, venous_delay, dispersion, times);
  store(Enhancement::kVenous, venous);
  const auto [venous_peak, venous_time] = peak_of(venous);
  b.truth["perfusion"] = {{"frame_interval_s", interval},
                          {"frames", times.size()},
                          {"constants", perfusion_constants()},
                          {"arterial_input", aif.truth()},
                          {"venous_output",
                           {{"label", "dural_sinus"},
                            {"delay_s", venous_delay},
                            {"dispersion_mean_s", dispersion},
                            {"dispersion", "unit-area exponential, convolved with the delayed arterial input"},
                            {"area_ratio_to_arterial", 1.0},
                            {"peak_enhancement_hu", venous_peak},
                            {"time_to_peak_s", venous_time}}},
                          {"tissue", flow_truths}};
}

void build_head(Builder& b) {
  Scene& sc = b.scene;
  const double f = b.subject.fat_mm * 0.5 / b.subject.scale;
  // Neck and head soft tissue.
  sc.add(b.tissue("fat"), Shape::cylinder_z(0, 18, 56 + f, 58 + f, -400, 30));
  sc.add(b.tissue("muscle"), Shape::cylinder_z(0, 18, 56, 58, -400, 30));
  const Vec3 head{0, 8 + b.uniform(-3, 3), 58};
  const double hs = b.uniform(0.95, 1.05);
  sc.add(b.tissue("scalp"), Shape::ellipsoid(head, Vec3{72, 92, 88} * hs));
  sc.tube(b.tissue("airway"), {Vec3{0, -4, 10}, Vec3{0, -6, -60}, Vec3{0, -12, -250}}, {9, 8, 8});

  // Skull with the brain inside; the skull base is the plate between z 5 and 12.
  const Shape skull_cut = Shape::half_space(Vec3{0, 0, 5}, Vec3{0, 0, -1});
  const Shape brain_cut = Shape::half_space(Vec3{0, 0, 12}, Vec3{0, 0, -1});
  sc.add(b.tissue("skull_bone"), Shape::ellipsoid(head + Vec3{0, 0, 2}, Vec3{66, 86, 82} * hs), {skull_cut});
  const Shape cranium = Shape::ellipsoid(head + Vec3{0, 0, 2}, Vec3{58, 78, 73} * hs);
  sc.add(b.tissue("gray_matter"), cranium, {brain_cut});
  sc.add(b.tissue("white_matter"), Shape::ellipsoid(head + Vec3{0, 0, 10}, Vec3{46, 63, 55} * hs));
  sc.add(b.tissue("gray_matter"), Shape::ellipsoid(Vec3{0, 50, 30}, Vec3{46, 28, 20} * hs));  // cerebellum
  sc.tube(b.tissue("gray_matter"), {Vec3{0, 22, 40}, Vec3{0, 28, 0}}, {12, 10});  // brainstem
  sc.tube(b.tissue("spinal_canal"), {Vec3{0, 28, 0}, Vec3{0, 32, -250}}, {8, 7});
  ischemia(b, cranium, brain_cut);

  // Ventricles.
  for (const double s : {-1.0, 1.0}) {
    sc.add(b.tissue("csf"), Shape::ellipsoid(head + Vec3{s * 13, -3, 14}, Vec3{7, 30, 11} * hs, yawed(s * radians(8))));
  }
  sc.add(b.tissue("csf"), Shape::ellipsoid(head + Vec3{0, 4, 4}, Vec3{3, 14, 9} * hs));
  sc.add(b.tissue("csf"), Shape::ellipsoid(Vec3{0, 38, 33}, Vec3{6, 4, 7} * hs));
  sagittal_sinus(b, head + Vec3{0, 0, 2}, 78 * hs, 73 * hs);

  // Cervical spine.
  for (int n = 0; n < 8; ++n) {
    vertebra(b, "vertebra_cortical", "vertebra_cancellous", Vec3{0, 30, -150 + 19.5 * n}, 14, 11, 14, false);
  }
  head_arteries(b);
  head_perfusion(b);
}

// ---------------------------------------------------------------------------------------------
// abdomen-mr: T1 (pre-contrast, arterial, portal-venous) and T2

void build_abdomen(Builder& b) {
  Scene& sc = b.scene;
  const Trunk wall{150, 105, 138, 92, -3};
  trunk(b, wall, -400, 400, "viscera");
  const Shape cavity = Shape::cylinder_z(0, wall.cavity_cy, wall.cavity_rx, wall.cavity_ry, -400, 400);
  for (const double s : {-1.0, 1.0}) {
    sc.add(b.tissue("lung_base"), Shape::ellipsoid(Vec3{s * 80, 15, 205}, Vec3{62, 80, 95}), {cavity});
    sc.add(b.tissue("muscle"), Shape::ellipsoid(Vec3{s * 40, 50, -80}, Vec3{17, 17, 90}));  // psoas
  }
  // Spine.
  sc.add(b.tissue("disc"), Shape::cylinder_z(0, 58, 22, 17, -400, 400));
  sc.add(b.tissue("spinal_canal"), Shape::cylinder_z(0, 85, 9, 9, -400, 400));
  for (int n = -4; n <= 4; ++n) {
    vertebra(b, "vertebra_cortical", "vertebra_cancellous", Vec3{0, 58, 10.0 + 34.0 * n}, 22, 17, 26, true);
  }
  // Great vessels.
  vessel(b, "aorta_blood", jitter(b, {Vec3{12, 26, 250}, Vec3{12, 24, 60}, Vec3{10, 22, -250}}, 2), 11, 10);
  const Vec3 ivc_top{-16, 30, 100};
  vessel(b, "ivc_blood", jitter(b, {Vec3{-22, 28, -250}, Vec3{-22, 28, 40}, ivc_top, Vec3{-14, 28, 160}}, 2), 11, 12);

  // Liver: right lobe cut obliquely below, left lobe reaching across the midline.
  const double ls = b.uniform(0.95, 1.05);
  const Vec3 liver{-55 + b.uniform(-4, 4), 0, 45 + b.uniform(-4, 4)};
  const Shape liver_cut = Shape::half_space(liver + Vec3{0, 0, -32}, Vec3{0.45, 0, -0.89});
  const Shape liver_main = Shape::ellipsoid(liver, Vec3{82, 75, 70} * ls, yawed(radians(b.uniform(-20, -10))));
  const Shape liver_left = Shape::ellipsoid(liver + Vec3{70, -30, 20}, Vec3{55, 38, 30} * ls);
  sc.add(b.tissue("liver_parenchyma"), liver_main, {liver_cut, cavity});
  sc.add(b.tissue("liver_parenchyma"), liver_left, {cavity, Shape::half_space(Vec3{liver.x + 125, 0, 0}, Vec3{1, 0, 0})});
  // Hepatic veins drain into the IVC; the portal vein enters at the hilum.
  const Vec3 o = liver - Vec3{-55, 0, 45};  // the liver's displacement from its mean place
  for (const auto& control : std::vector<std::vector<Vec3>>{{Vec3{-105, 0, 40}, Vec3{-60, 15, 80}, ivc_top - Vec3{4, 0, 0}},
                                                           {Vec3{-55, -40, 30}, Vec3{-40, -10, 70}, ivc_top - Vec3{2, 2, 2}},
                                                           {Vec3{15, -35, 60}, Vec3{-5, 0, 85}, ivc_top}}) {
    std::vector<Vec3> moved;
    for (std::size_t i = 0; i < control.size(); ++i) moved.push_back(i + 1 < control.size() ? control[i] + o : control[i]);
    vessel(b, "hepatic_vein_blood", jitter(b, moved, 3), 2.5, 5.5);
  }
  const Vec3 hilum = Vec3{-30, 10, 20} + o;
  vessel(b, "portal_blood", {Vec3{-5, 15, -20}, hilum}, 7, 7);
  vessel(b, "portal_blood", jitter(b, {hilum, Vec3{-60, 5, 35} + o, Vec3{-95, 0, 45} + o}, 3), 5.5, 3);
  vessel(b, "portal_blood", jitter(b, {hilum, Vec3{-5, -15, 45} + o, Vec3{15, -30, 60} + o}, 3), 5, 3);
  vessel(b, "portal_blood", jitter(b, {Vec3{-5, 15, -20}, Vec3{40, 30, 0}, Vec3{72, 38, 25}}, 3), 4.5, 4);

  // Spleen and kidneys (cortex around medulla).
  sc.add(b.tissue("spleen_tissue"), Shape::ellipsoid(Vec3{90, 45, 45} + Vec3{b.uniform(-4, 4), 0, b.uniform(-5, 5)},
                                                     Vec3{24, 55, 40} * b.uniform(0.9, 1.1), yawed(radians(35))));
  for (const double s : {-1.0, 1.0}) {
    const Vec3 c{s * 72, 52, s < 0 ? -35.0 : -22.0};
    const Frame axes = frame_from(Vec3{-s * 0.25, 0.15, 1}, Vec3{s, 0, 0});
    const Vec3 radii = Vec3{55, 28, 25} * b.uniform(0.92, 1.08);
    const std::string which = s < 0 ? "right" : "left";
    sc.add(b.tissue("kidney_" + which + "_cortex"), Shape::ellipsoid(c, radii, axes));
    sc.add(b.tissue("kidney_" + which + "_medulla"), Shape::ellipsoid(c + Vec3{-s * 3, 0, 0}, radii - Vec3{12, 10, 9}, axes));
  }

  // Liver lesions: 0–4, 5–40 mm, hyper- or hypovascular, inside the liver.
  std::vector<Blob> lesions;
  nlohmann::json lesion_truth = nlohmann::json::array();
  const std::int64_t wanted = b.integer(0, 4);
  const std::vector<int> liver_tissues = {b.tissue("liver_parenchyma")};
  for (std::int64_t n = 0; n < wanted; ++n) {
    const double diameter = std::max(b.uniform(5, 40), 2 * b.min_blob_radius * b.subject.scale);
    const double radius = 0.5 * diameter / b.subject.scale;
    const bool hyper = b.uniform(0, 1) < 0.5;
    Vec3 centre;
    if (!place_blob(b, radius, Box{liver - Vec3{90, 80, 75}, liver + Vec3{130, 80, 75}}, liver_tissues, lesions, centre)) continue;
    sc.add(b.tissue(hyper ? "lesion_hypervascular" : "lesion_hypovascular"), Shape::ellipsoid(centre, Vec3{radius, radius, radius}));
    lesions.push_back({centre, radius});
    lesion_truth.push_back({{"centre_lps_mm", b.patient(centre)},
                            {"diameter_mm", diameter},
                            {"volume_ml", 4.0 / 3.0 * kPi * std::pow(0.5 * diameter, 3) / 1000.0},
                            {"enhancement", hyper ? "hypervascular" : "hypovascular"}});
  }
  b.truth["lesions"] = lesion_truth;
}

// ---------------------------------------------------------------------------------------------
// msk: CT of the lower spine, pelvis and hips

const char* const kMskVertebrae[] = {"T11", "T12", "L1", "L2", "L3", "L4", "L5"};

void build_msk(Builder& b) {
  Scene& sc = b.scene;
  const Trunk wall{150, 105, 136, 90, -3};
  trunk(b, wall, -150, 400, "viscera");
  const double f = b.subject.fat_mm / b.subject.scale;
  for (const double s : {-1.0, 1.0}) {
    sc.add(b.tissue("fat"), Shape::cylinder_z(s * 92, 10, 82 + f, 86 + f, -400, -190));
    sc.add(b.tissue("muscle"), Shape::cylinder_z(s * 92, 10, 82, 86, -400, -190));
    sc.add(b.tissue("muscle"), Shape::ellipsoid(Vec3{s * 42, 48, -60}, Vec3{18, 18, 110}));  // psoas
  }
  sc.add(b.tissue("fat"), Shape::ellipsoid(Vec3{0, 5, -150}, Vec3{150 + 1.3 * f, 105 + f, 60}));
  sc.add(b.tissue("muscle"), Shape::ellipsoid(Vec3{0, 5, -150}, Vec3{150, 105, 60}));
  sc.add(b.tissue("bladder_urine"), Shape::ellipsoid(Vec3{0, -40, -150}, Vec3{40, 30, 30} * b.uniform(0.7, 1.2)));
  vessel(b, "blood", {Vec3{10, 22, 300}, Vec3{10, 22, 20}}, 10, 9);
  for (const double s : {-1.0, 1.0}) vessel(b, "blood", {Vec3{10, 22, 20}, Vec3{s * 40, 10, -60}, Vec3{s * 75, -5, -125}}, 6, 5);

  // Lumbar lordosis: bodies move forward and grow downwards.
  nlohmann::json vertebra_truth = nlohmann::json::array();
  double z = 212;
  for (int n = 0; n < 7; ++n) {
    const double height = n < 2 ? 24.0 : 28.0;
    const double y = 48 - 10 * std::sin(kPi * n / 7.0);
    const double rx = 20 + 0.8 * n, ry = 16 + 0.5 * n;
    const std::string name = kMskVertebrae[n];
    sc.add(b.tissue("disc"), Shape::cylinder_z(0, y, rx, ry, z - height / 2 - 9, z + height / 2 + 1));
    vertebra(b, "vertebra_" + name + "_cortical", "vertebra_" + name + "_cancellous", Vec3{0, y, z}, rx, ry, height, n >= 2);
    vertebra_truth.push_back({{"name", name}, {"centre_lps_mm", b.patient(Vec3{0, y, z})}});
    z -= height + 9;
  }
  b.truth["vertebrae"] = vertebra_truth;
  // Sacrum: a wedge tilted forward at the top.
  const Frame sacral = frame_from(Vec3{0, 0.55, -0.83}, Vec3{1, 0, 0});
  bone_ellipsoid(b, "sacrum_cortical", "sacrum_cancellous", Vec3{0, 62, z - 40}, Vec3{55, 46, 18}, sacral, 2.5);

  // Hip bones: ilium plate, acetabulum, pubic and ischial rami; femurs in their sockets.
  for (const double s : {-1.0, 1.0}) {
    const std::string side = s < 0 ? "right" : "left";
    // The iliac wing runs from the sacrum (posterior, medial) to the front (anterior, lateral).
    const Frame ilium = frame_from(Vec3{s * 0.72, 0.69, 0}, Vec3{0, 0, 1});
    bone_ellipsoid(b, "hip_" + side + "_cortical", "hip_" + side + "_cancellous", Vec3{s * 80, 28, -80}, Vec3{11, 55, 62},
                   ilium, 2.5);
    const Vec3 socket{s * 88, 8, -142};
    bone_ellipsoid(b, "hip_" + side + "_cortical", "hip_" + side + "_cancellous", socket, Vec3{31, 31, 30}, yawed(0), 3);
    bone_tube(b, "hip_" + side + "_cortical", "hip_" + side + "_cancellous",
              {mirror_x(Vec3{80, 0, -150}, s), mirror_x(Vec3{40, -42, -162}, s), mirror_x(Vec3{6, -50, -160}, s)}, 9, 2.5);
    bone_tube(b, "hip_" + side + "_cortical", "hip_" + side + "_cancellous",
              {mirror_x(Vec3{85, 22, -150}, s), mirror_x(Vec3{68, 40, -188}, s), mirror_x(Vec3{40, 28, -196}, s)}, 10, 2.5);
    sc.add(b.tissue("joint"), Shape::ellipsoid(socket, Vec3{26.5, 26.5, 26.5}));
    const double head_r = b.uniform(22, 25);
    bone_ellipsoid(b, "femur_" + side + "_cortical", "femur_" + side + "_cancellous", socket, Vec3{head_r, head_r, head_r},
                   yawed(0), 2);
    bone_tube(b, "femur_" + side + "_cortical", "femur_" + side + "_cancellous",
              {socket, mirror_x(Vec3{108, 12, -158}, s), mirror_x(Vec3{122, 16, -172}, s)}, 15, 3);
    bone_ellipsoid(b, "femur_" + side + "_cortical", "femur_" + side + "_cancellous", mirror_x(Vec3{128, 18, -168}, s),
                   Vec3{16, 20, 22}, yawed(0), 2.5);
    bone_tube(b, "femur_" + side + "_cortical", "femur_" + side + "_marrow",
              {mirror_x(Vec3{122, 15, -178}, s), mirror_x(Vec3{112, 13, -260}, s), mirror_x(Vec3{104, 12, -420}, s)}, 15, 5);
  }
}

// ---------------------------------------------------------------------------------------------
// Tables

Range same(double low, double high) { return {low, high}; }

std::vector<TissueSpec> chest_tissues() {
  // Ranges: [non-contrast CT, coronary CTA] in HU.
  return {
      {"air", "", {same(-1000, -1000), same(-1000, -1000)}},
      {"fat", "body", {same(-110, -90), same(-110, -90)}},
      {"muscle", "body", {same(40, 55), same(50, 70)}},
      {"mediastinum", "body", {same(-100, -80), same(-100, -80)}},
      {"upper_abdomen", "body", {same(50, 65), same(80, 120)}},
      {"airway", "body", {same(-1000, -980), same(-1000, -980)}},
      {"disc", "body", {same(70, 90), same(75, 95)}},
      {"spinal_canal", "body", {same(20, 35), same(25, 40)}},
      {"lung_left_parenchyma", "lung_left", {same(-870, -830), same(-860, -820)}},
      {"lung_right_parenchyma", "lung_right", {same(-870, -830), same(-860, -820)}},
      {"lv_blood", "heart_left_ventricle", {same(35, 45), same(380, 480)}},
      {"la_blood", "heart_left_atrium", {same(35, 45), same(380, 480)}},
      {"rv_blood", "heart_right_ventricle", {same(35, 45), same(300, 380)}},
      {"ra_blood", "heart_right_atrium", {same(35, 45), same(300, 380)}},
      {"myocardium", "heart_myocardium", {same(40, 55), same(100, 140)}},
      {"aorta_ascending_blood", "aorta_ascending", {same(35, 45), same(380, 480)}},
      {"aorta_arch_blood", "aorta_arch", {same(35, 45), same(380, 480)}},
      {"aorta_descending_blood", "aorta_descending", {same(35, 45), same(380, 480)}},
      {"pa_blood", "pulmonary_artery", {same(35, 45), same(300, 380)}},
      {"coronary_lad_blood", "coronary_lad", {same(35, 45), same(380, 480)}},
      {"coronary_lcx_blood", "coronary_lcx", {same(35, 45), same(380, 480)}},
      {"coronary_rca_blood", "coronary_rca", {same(35, 45), same(380, 480)}},
      {"vertebra_cortical", "vertebrae", {same(800, 1300), same(800, 1300)}},
      {"vertebra_cancellous", "vertebrae", {same(150, 300), same(160, 320)}},
      {"rib_cortical", "ribs", {same(800, 1300), same(800, 1300)}},
      {"rib_marrow", "ribs", {same(150, 300), same(160, 320)}},
      {"sternum_cortical", "sternum", {same(700, 1100), same(700, 1100)}},
      {"sternum_marrow", "sternum", {same(150, 300), same(160, 320)}},
      {"nodule_solid", "lung_nodule", {same(20, 60), same(30, 80)}},
      {"nodule_ground_glass", "lung_nodule", {same(-650, -450), same(-640, -440)}},
      {"plaque", "coronary_calcification", {same(500, 1000), same(600, 1100)}},
  };
}

std::vector<TissueSpec> head_tissues() {
  // Ranges: [CTA, perfusion before contrast] in HU; enhancement drives the perfusion frames.
  return {
      {"air", "", {same(-1000, -1000), same(-1000, -1000)}},
      {"fat", "body", {same(-110, -90), same(-110, -90)}},
      {"muscle", "body", {same(45, 65), same(40, 55)}},
      {"scalp", "body", {same(30, 50), same(30, 50)}},
      {"airway", "body", {same(-1000, -980), same(-1000, -980)}},
      {"spinal_canal", "body", {same(20, 35), same(20, 35)}},
      {"disc", "body", {same(70, 90), same(70, 90)}},
      {"skull_bone", "skull", {same(900, 1400), same(900, 1400)}},
      {"gray_matter", "brain", {same(36, 44), same(35, 42)}, Enhancement::kTissue},
      {"white_matter", "brain", {same(26, 32), same(25, 30)}, Enhancement::kTissue},
      {"penumbra", "ischemic_penumbra", {same(30, 38), same(29, 36)}, Enhancement::kPenumbra},
      {"core", "ischemic_core", {same(20, 28), same(19, 26)}, Enhancement::kCore},
      {"csf", "ventricles", {same(0, 12), same(0, 12)}},
      {"vertebra_cortical", "vertebrae", {same(800, 1300), same(800, 1300)}},
      {"vertebra_cancellous", "vertebrae", {same(150, 300), same(150, 300)}},
      {"carotid_blood", "carotid_arteries", {same(350, 500), same(35, 45)}, Enhancement::kArterial},
      {"vertebral_blood", "vertebral_arteries", {same(350, 500), same(35, 45)}, Enhancement::kArterial},
      {"willis_blood", "circle_of_willis", {same(350, 500), same(35, 45)}, Enhancement::kArterial},
      {"sinus_blood", "dural_sinus", {same(150, 250), same(35, 45)}, Enhancement::kVenous},
  };
}

std::vector<TissueSpec> abdomen_tissues() {
  // Ranges: [T1 pre-contrast, arterial, portal-venous, T2] in signal units (uint16).
  auto mr = [](Range t1, Range art, Range pv, Range t2) { return std::vector<Range>{t1, art, pv, t2}; };
  return {
      {"air", "", mr({0, 0}, {0, 0}, {0, 0}, {0, 0})},
      {"fat", "body", mr({800, 900}, {800, 900}, {800, 900}, {600, 700})},
      {"muscle", "body", mr({280, 320}, {310, 350}, {360, 400}, {180, 220})},
      {"viscera", "body", mr({380, 440}, {420, 480}, {480, 540}, {380, 460})},
      {"lung_base", "body", mr({20, 40}, {20, 40}, {20, 40}, {20, 40})},
      {"disc", "body", mr({300, 340}, {300, 340}, {320, 360}, {700, 800})},
      {"spinal_canal", "body", mr({200, 240}, {200, 240}, {200, 240}, {1300, 1500})},
      {"vertebra_cortical", "vertebrae", mr({40, 80}, {40, 80}, {40, 80}, {40, 80})},
      {"vertebra_cancellous", "vertebrae", mr({560, 640}, {580, 660}, {600, 680}, {420, 480})},
      {"aorta_blood", "aorta", mr({100, 140}, {1600, 1800}, {850, 950}, {120, 180})},
      {"ivc_blood", "inferior_vena_cava", mr({130, 170}, {220, 280}, {850, 950}, {180, 220})},
      {"liver_parenchyma", "liver", mr({480, 520}, {560, 600}, {820, 880}, {230, 270})},
      {"hepatic_vein_blood", "hepatic_veins", mr({130, 170}, {180, 220}, {1050, 1150}, {180, 220})},
      {"portal_blood", "portal_vein", mr({140, 180}, {280, 320}, {1250, 1350}, {180, 220})},
      {"spleen_tissue", "spleen", mr({360, 400}, {660, 740}, {780, 860}, {500, 540})},
      {"kidney_left_cortex", "kidney_left", mr({400, 440}, {1050, 1150}, {860, 940}, {580, 620})},
      {"kidney_left_medulla", "kidney_left", mr({330, 370}, {480, 520}, {820, 880}, {730, 770})},
      {"kidney_right_cortex", "kidney_right", mr({400, 440}, {1050, 1150}, {860, 940}, {580, 620})},
      {"kidney_right_medulla", "kidney_right", mr({330, 370}, {480, 520}, {820, 880}, {730, 770})},
      {"lesion_hypervascular", "liver_lesion", mr({360, 400}, {1050, 1150}, {560, 640}, {430, 470})},
      {"lesion_hypovascular", "liver_lesion", mr({300, 340}, {380, 420}, {430, 470}, {530, 570})},
  };
}

std::vector<TissueSpec> msk_tissues() {
  std::vector<TissueSpec> t = {
      {"air", "", {same(-1000, -1000)}},
      {"fat", "body", {same(-110, -90)}},
      {"muscle", "body", {same(40, 60)}},
      {"viscera", "body", {same(20, 45)}},
      {"disc", "body", {same(70, 90)}},
      {"spinal_canal", "body", {same(20, 35)}},
      {"bladder_urine", "body", {same(0, 15)}},
      {"blood", "body", {same(35, 45)}},
      {"joint", "body", {same(60, 90)}},
  };
  auto bone = [&](const std::string& prefix, const std::string& label, const std::string& core, Range core_range) {
    t.push_back({prefix + "_cortical", label, {same(900, 1400)}});
    t.push_back({prefix + "_" + core, label, {core_range}});
  };
  for (const char* v : kMskVertebrae) bone(std::string("vertebra_") + v, std::string("vertebra_") + v, "cancellous", {160, 280});
  bone("sacrum", "sacrum", "cancellous", {160, 280});
  for (const std::string side : {"left", "right"}) {
    bone("hip_" + side, "hip_" + side, "cancellous", {160, 280});
    bone("femur_" + side, "femur_" + side, "cancellous", {160, 280});
    t.push_back({"femur_" + side + "_marrow", "femur_" + side, {same(-80, -20)}});
  }
  return t;
}

std::vector<std::string> labels_of(const std::vector<TissueSpec>& tissues) {
  std::vector<std::string> labels;
  for (const TissueSpec& t : tissues) {
    if (!t.label.empty() && std::find(labels.begin(), labels.end(), t.label) == labels.end()) labels.push_back(t.label);
  }
  return labels;
}

KindSpec make_spec(PhantomKind kind, Vec3 fov, std::vector<SeriesSpec> series, std::vector<TissueSpec> tissues,
                   std::function<void(Builder&)> build, std::string focus, FramingRange framing) {
  KindSpec spec{kind, fov, std::move(series), std::move(tissues), {}, {}, std::move(build), std::move(focus), framing};
  spec.labels = labels_of(spec.tissues);
  for (const char* drawn : {"lung_nodule", "coronary_calcification", "liver_lesion"}) {
    if (std::find(spec.labels.begin(), spec.labels.end(), drawn) != spec.labels.end()) spec.optional.push_back(drawn);
  }
  return spec;
}

}  // namespace

const std::vector<std::pair<int, std::string>>& all_labels() {
  static const std::vector<std::pair<int, std::string>> labels = {
      {1, "body"},
      {2, "lung_left"},
      {3, "lung_right"},
      {4, "heart_left_ventricle"},
      {5, "heart_right_ventricle"},
      {6, "heart_left_atrium"},
      {7, "heart_right_atrium"},
      {8, "heart_myocardium"},
      {9, "aorta_ascending"},
      {10, "aorta_arch"},
      {11, "aorta_descending"},
      {12, "pulmonary_artery"},
      {13, "coronary_lad"},
      {14, "coronary_lcx"},
      {15, "coronary_rca"},
      {16, "vertebrae"},
      {17, "ribs"},
      {18, "sternum"},
      {19, "lung_nodule"},
      {20, "coronary_calcification"},
      {21, "brain"},
      {22, "ventricles"},
      {23, "skull"},
      {24, "carotid_arteries"},
      {25, "vertebral_arteries"},
      {26, "circle_of_willis"},
      {27, "ischemic_core"},
      {28, "ischemic_penumbra"},
      {29, "liver"},
      {30, "hepatic_veins"},
      {31, "portal_vein"},
      {32, "liver_lesion"},
      {33, "spleen"},
      {34, "kidney_left"},
      {35, "kidney_right"},
      {36, "aorta"},
      {37, "inferior_vena_cava"},
      {40, "vertebra_T11"},
      {41, "vertebra_T12"},
      {42, "vertebra_L1"},
      {43, "vertebra_L2"},
      {44, "vertebra_L3"},
      {45, "vertebra_L4"},
      {46, "vertebra_L5"},
      {47, "sacrum"},
      {48, "hip_left"},
      {49, "hip_right"},
      {50, "femur_left"},
      {51, "femur_right"},
      {52, "dural_sinus"},
  };
  return labels;
}

int label_id(const std::string& name) {
  if (name.empty()) return 0;
  for (const auto& [id, label] : all_labels()) {
    if (label == name) return id;
  }
  throw InternalError("phantom", "phantom label '" + name + "' is not in the label table");
}

const KindSpec& kind_spec(PhantomKind kind) {
  static const std::map<PhantomKind, KindSpec> specs = [] {
    std::map<PhantomKind, KindSpec> m;
    // Framing ranges: in-plane fields of view from just wider than the body to the widest a
    // protocol of that region uses; z coverage around the default's.
    m.emplace(PhantomKind::kChestCardiac,
              make_spec(PhantomKind::kChestCardiac, {400, 400, 300},
                        {{"ct", "CT", VoxelType::kInt16, 12, false, 0, 0, false},
                         {"cta", "CT", VoxelType::kInt16, 20, false, 0, 0, false}},
                        chest_tissues(), build_chest, "heart_left_ventricle", {340, 500, 260, 340, 0.3}));
    m.emplace(PhantomKind::kHeadNeck,
              make_spec(PhantomKind::kHeadNeck, {240, 240, 310},
                        {{"cta", "CT", VoxelType::kInt16, 15, false, 0, 0, false},
                         {"perfusion", "CT", VoxelType::kInt16, 15, false, 0, 0, true}},
                        head_tissues(), build_head, "ischemic_penumbra", {200, 300, 290, 330, 0}));
    m.emplace(PhantomKind::kAbdomenMr,
              make_spec(PhantomKind::kAbdomenMr, {400, 320, 260},
                        {{"t1_pre", "MR", VoxelType::kUInt16, 20, true, 0.06, 0, false},
                         {"arterial", "MR", VoxelType::kUInt16, 20, true, 0.06, 0, false},
                         {"portal", "MR", VoxelType::kUInt16, 20, true, 0.06, 0, false},
                         {"t2", "MR", VoxelType::kUInt16, 20, true, 0.06, 1, false}},
                        abdomen_tissues(), build_abdomen, "liver", {380, 480, 230, 290, 0.6}));
    m.emplace(PhantomKind::kMsk, make_spec(PhantomKind::kMsk, {400, 320, 480},
                                           {{"ct", "CT", VoxelType::kInt16, 15, false, 0, 0, false}}, msk_tissues(), build_msk,
                                           "sacrum", {400, 500, 440, 520, 0}));
    return m;
  }();
  auto it = specs.find(kind);
  if (it == specs.end()) throw InternalError("phantom", "no phantom spec for kind " + phantom_kind_name(kind));
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Builder

namespace {

/// Patient-mm radius that keeps a tube's voxel centres 26-connected. Along a straight piece whose
/// main direction is index axis a, each grid plane across a holds a voxel centre within half a
/// step of the crossing in each of the other two axes, so within 0.5·hypot of those spacings of
/// the axis; the centres of consecutive planes touch. The worst axis leaves the two largest
/// spacings; 5 % more covers curvature. (The half voxel diagonal, used before, is larger.)
double connect_radius_mm(const Grid& grid) {
  std::array<double, 3> h = grid.spacing_xyz;
  std::sort(h.begin(), h.end());
  return 0.5 * std::hypot(h[1], h[2]) * 1.05;
}

/// Largest eigenvalue of a symmetric 3 × 3 matrix (closed form).
double largest_eigenvalue(const double a[3][3]) {
  const double p1 = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
  const double q = (a[0][0] + a[1][1] + a[2][2]) / 3;
  const double p2 = (a[0][0] - q) * (a[0][0] - q) + (a[1][1] - q) * (a[1][1] - q) + (a[2][2] - q) * (a[2][2] - q) + 2 * p1;
  if (p2 <= 0) return q;
  const double p = std::sqrt(p2 / 6);
  double b[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) b[i][j] = (a[i][j] - (i == j ? q : 0)) / p;
  const double det = b[0][0] * (b[1][1] * b[2][2] - b[1][2] * b[2][1]) - b[0][1] * (b[1][0] * b[2][2] - b[1][2] * b[2][0]) +
                     b[0][2] * (b[1][0] * b[2][1] - b[1][1] * b[2][0]);
  const double phi = std::acos(std::clamp(det / 2, -1.0, 1.0)) / 3;
  return q + 2 * p * std::cos(phi);
}

}  // namespace

double Builder::tube_radius_at(const Vec3& t, double r) const {
  // The template tube's image in the patient is at least its radius times the smallest singular
  // value of d(patient)/d(template) wide, i.e. divided by the largest of d(template)/d(patient)
  // (explicit: Placement::to_template), taken here by central differences.
  const Vec3 p = placement.to_patient(t);
  constexpr double e = 0.5;  // mm; the deformation's wavelengths are 200 mm and more
  double k[3][3];
  for (int c = 0; c < 3; ++c) {
    const Vec3 d{c == 0 ? e : 0, c == 1 ? e : 0, c == 2 ? e : 0};
    const Vec3 column = (placement.to_template(p + d) - placement.to_template(p - d)) / (2 * e);
    for (int row = 0; row < 3; ++row) k[row][c] = column[row];
  }
  double ktk[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) ktk[i][j] = k[0][i] * k[0][j] + k[1][i] * k[1][j] + k[2][i] * k[2][j];
  return std::max(r, connect_radius_mm(grid) * std::sqrt(largest_eigenvalue(ktk)));
}

Builder::Builder(const KindSpec& spec_in, std::mt19937_64& rng_in, const Subject& subject_in, const Placement& placement_in,
                 const Grid& grid_in)
    : spec(spec_in), rng(rng_in), subject(subject_in), placement(placement_in), grid(grid_in) {
  const auto& h = grid.spacing_xyz;
  const double largest = std::max({h[0], h[1], h[2]});
  // Global floor: the connectivity radius (tube_radius_at) with the deformation's largest
  // compression, its gradient bound of 0.24 per unit of --deformation (phantom.cpp).
  const double stretch = 1.0 - 0.24 * placement.max_gradient_factor;
  min_tube_radius = connect_radius_mm(grid) / stretch / subject.scale;
  min_blob_radius = 1.25 * largest / subject.scale;
  blob_gap = 1.5 * largest / subject.scale;
}

int Builder::tissue(const std::string& name) const {
  for (std::size_t i = 0; i < spec.tissues.size(); ++i) {
    if (spec.tissues[i].name == name) return static_cast<int>(i);
  }
  throw InternalError("phantom", "phantom tissue '" + name + "' is not defined for " + phantom_kind_name(spec.kind));
}

double Builder::uniform(double low, double high) { return low + (high - low) * uniform01(rng); }

std::int64_t Builder::integer(std::int64_t low, std::int64_t high) { return uniform_between(rng, low, high); }

nlohmann::json Builder::patient(const Vec3& t) const {
  const Vec3 p = placement.to_patient(t);
  return {std::round(p.x * 100) / 100, std::round(p.y * 100) / 100, std::round(p.z * 100) / 100};
}

}  // namespace vitruvian::data::phantom
