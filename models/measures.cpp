// Report measures. Percentiles by selection on per-class value lists; lesion diameters from
// projections of the voxel union on 90 directions (the Feret diameter within 0.02 %); Agatston
// per slice on 2D components, credited to arteries through 3D components.
#include "models/measures.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "core/errors.h"
#include "core/kernels/dispatch.h"
#include "models/metrics.h"
#include "models/postprocess.h"

namespace vitruvian::models {
namespace {

constexpr double kPi = 3.14159265358979323846;

void check_same_shape(const at::Tensor& a, const at::Tensor& b, const char* what) {
  if (a.dim() != 3 || a.sizes() != b.sizes()) {
    throw InputError(what, fmt::format("shapes {} and {}; expected the same [z, y, x]", fmt::join(a.sizes(), "x"),
                                       fmt::join(b.sizes(), "x")));
  }
}

double percentile(std::vector<float>& values, double q) {
  const double rank = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  double b = a;
  if (hi != lo) b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(hi), values.end());
  return a + (rank - static_cast<double>(lo)) * (b - a);
}

/// Feret diameter (mm) of the union of in-plane voxels `points` ([y, x] indices).
double feret_diameter(const std::vector<std::array<std::int64_t, 2>>& points, double sy, double sx) {
  double best = 0;
  constexpr int kDirections = 90;
  for (int d = 0; d < kDirections; ++d) {
    const double angle = kPi * d / kDirections;
    const double cy = std::sin(angle), cx = std::cos(angle);
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& p : points) {
      const double proj = static_cast<double>(p[0]) * sy * cy + static_cast<double>(p[1]) * sx * cx;
      lo = std::min(lo, proj);
      hi = std::max(hi, proj);
    }
    best = std::max(best, hi - lo + std::abs(cy) * sy + std::abs(cx) * sx);
  }
  return best;
}

int agatston_weight(double peak_hu) {
  if (peak_hu >= 400) return 4;
  if (peak_hu >= 300) return 3;
  if (peak_hu >= 200) return 2;
  return 1;
}

}  // namespace

std::vector<ClassExtent> class_extents(const at::Tensor& labels, std::int64_t classes) {
  if (labels.dim() != 3) throw InputError("class extents", "label map is not [z, y, x]");
  std::int64_t outside = 0;
  const auto stats = kernels::label_stats(labels, nullptr, classes, &outside);  // one pass, on the labels' device
  if (outside > 0) {
    const at::Tensor& l = labels;
    const at::Tensor first = ((l < 0) | (l >= classes)).nonzero()[0].cpu();
    const std::int64_t z = first[0].item<std::int64_t>(), y = first[1].item<std::int64_t>(), x = first[2].item<std::int64_t>();
    throw InputError("class extents", fmt::format("{} voxels with labels outside 0..{}, the first {} at [{}, {}, {}]", outside,
                                                  classes - 1, l[z][y][x].item<std::int64_t>(), z, y, x));
  }
  std::vector<ClassExtent> out(static_cast<std::size_t>(classes));
  for (std::size_t c = 0; c < out.size(); ++c) {
    const kernels::LabelStats& s = stats[c];
    ClassExtent& e = out[c];
    e.voxels = s.count;
    if (s.count == 0) continue;
    for (int a = 0; a < 3; ++a) {
      e.box_min[a] = s.box_min[a];
      e.box_max[a] = s.box_max[a];
      e.centroid[a] = s.index_sum[a] / static_cast<double>(s.count);
    }
  }
  return out;
}

std::vector<IntensitySummary> class_intensities(const at::Tensor& labels, const at::Tensor& image, std::int64_t classes) {
  check_same_shape(labels, image, "class intensities");
  const at::Tensor l = labels.scalar_type() == at::kByte ? labels.contiguous() : labels.to(at::kInt).contiguous();
  const at::Tensor v = image.contiguous();
  // Count, mean, std, min and max from the label-statistics kernel; the percentiles need each
  // class's values, gathered into lists sized exactly from those counts (no growth, no copy of
  // the volumes).
  const auto stats = kernels::label_stats(l, &v, classes);
  std::vector<std::vector<float>> values(static_cast<std::size_t>(classes));
  for (std::size_t c = 1; c < values.size(); ++c) values[c].reserve(static_cast<std::size_t>(stats[c].count));
  const auto gather = [&](const auto* lp) {
    AT_DISPATCH_ALL_TYPES(v.scalar_type(), "class_intensities", [&] {
      const scalar_t* vp = v.data_ptr<scalar_t>();
      for (std::int64_t i = 0; i < l.numel(); ++i) {
        const auto c = static_cast<std::int64_t>(lp[i]);
        if (c > 0 && c < classes) values[static_cast<std::size_t>(c)].push_back(static_cast<float>(vp[i]));
      }
    });
  };
  if (l.scalar_type() == at::kByte) {
    gather(l.data_ptr<std::uint8_t>());
  } else {
    gather(l.data_ptr<std::int32_t>());
  }
  std::vector<IntensitySummary> out(static_cast<std::size_t>(classes));
  for (std::size_t c = 1; c < values.size(); ++c) {
    auto& vals = values[c];
    const kernels::LabelStats& k = stats[c];
    if (k.count == 0) continue;
    IntensitySummary& s = out[c];
    const auto n = static_cast<double>(k.count);
    s.count = k.count;
    s.mean = k.sum / n;
    s.std = std::sqrt(std::max(0.0, k.sum_sq / n - s.mean * s.mean));
    s.min = k.min;
    s.max = k.max;
    s.p05 = percentile(vals, 0.05);
    s.p50 = percentile(vals, 0.50);
    s.p95 = percentile(vals, 0.95);
    std::vector<float>().swap(vals);  // freed as soon as summarised
  }
  return out;
}

std::vector<Lesion> lesions(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx, std::int64_t min_voxels) {
  const Components c = connected_components(mask, 26);
  const std::int64_t ny = mask.size(1), nx = mask.size(2), plane = ny * nx;
  const auto* lab = c.labels.data_ptr<std::int32_t>();
  const std::size_t n = static_cast<std::size_t>(c.count());
  // Pass 1: sums of indices and each component's first and last slice.
  std::vector<std::array<double, 3>> sums(n, {0, 0, 0});
  std::vector<std::int64_t> z_first(n, -1), z_last(n, -1);
  for (std::int64_t i = 0; i < c.labels.numel(); ++i) {
    if (lab[i] == 0) continue;
    const auto k = static_cast<std::size_t>(lab[i] - 1);
    const std::int64_t z = i / plane, y = (i / nx) % ny, x = i % nx;
    sums[k][0] += static_cast<double>(z);
    sums[k][1] += static_cast<double>(y);
    sums[k][2] += static_cast<double>(x);
    if (z_first[k] < 0) z_first[k] = z;
    z_last[k] = z;
  }
  // Pass 2: voxels per slice of each kept component (offsets into one array), its largest slice.
  std::vector<std::int64_t> offset(n + 1, 0);
  for (std::size_t k = 0; k < n; ++k) {
    offset[k + 1] = offset[k] + (c.sizes[k] >= min_voxels ? z_last[k] - z_first[k] + 1 : 0);
  }
  std::vector<std::int64_t> per_slice(static_cast<std::size_t>(offset[n]), 0);
  for (std::int64_t i = 0; i < c.labels.numel(); ++i) {
    if (lab[i] == 0) continue;
    const auto k = static_cast<std::size_t>(lab[i] - 1);
    if (c.sizes[k] < min_voxels) continue;
    ++per_slice[static_cast<std::size_t>(offset[k] + i / plane - z_first[k])];
  }
  std::vector<std::int64_t> best(n, -1);
  for (std::size_t k = 0; k < n; ++k) {
    std::int64_t most = -1;
    for (std::int64_t z = z_first[k]; c.sizes[k] >= min_voxels && z <= z_last[k]; ++z) {
      const std::int64_t count = per_slice[static_cast<std::size_t>(offset[k] + z - z_first[k])];
      if (count > most) most = count, best[k] = z;  // first of equals
    }
  }
  // Pass 3: the points of each component's largest slice.
  std::vector<std::vector<std::array<std::int64_t, 2>>> points(n);
  for (std::int64_t i = 0; i < c.labels.numel(); ++i) {
    if (lab[i] == 0) continue;
    const auto k = static_cast<std::size_t>(lab[i] - 1);
    if (i / plane == best[k]) points[k].push_back({(i / nx) % ny, i % nx});
  }
  const double voxel_ml = spacing_zyx[0] * spacing_zyx[1] * spacing_zyx[2] / 1000.0;
  std::vector<Lesion> out;
  for (std::size_t k = 0; k < n; ++k) {
    if (c.sizes[k] < min_voxels) continue;
    Lesion l;
    l.voxels = c.sizes[k];
    l.volume_ml = static_cast<double>(l.voxels) * voxel_ml;
    l.equivalent_diameter_mm = std::cbrt(6.0 * l.volume_ml * 1000.0 / kPi);
    for (int a = 0; a < 3; ++a) l.centroid[a] = sums[k][a] / static_cast<double>(l.voxels);
    l.axial_diameter_mm = feret_diameter(points[k], spacing_zyx[1], spacing_zyx[2]);
    out.push_back(l);
  }
  std::stable_sort(out.begin(), out.end(), [](const Lesion& a, const Lesion& b) { return a.voxels > b.voxels; });
  return out;
}

at::Tensor dilate(const at::Tensor& mask, double radius_mm, const std::array<double, 3>& spacing_zyx) {
  const at::Tensor m = mask != 0;
  at::Tensor out = at::zeros(m.sizes(), at::kBool);
  // Only the mask's box grown by the radius can change: the exact distance transform there.
  std::array<std::int64_t, 3> lo{}, hi{};
  for (int a = 0; a < 3; ++a) {
    std::vector<std::int64_t> others;
    for (int b = 0; b < 3; ++b) {
      if (b != a) others.push_back(b);
    }
    const at::Tensor along = m.amax(others).contiguous();  // does any voxel of this plane hold the mask?
    const bool* any = along.data_ptr<bool>();
    std::int64_t first = -1, last = -1;
    for (std::int64_t i = 0; i < along.numel(); ++i) {
      if (any[i]) {
        if (first < 0) first = i;
        last = i;
      }
    }
    if (first < 0) return out;
    const auto r = static_cast<std::int64_t>(std::ceil(radius_mm / spacing_zyx[a])) + 1;
    lo[a] = std::max<std::int64_t>(0, first - r);
    hi[a] = std::min<std::int64_t>(m.size(a), last + r + 1);
  }
  const auto box = [&](const at::Tensor& t) { return t.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]); };
  box(out).copy_(distance_transform(box(m).contiguous(), spacing_zyx) <= radius_mm);
  return out;
}

std::string agatston_grid_limit(const std::array<double, 3>& spacing_zyx, const CalciumOptions& options) {
  constexpr double kSlack = 1e-6;  // spacings read from files carry rounding
  const double pixel = std::max(spacing_zyx[1], spacing_zyx[2]);
  std::vector<std::string> why;
  if (spacing_zyx[0] > options.reference_slice_mm + kSlack) {
    why.push_back(fmt::format("slices {:.3g} mm apart (Agatston: {:.3g} mm or thinner)", spacing_zyx[0], options.reference_slice_mm));
  }
  if (pixel > options.max_pixel_mm + kSlack) {
    why.push_back(fmt::format("pixels {:.3g} x {:.3g} mm (Agatston: {:.3g} mm or finer)", spacing_zyx[1], spacing_zyx[2],
                              options.max_pixel_mm));
  }
  return fmt::format("{}", fmt::join(why, "; "));
}

CalciumReport agatston(const at::Tensor& hu, const at::Tensor& region, const std::vector<std::pair<std::string, at::Tensor>>& arteries,
                       const std::array<double, 3>& spacing_zyx, const CalciumOptions& options) {
  check_same_shape(hu, region, "calcium score");
  for (const auto& [name, mask] : arteries) check_same_shape(hu, mask, "calcium score");
  CalciumReport report;
  for (const auto& a : arteries) report.arteries[a.first] = {};
  const at::Tensor calcium = hu >= options.threshold_hu;
  const at::Tensor inside = region != 0;
  const at::Tensor where = (calcium & inside).nonzero();
  if (where.size(0) == 0) return report;
  // A lesion touching an artery is on it at any spacing: on a grid coarser than assign_mm, the
  // centres of touching voxels lie up to one voxel diagonal apart.
  const double reach = std::max(options.assign_mm, std::hypot(spacing_zyx[0], spacing_zyx[1], spacing_zyx[2]));
  // Work inside the seeds' box, grown so that artery distances up to the reach are exact.
  std::array<std::int64_t, 3> lo{}, hi{};
  for (int a = 0; a < 3; ++a) {
    const auto margin = static_cast<std::int64_t>(std::ceil(reach / spacing_zyx[a])) + 1;
    lo[a] = std::max<std::int64_t>(0, where.select(1, a).min().item<std::int64_t>() - margin);
    hi[a] = std::min<std::int64_t>(hu.size(a), where.select(1, a).max().item<std::int64_t>() + margin + 1);
  }
  const auto box = [&](const at::Tensor& t) {
    return t.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]).contiguous();
  };
  // Calcium whose 26-connected piece lies mostly (over half its voxels) outside the region is
  // bone reaching in — a rib, the spine, the sternum touching the margin — not a coronary
  // lesion, and is left out; the rest counts where it is inside the region. The pieces are
  // found over the whole volume, so a bone's voxels far from the region count too.
  const Components all = connected_components(calcium, 26);
  std::vector<std::int64_t> voxels_in(static_cast<std::size_t>(all.count()) + 1, 0), voxels_out(voxels_in.size(), 0);
  {
    const at::Tensor in_all = inside.contiguous();
    const std::int32_t* id = all.labels.data_ptr<std::int32_t>();
    const bool* in = in_all.data_ptr<bool>();
    for (std::int64_t i = 0; i < all.labels.numel(); ++i) {
      if (id[i] != 0) ++(in[i] ? voxels_in : voxels_out)[static_cast<std::size_t>(id[i])];
    }
  }
  at::Tensor kept_lookup = at::zeros({all.count() + 1}, at::kBool);
  for (std::int64_t k = 1; k <= all.count(); ++k) {
    if (voxels_in[static_cast<std::size_t>(k)] > voxels_out[static_cast<std::size_t>(k)]) kept_lookup[k] = true;
  }
  const at::Tensor piece = box(all.labels);
  const at::Tensor cand = kept_lookup.index({piece.to(at::kLong)}) & box(inside);
  const at::Tensor values = box(hu).to(at::kFloat);  // only the box as float
  const Components lesions3d = connected_components(cand, 26);
  const auto n = static_cast<std::size_t>(lesions3d.count());
  // Each 3D lesion's artery: the nearest within the reach (first listed on a tie); -1 none.
  std::vector<int> artery_of(n, -1);
  std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
  const std::int32_t* ids = lesions3d.labels.data_ptr<std::int32_t>();
  for (std::size_t a = 0; a < arteries.size(); ++a) {
    const at::Tensor distance = distance_transform(box(arteries[a].second) != 0, spacing_zyx).to(at::kDouble).contiguous();
    const double* d = distance.data_ptr<double>();
    std::vector<double> closest(n, std::numeric_limits<double>::infinity());
    for (std::int64_t i = 0; i < distance.numel(); ++i) {
      if (ids[i] > 0) closest[static_cast<std::size_t>(ids[i] - 1)] = std::min(closest[static_cast<std::size_t>(ids[i] - 1)], d[i]);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (closest[i] <= reach && closest[i] < nearest[i]) {
        nearest[i] = closest[i];
        artery_of[i] = static_cast<int>(a);
      }
    }
  }
  std::vector<CalciumScore> per_lesion(n);
  const double pixel_mm2 = spacing_zyx[1] * spacing_zyx[2];
  const double slice_factor = spacing_zyx[0] / options.reference_slice_mm;
  const double voxel_mm3 = pixel_mm2 * spacing_zyx[0];
  for (std::int64_t z = 0; z < cand.size(0); ++z) {
    const at::Tensor plane = cand[z];
    if (!plane.any().item<bool>()) continue;
    const Components spots = connected_components(plane.unsqueeze(0), 26);  // one slice: 8-connected
    const auto* spot = spots.labels.data_ptr<std::int32_t>();
    const auto* lesion = lesions3d.labels[z].contiguous().data_ptr<std::int32_t>();
    const at::Tensor plane_values = values[z].contiguous();
    const float* v = plane_values.data_ptr<float>();
    std::vector<double> peak(static_cast<std::size_t>(spots.count()), -std::numeric_limits<double>::infinity());
    std::vector<std::int32_t> owner(static_cast<std::size_t>(spots.count()), 0);
    for (std::int64_t i = 0; i < plane.numel(); ++i) {
      if (spot[i] == 0) continue;
      const auto s = static_cast<std::size_t>(spot[i] - 1);
      peak[s] = std::max<double>(peak[s], v[i]);
      owner[s] = lesion[i];
    }
    for (std::size_t s = 0; s < peak.size(); ++s) {
      const double area = static_cast<double>(spots.sizes[s]) * pixel_mm2;
      if (area < options.min_area_mm2) continue;
      CalciumScore& score = per_lesion[static_cast<std::size_t>(owner[s] - 1)];
      score.agatston += area * agatston_weight(peak[s]) * slice_factor;
      score.volume_mm3 += static_cast<double>(spots.sizes[s]) * voxel_mm3;
      score.lesions = 1;
    }
  }
  const auto add = [](CalciumScore& to, const CalciumScore& from) {
    to.agatston += from.agatston;
    to.volume_mm3 += from.volume_mm3;
    to.lesions += from.lesions;
  };
  for (std::size_t i = 0; i < n; ++i) {
    add(report.total, per_lesion[i]);
    add(artery_of[i] < 0 ? report.unassigned : report.arteries[arteries[static_cast<std::size_t>(artery_of[i])].first], per_lesion[i]);
  }
  return report;
}

}  // namespace vitruvian::models
