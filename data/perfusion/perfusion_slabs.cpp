// Concentration curves of the brain's voxels in z-slabs: the int16 frames inside the brain's box
// minus the baseline, smoothed in plane with plain loops, gathered per voxel; kept for the next
// pass while they fit. Also the in-plane smoothing itself.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/components.h"
#include "core/kernels/cpu_clones.h"
#include "data/perfusion/perfusion_smoothing.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

namespace {

/// One curve of `frames` values smoothed in time by [1 2 1]/4 in place, each end frame its own
/// missing neighbour (series have at least four frames).
void smooth_curve_in_time(float* curve, std::int64_t frames) {
  float before = curve[0];
  for (std::int64_t t = 0; t < frames; ++t) {
    const float here = curve[t];
    curve[t] = 0.25f * (before + 2 * here + curve[std::min(t + 1, frames - 1)]);
    before = here;
  }
}

/// Curves [n, T] float32 contiguous, each smoothed by smooth_curve_in_time().
at::Tensor smooth_in_time(const at::Tensor& curves) {
  const std::int64_t frames = curves.size(1);
  if (frames <= 2) return curves;
  at::Tensor out = curves.contiguous().clone();
  float* c = out.data_ptr<float>();
  at::parallel_for(0, out.size(0), 1024, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) smooth_curve_in_time(c + i * frames, frames);
  });
  return out;
}

/// out[i] = Σ_k w[k] · rows[k][i] over n values: the first term alone, then each tap's added in
/// order (the sums of a zeroed start, but for the sign of a zero where every term is −0). Taps are
/// added eight and four at a time, each group in one pass over `out` (still one addition after
/// another per value: the same bits), so `out` is loaded and stored once per group, not per tap.
inline void weighted_rows(float* out, std::int64_t n, const std::vector<float>& w, const float* const* rows) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = w[0] * rows[0][i];
  std::size_t k = 1;
  for (; k + 8 <= w.size(); k += 8) {
    const float *a = rows[k], *b = rows[k + 1], *c = rows[k + 2], *d = rows[k + 3], *e = rows[k + 4], *f = rows[k + 5],
                *g = rows[k + 6], *h = rows[k + 7];
    const float va = w[k], vb = w[k + 1], vc = w[k + 2], vd = w[k + 3], ve = w[k + 4], vf = w[k + 5], vg = w[k + 6],
                vh = w[k + 7];
    for (std::int64_t i = 0; i < n; ++i)
      out[i] = out[i] + va * a[i] + vb * b[i] + vc * c[i] + vd * d[i] + ve * e[i] + vf * f[i] + vg * g[i] + vh * h[i];
  }
  for (; k + 4 <= w.size(); k += 4) {
    const float *a = rows[k], *b = rows[k + 1], *c = rows[k + 2], *d = rows[k + 3];
    const float va = w[k], vb = w[k + 1], vc = w[k + 2], vd = w[k + 3];
    for (std::int64_t i = 0; i < n; ++i) out[i] = out[i] + va * a[i] + vb * b[i] + vc * c[i] + vd * d[i];
  }
  for (; k < w.size(); ++k) {
    const float* a = rows[k];
    const float v = w[k];
    for (std::int64_t i = 0; i < n; ++i) out[i] += v * a[i];
  }
}

constexpr std::int64_t kSlabFloats = std::int64_t{64} << 20;    // box values (t, z, y, x) per slab: bounds its curves
constexpr std::int64_t kCacheFloats = std::int64_t{256} << 20;  // 1 GiB of curves kept between passes
}  // namespace

std::vector<float> gaussian_taps(double sigma_voxels) {
  if (sigma_voxels <= 0) return {1.f};
  const auto radius = static_cast<std::int64_t>(std::ceil(3 * sigma_voxels));
  std::vector<double> w;
  double sum = 0;
  for (std::int64_t k = -radius; k <= radius; ++k)
    sum += w.emplace_back(std::exp(-0.5 * std::pow(k / sigma_voxels, 2)));
  std::vector<float> taps;
  for (const double v : w) taps.push_back(static_cast<float>(v / sum));
  return taps;
}

std::int64_t slab_slices(double slab_mm, double spacing_mm) {
  if (!(slab_mm > 0 && spacing_mm > 0)) return 1;
  // Less a millionth, so that a spacing read as 2.4999998 mm still ties to the fewer.
  const double half = std::ceil((slab_mm / spacing_mm - 1) / 2 - 0.5 - 1e-6);
  return 2 * static_cast<std::int64_t>(std::clamp(half, 0.0, 50.0)) + 1;
}

VITRUVIAN_CLONES void smooth_plane(float* plane, std::int64_t ny, std::int64_t nx, const std::vector<float>& kx,
                                   const std::vector<float>& ky, std::vector<float>& scratch) {
  const auto rx = static_cast<std::int64_t>(kx.size() / 2), ry = static_cast<std::int64_t>(ky.size() / 2);
  // Row by row, so that each pass over a row's sums stays in the core's first cache: along x from
  // one row padded at both ends with its end values (wx wide), into along_x; then along y, each
  // output row from the rows of along_x its taps reach (clamped to the first and last).
  const std::int64_t wx = nx + 2 * rx;
  scratch.resize(static_cast<std::size_t>(wx + ny * nx));  // every element used is written first
  float* padded = scratch.data();
  float* along_x = padded + wx;
  std::vector<const float*> rows(std::max(kx.size(), ky.size()));
  for (std::size_t k = 0; k < kx.size(); ++k) rows[k] = padded + k;
  for (std::int64_t y = 0; y < ny; ++y) {
    const float* in = plane + y * nx;
    std::fill(padded, padded + rx, in[0]);
    std::copy(in, in + nx, padded + rx);
    std::fill(padded + rx + nx, padded + wx, in[nx - 1]);
    weighted_rows(along_x + y * nx, nx, kx, rows.data());
  }
  for (std::int64_t y = 0; y < ny; ++y) {
    for (std::size_t k = 0; k < ky.size(); ++k)
      rows[k] = along_x + std::clamp<std::int64_t>(y + static_cast<std::int64_t>(k) - ry, 0, ny - 1) * nx;
    weighted_rows(plane + y * nx, nx, ky, rows.data());
  }
}

CurveSlabs::CurveSlabs(const Volume& series, const at::Tensor& baseline, const at::Tensor& brain,
                       const PerfusionOptions& options)
    : series_(series), baseline_(baseline.contiguous()), brain_(brain), options_(options) {
  const auto& g = series.geometry;
  kx_ = gaussian_taps(options.smoothing_mm / g.spacing[0]);
  ky_ = gaussian_taps(options.smoothing_mm / g.spacing[1]);
  slab_slices_ = slab_slices(options.slab_mm, g.spacing[2]);
  const std::int64_t nz = brain.size(0), ny = brain.size(1), nx = brain.size(2);
  const at::Tensor mask = brain.to(at::kByte).contiguous();
  const MaskBox box = mask_box(mask.data_ptr<std::uint8_t>(), nz, ny, nx);
  if (box.empty()) return;
  const at::Tensor slices = brain.flatten(1).any(1).to(at::kBool).contiguous();
  const auto reach_y = static_cast<std::int64_t>(ky_.size() / 2), reach_x = static_cast<std::int64_t>(kx_.size() / 2);
  y0_ = std::max<std::int64_t>(0, box.lo[1] - reach_y);
  y1_ = std::min(ny, box.hi[1] + reach_y);
  x0_ = std::max<std::int64_t>(0, box.lo[2] - reach_x);
  x1_ = std::min(nx, box.hi[2] + reach_x);
  const std::int64_t frames = series.voxels.size(0);
  const std::int64_t step =
      std::clamp<std::int64_t>(kSlabFloats / std::max<std::int64_t>(1, frames * (y1_ - y0_) * (x1_ - x0_)), 1, nz);
  const bool* has = slices.data_ptr<bool>();
  for (std::int64_t z0 = 0; z0 < nz; z0 += step) {
    const std::int64_t z1 = std::min(nz, z0 + step);
    if (std::any_of(has + z0, has + z1, [](bool b) { return b; })) slabs_.emplace_back(z0, z1);
  }
  cache_on_ = detail::count_set(brain) * frames <= kCacheFloats;
  const auto energy = [](const std::vector<float>& k) {
    double e = 0;
    for (const float w : k) e += static_cast<double>(w) * w;
    return e;
  };
  // The gains on a frame's noise variance: 1 / slices through the plane (inside the brain);
  // Σ kx² Σ ky² in plane; [1 2 1] / 4 in time, 6 / 16 inside and 10 / 16 at the two ends, averaged
  // over the frames.
  const double in_space = energy(kx_) * energy(ky_) / static_cast<double>(slab_slices_);
  const auto t = static_cast<double>(frames);
  const double in_time = ((t - 2) * 6.0 / 16.0 + 2 * 10.0 / 16.0) / t;
  frame_noise_hu_ = frame_noise_hu(series, brain);
  smoothed_noise_hu_ = frame_noise_hu_ * std::sqrt(in_space * (options.temporal_smoothing ? in_time : 1.0));
  if (options.spatial_filter == "tips") {
    // The guide is (S − baseline) through the slab, smoothed in plane, then [1 2 1] / 4 in time: v
    // is the frames' own noise variance per frame through the three gains. Left out, and so
    // absorbed by the similarity h: the baseline's noise (σ² / its frames, the same offset in
    // every frame) and the correlation of nearby guides through the smoothing, which act in
    // opposite directions.
    // With the baseline's term in v (h 1), the filter pooled across the lesion's edge: the model
    // fit's core error on the head-neck phantoms went from 37 / 49 % to 76 / 84 %.
    const double variance = frame_noise_hu_ * frame_noise_hu_ * in_space * in_time;
    tips_.emplace(g.spacing[0], g.spacing[1], options.tips_sigma_mm, options.tips_similarity, variance);
  }
}

std::pair<std::int64_t, std::int64_t> CurveSlabs::slab_range(std::int64_t z) const {
  const std::int64_t half = slab_slices_ / 2;
  return {std::max<std::int64_t>(0, z - half), std::min(series_.voxels.size(1), z + half + 1)};
}

void CurveSlabs::slab_brain(std::int64_t z, const std::uint8_t* mask, float* depth, float* base_sum) const {
  const std::int64_t ny = series_.voxels.size(2), nx = series_.voxels.size(3), bx = x1_ - x0_;
  const float* b = baseline_.data_ptr<float>();
  std::fill(depth, depth + (y1_ - y0_) * bx, 0.f);
  std::fill(base_sum, base_sum + (y1_ - y0_) * bx, 0.f);
  const auto [lo, hi] = slab_range(z);
  for (std::int64_t zz = lo; zz < hi; ++zz) {
    for (std::int64_t y = y0_; y < y1_; ++y) {
      const std::uint8_t* row = mask + (zz * ny + y) * nx + x0_;
      const float* base = b + (zz * ny + y) * nx + x0_;
      float* d = depth + (y - y0_) * bx;
      float* s = base_sum + (y - y0_) * bx;
      for (std::int64_t x = 0; x < bx; ++x) {
        d[x] += row[x] != 0 ? 1.f : 0.f;
        s[x] += row[x] != 0 ? base[x] : 0.f;
      }
    }
  }
}

double CurveSlabs::in_plane_own_weight() const {
  if (tips_) return tips_->uniform_own_weight();
  return static_cast<double>(kx_[kx_.size() / 2]) * ky_[ky_.size() / 2];
}

double CurveSlabs::frame_noise_hu(const Volume& series, const at::Tensor& brain) {
  // Every brain voxel up to 2^20 of them, an even sample of that many beyond (a clinical series'
  // brain holds about six million: its two medians would take a quarter of a second).
  constexpr std::int64_t kSample = std::int64_t{1} << 20;
  at::Tensor inside = brain.reshape({-1}).nonzero().squeeze(1);
  if (inside.numel() > kSample) inside = inside.slice(0, 0, inside.numel(), (inside.numel() + kSample - 1) / kSample);
  const auto frame = [&](std::int64_t t) {
    return series.voxels.select(0, t).reshape({-1}).index_select(0, inside).to(at::kFloat);
  };
  const at::Tensor difference = frame(1) - frame(0);
  const double mad = (difference - difference.median()).abs().median().item<double>();
  return 1.4826 * mad / std::sqrt(2.0);
}

CurveSlabs::Slab CurveSlabs::curves_at(std::int64_t z0, std::int64_t z1, const at::Tensor& voxels) const {
  const std::int64_t frames = series_.voxels.size(0), nz = series_.voxels.size(1), ny = series_.voxels.size(2),
                     nx = series_.voxels.size(3);
  const std::int64_t by = y1_ - y0_, bx = x1_ - x0_, slices = z1 - z0;
  // Each voxel's row and its place in its slice's box.
  const std::int64_t n = voxels.numel();
  const std::int64_t* v = voxels.data_ptr<std::int64_t>();
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> members(static_cast<std::size_t>(slices));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t z = v[i] / (ny * nx) - z0, y = (v[i] / nx) % ny - y0_, x = v[i] % nx - x0_;
    members[static_cast<std::size_t>(z)].emplace_back(i, y * bx + x);
  }
  // One plane (z, t) of the box at a time, in a buffer of the thread's own: S − baseline,
  // smoothed, then written into the curves of its voxels (element [row, t] by plane (z, t) alone).
  // No slab-sized buffer: its fresh pages cost more than the work.
  at::Tensor curves = at::empty({n, frames}, at::kFloat);
  at::Tensor own = at::ones({n}, at::kFloat);
  float* c = curves.data_ptr<float>();
  float* mine = own.data_ptr<float>();
  const float* b = baseline_.data_ptr<float>();
  const bool smooth = kx_.size() > 1 || ky_.size() > 1;
  const float centre = kx_[kx_.size() / 2] * ky_[ky_.size() / 2];
  // The smoothing is over the brain alone (normalised): S − baseline is set to 0 outside the
  // brain, and each smoothed plane divided by its slice's smoothed brain mask (the share of the
  // taps on brain). Bone, CSF and air do not enhance; mixed in, they would dilute the curves of
  // the cortex and of the tissue beside the ventricles and lower their flow.
  const std::int64_t plane_size = by * bx;
  // [slices, by, bx]: the brain as 0 / 1, and smoothed; through a slab, the brain's slices in it
  // and the sum of their baselines (the same for every frame).
  std::vector<float> keep, share, depth, base_sum;
  const bool through = slab_slices_ > 1;
  const bool masked = smooth || tips_ || through;
  const at::Tensor mask = masked ? brain_.to(at::kByte).contiguous() : at::Tensor();
  const std::uint8_t* m = masked ? mask.data_ptr<std::uint8_t>() : nullptr;
  if (masked) {
    keep.resize(static_cast<std::size_t>(slices * plane_size));
    if (smooth || tips_) share.resize(keep.size());
    if (through) {
      depth.resize(keep.size());
      base_sum.resize(keep.size());
    }
    at::parallel_for(0, slices, 1, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> scratch;
      for (std::int64_t zi = begin; zi < end; ++zi) {
        float* k = keep.data() + zi * plane_size;
        for (std::int64_t y = 0; y < by; ++y) {
          const std::uint8_t* row = m + ((z0 + zi) * ny + y0_ + y) * nx + x0_;
          for (std::int64_t x = 0; x < bx; ++x) k[y * bx + x] = row[x] != 0 ? 1.f : 0.f;
        }
        if (through) slab_brain(z0 + zi, m, depth.data() + zi * plane_size, base_sum.data() + zi * plane_size);
        if (share.empty()) continue;
        float* w = share.data() + zi * plane_size;
        std::copy(k, k + plane_size, w);
        smooth_plane(w, by, bx, kx_, ky_, scratch);
      }
    });
  }
  for_voxel_type(series_.voxels, [&](const auto* s) {
    // Plane (zi, t) of the box: S − baseline, 0 outside the brain when smoothed or filtered;
    // through a slab, the mean over its brain voxels of S − baseline.
    const auto difference = [&](std::int64_t zi, std::int64_t t, float* plane) {
      const std::int64_t z = z0 + zi;
      for (std::int64_t y = 0; y < by; ++y) {
        float* out = plane + y * bx;
        if (depth.empty()) {
          const auto* in = s + ((t * nz + z) * ny + y0_ + y) * nx + x0_;
          const float* base = b + (z * ny + y0_ + y) * nx + x0_;
          for (std::int64_t x = 0; x < bx; ++x) out[x] = static_cast<float>(in[x]) - base[x];
        } else {
          // The brain's values summed (exactly for 16-bit voxels: under 2^24 for the 101 slices
          // slab_slices() allows at most), less their baselines' sum, over the brain's slices.
          std::fill(out, out + bx, 0.f);
          const auto [lo, hi] = slab_range(z);
          for (std::int64_t zz = lo; zz < hi; ++zz) {
            const auto* in = s + ((t * nz + zz) * ny + y0_ + y) * nx + x0_;
            const std::uint8_t* brain = m + (zz * ny + y0_ + y) * nx + x0_;
            for (std::int64_t x = 0; x < bx; ++x) out[x] += brain[x] != 0 ? static_cast<float>(in[x]) : 0.f;
          }
          const float* d = depth.data() + (zi * by + y) * bx;
          const float* bs = base_sum.data() + (zi * by + y) * bx;
          for (std::int64_t x = 0; x < bx; ++x) out[x] = d[x] > 0 ? (out[x] - bs[x]) / d[x] : 0.f;
        }
        if (!keep.empty()) {
          const float* brain = keep.data() + (zi * by + y) * bx;
          for (std::int64_t x = 0; x < bx; ++x) out[x] *= brain[x];
        }
      }
    };
    if (tips_) {
      filter_slices(slices, frames, by, bx, members, keep, share, difference, c, mine);
      return;
    }
    at::parallel_for(0, slices * frames, 1, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> plane(static_cast<std::size_t>(plane_size)), scratch;
      for (std::int64_t p = begin; p < end; ++p) {
        const std::int64_t zi = p / frames, t = p % frames;
        const auto& inside = members[static_cast<std::size_t>(zi)];
        if (inside.empty()) continue;
        difference(zi, t, plane.data());
        if (!smooth) {
          for (const auto& [row, at] : inside) c[row * frames + t] = plane[static_cast<std::size_t>(at)];
          continue;
        }
        smooth_plane(plane.data(), by, bx, kx_, ky_, scratch);
        const float* w = share.data() + zi * plane_size;
        for (const auto& [row, at] : inside) c[row * frames + t] = plane[static_cast<std::size_t>(at)] / w[at];
        if (t == 0) {
          for (const auto& [row, at] : inside) mine[row] = centre / w[at];
        }
      }
    });
  });
  // Through a slab, a voxel's own curve is one of the brain's slices its plane's curve averages.
  if (through) {
    for (std::int64_t zi = 0; zi < slices; ++zi)
      for (const auto& [row, at] : members[static_cast<std::size_t>(zi)])
        mine[row] /= depth[static_cast<std::size_t>(zi * plane_size + at)];
  }
  return {options_.temporal_smoothing ? smooth_in_time(curves) : curves, voxels, own};
}

void CurveSlabs::filter_slices(std::int64_t slices, std::int64_t frames, std::int64_t by, std::int64_t bx,
                               const std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>>& members,
                               const std::vector<float>& keep, const std::vector<float>& share,
                               const std::function<void(std::int64_t, std::int64_t, float*)>& difference, float* curves,
                               float* own) const {
  const std::int64_t plane_size = by * bx;
  const bool smooth = kx_.size() > 1 || ky_.size() > 1;
  at::parallel_for(0, slices, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> plane(static_cast<std::size_t>(plane_size)), scratch;
    std::vector<float> raw(static_cast<std::size_t>(plane_size * frames)), guide(raw.size()), cells, counts;
    for (std::int64_t zi = begin; zi < end; ++zi) {
      const auto& inside = members[static_cast<std::size_t>(zi)];
      if (inside.empty()) continue;
      const float* w = share.data() + zi * plane_size;
      for (std::int64_t t = 0; t < frames; ++t) {
        difference(zi, t, plane.data());
        for (std::int64_t i = 0; i < plane_size; ++i)
          raw[static_cast<std::size_t>(i * frames + t)] = plane[static_cast<std::size_t>(i)];
        if (smooth) smooth_plane(plane.data(), by, bx, kx_, ky_, scratch);
        for (std::int64_t i = 0; i < plane_size; ++i)
          guide[static_cast<std::size_t>(i * frames + t)] = w[i] > 0 ? plane[static_cast<std::size_t>(i)] / w[i] : 0.f;
      }
      for (std::int64_t i = 0; i < plane_size; ++i) smooth_curve_in_time(guide.data() + i * frames, frames);
      tips_->filter(raw.data(), guide.data(), keep.data() + zi * plane_size, by, bx, frames, inside, curves, own, cells,
                    counts);
    }
  });
}

void CurveSlabs::for_each(const std::function<void(const at::Tensor&, const at::Tensor&)>& body) const {
  for_each_with_own(
      [&](const at::Tensor& curves, const at::Tensor& voxels, const at::Tensor&) { body(curves, voxels); });
}

void CurveSlabs::for_each_with_own(
    const std::function<void(const at::Tensor&, const at::Tensor&, const at::Tensor&)>& body) const {
  if (!cache_.empty()) {
    for (const Slab& slab : cache_) body(slab.curves, slab.voxels, slab.own);
    return;
  }
  const std::int64_t slice = brain_.size(1) * brain_.size(2);
  for (const auto& [z0, z1] : slabs_) {
    const at::Tensor voxels = brain_.slice(0, z0, z1).reshape({-1}).nonzero().squeeze(1) + z0 * slice;
    if (voxels.numel() == 0) continue;
    Slab slab = curves_at(z0, z1, voxels);
    body(slab.curves, slab.voxels, slab.own);
    if (cache_on_) cache_.push_back(std::move(slab));
  }
}

nlohmann::json CurveSlabs::record(double brain_peak_hu) const {
  // How far the brain's mean bolus stands above one smoothed curve's noise: where it is low,
  // per-voxel flows scatter and the core's threshold splits the core (docs/PERFUSION.md).
  nlohmann::json r = {{"spatial", options_.spatial_filter},
                      {"smoothing_mm", options_.smoothing_mm},
                      {"slab_mm", options_.slab_mm},
                      {"slab_slices", slab_slices_},
                      {"temporal", options_.temporal_smoothing},
                      {"frame_noise_hu", frame_noise_hu_},
                      {"smoothed_noise_hu", smoothed_noise_hu_},
                      {"brain_peak_hu", brain_peak_hu},
                      {"contrast_to_noise", smoothed_noise_hu_ > 0 ? nlohmann::json(brain_peak_hu / smoothed_noise_hu_)
                                                                   : nlohmann::json(nullptr)}};
  if (tips_) {
    r["tips_sigma_mm"] = options_.tips_sigma_mm;
    r["tips_similarity"] = options_.tips_similarity;
  }
  return r;
}

at::Tensor CurveSlabs::at_voxels(const std::vector<std::int64_t>& voxels) const {
  // Each voxel's own S − baseline, not smoothed in plane: smoothing would spread a vessel's curve
  // into the tissue around it and lower its peak (a 4 × 4-voxel artery to two thirds at σ 3 mm
  // on 2 mm voxels). Any voxel of the series, inside the brain's box or not (a placed one).
  const std::int64_t frames = series_.voxels.size(0), volume = baseline_.numel();
  const auto n = static_cast<std::int64_t>(voxels.size());
  at::Tensor curves = at::empty({n, frames}, at::kFloat);
  float* c = curves.data_ptr<float>();
  const float* b = baseline_.data_ptr<float>();
  for_voxel_type(series_.voxels, [&](const auto* s) {
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t v = voxels[static_cast<std::size_t>(i)];
      for (std::int64_t t = 0; t < frames; ++t) c[i * frames + t] = static_cast<float>(s[t * volume + v]) - b[v];
    }
  });
  return options_.temporal_smoothing ? smooth_in_time(curves) : curves;
}

}  // namespace vitruvian::data::perfusion
