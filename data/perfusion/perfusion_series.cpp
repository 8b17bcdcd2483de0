// The series side of the perfusion analysis: checks of the frames, z-slabs of float32 frames,
// in-plane smoothing, the pre-contrast baseline and the arrival of the bolus, concentration
// curves of the brain's voxels and their statistics.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <utility>

#include "core/errors.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

namespace {

/// The voxels of a floating-point series that are NaN or infinite (padding after motion
/// correction, say), counted without a copy; and the first of them.
template <typename T>
std::pair<std::int64_t, std::int64_t> non_finite(const T* v, std::int64_t n) {
  struct Found {
    std::int64_t count, first;
  };
  const Found f = at::parallel_reduce(
      0, n, 1 << 20, Found{0, n},
      [&](std::int64_t begin, std::int64_t end, Found acc) {
        for (std::int64_t i = begin; i < end; ++i) {
          if (!std::isfinite(v[i])) ++acc.count, acc.first = std::min(acc.first, i);
        }
        return acc;
      },
      [](Found a, Found b) {
        return Found{a.count + b.count, std::min(a.first, b.first)};
      });
  return {f.count, f.first};
}

/// Throws InputError naming the count of NaN or infinite values of a floating-point series and
/// where the first lies, in LPS mm (a part of the series, cut to the brain's box, counts its
/// voxels from the box's corner).
void refuse_non_finite(const Volume& series, const std::string& what) {
  if (!series.voxels.is_floating_point()) return;
  const at::Tensor v = series.voxels.contiguous();
  const auto [count, first] = v.scalar_type() == at::kDouble ? non_finite(v.data_ptr<double>(), v.numel())
                              : v.scalar_type() == at::kFloat
                                  ? non_finite(v.data_ptr<float>(), v.numel())
                                  : non_finite(v.to(at::kFloat).data_ptr<float>(), v.numel());
  if (count == 0) return;
  const std::int64_t volume = v[0].numel();
  const std::array<double, 3> lps = voxel_lps(series.geometry, series.shape_zyx(), first % volume);
  throw InputError(what, fmt::format("{} voxel value(s) are NaN or infinite, the first in frame {} at ({:.1f}, {:.1f}, "
                                     "{:.1f}) mm LPS; expected finite HU",
                                     count, first / volume, lps[0], lps[1], lps[2]));
}

}  // namespace

FrameTiming check_series(const Volume& series, const PerfusionOptions& options, const std::string& what) {
  if (series.voxels.dim() != 4) {
    throw InputError(what,
                     fmt::format("a {}D series; expected a 4D perfusion series [t, z, y, x]", series.voxels.dim()));
  }
  const std::int64_t frames = series.voxels.size(0);
  if (frames < options.min_frames) {
    throw InputError(what,
                     fmt::format("{} frames; expected at least {} (perfusion.min_frames)", frames, options.min_frames));
  }
  const auto& t = series.frame_times_s;
  if (t.empty()) {
    throw InputError(what,
                     fmt::format("no frame times for its {} frames (a NIfTI pixdim[4] of 0, DICOM frames without an "
                                 "acquisition time, or a dataset series without frame_times_s); expected the "
                                 "time of each frame",
                                 frames));
  }
  if (static_cast<std::int64_t>(t.size()) != frames) {
    throw InputError(what, fmt::format("{} frame times for {} frames; expected one per frame", t.size(), frames));
  }
  std::vector<double> intervals;
  for (std::int64_t k = 1; k < frames; ++k) {
    if (!(t[k] > t[k - 1])) {
      throw InputError(what,
                       fmt::format("frames out of order: frame {} at {:.2f} s follows frame {} at {:.2f} s; expected "
                                   "increasing acquisition times",
                                   k, t[k], k - 1, t[k - 1]));
    }
    intervals.push_back(t[k] - t[k - 1]);
  }
  std::vector<double> sorted = intervals;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double median = sorted[sorted.size() / 2];
  for (std::size_t k = 0; k < intervals.size(); ++k) {
    if (std::abs(intervals[k] - median) > options.max_interval_deviation * median) {
      throw InputError(
          what, fmt::format("uneven frame spacing: {:.2f} s between frames {} and {} against a median of {:.2f} s; "
                            "expected within {:g} % (perfusion.max_interval_deviation)",
                            intervals[k], k, k + 1, median, 100 * options.max_interval_deviation));
    }
  }
  refuse_non_finite(series, what);  // last: it reads every voxel
  FrameTiming timing;
  timing.interval_s = median;
  for (const double time : t) timing.times_s.push_back(time - t[0]);
  return timing;
}

namespace {

/// The mean of the first `count` frames of a [t, z, y, x] series as float32 [z, y, x], summed in
/// float in frame order, without a float copy of the frames.
at::Tensor mean_of_frames(const at::Tensor& voxels, std::int64_t count) {
  const std::int64_t volume = voxels[0].numel();
  at::Tensor mean = at::empty({voxels.size(1), voxels.size(2), voxels.size(3)}, at::kFloat);
  float* m = mean.data_ptr<float>();
  for_voxel_type(voxels, [&](const auto* s) {
    at::parallel_for(0, volume, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        float sum = 0;
        for (std::int64_t f = 0; f < count; ++f) sum += static_cast<float>(s[f * volume + i]);
        m[i] = sum / static_cast<float>(count);
      }
    });
  });
  return mean;
}

}  // namespace

Baseline find_baseline(const Volume& series, const PerfusionOptions& options, const std::string& what,
                       const at::Tensor& first_brain) {
  const std::int64_t frames = series.voxels.size(0);
  if (first_brain.defined() && first_brain.sizes() != series.voxels[0].sizes()) {
    throw InternalError("perfusion",
                        fmt::format("a first-frame brain mask of shape {} for frames of {}",
                                    detail::shape_text(first_brain), detail::shape_text(series.voxels[0])));
  }
  const at::Tensor mask = first_brain.defined()
                              ? first_brain.to(at::kByte).contiguous()
                              : brain_mask(mean_of_frames(series.voxels, 1), series.geometry, options);
  const std::int64_t count = detail::count_set(mask);
  if (count == 0) {
    throw InputError(what,
                     fmt::format("no brain found: no soft tissue ({:g} to {:g} HU) inside bone (above {:g} HU) in the "
                                 "first frame; expected a head CT perfusion series",
                                 options.brain_hu[0], options.brain_hu[1], options.bone_hu));
  }
  Baseline b;
  b.brain_curve_hu.assign(static_cast<std::size_t>(frames), 0.0);
  const at::Tensor inside = mask.reshape({-1}).nonzero().squeeze(1).contiguous();
  const std::int64_t* index = inside.data_ptr<std::int64_t>();
  const std::int64_t volume = mask.numel();
  for_voxel_type(series.voxels, [&](const auto* s) {
    at::parallel_for(0, frames, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t f = begin; f < end; ++f) {
        double sum = 0;
        for (std::int64_t i = 0; i < count; ++i) sum += static_cast<double>(s[f * volume + index[i]]);
        b.brain_curve_hu[static_cast<std::size_t>(f)] = sum / static_cast<double>(count);
      }
    });
  });
  // The brain's pre-contrast level: the median of frames 1–3 (the series has at least 4), which one
  // frame the bolus has already reached does not move. Not frame 0: it is the frame the first mask
  // is built from, so any selection the mask makes on that frame's noise shows in its mean and
  // not in the others'. On a 0.47 × 0.47 × 0.97 mm phantom (72 HU of noise a voxel) the skull's
  // threshold took the noisiest 1.1 % of brain voxels for bone until its small pieces were left
  // out (brain_mask), and frame 0 sat 2.2 HU low, more than 5 % of the brain's peak: frame 1
  // passed for the bolus's arrival, and every curve's baseline was one frame.
  const std::vector<double>& g = b.brain_curve_hu;
  if (g.size() < 4) {  // check_series holds min_frames (at least 4 once validated); options may come unvalidated
    throw InputError(what,
                     fmt::format("{} frames; expected at least 4 (a pre-contrast level from frames 1–3)", g.size()));
  }
  const double level = std::max(std::min(g[1], g[2]), std::min(std::max(g[1], g[2]), g[3]));
  double& peak = b.peak_hu;
  for (std::size_t f = 2; f < g.size(); ++f) peak = std::max(peak, g[f] - level);
  if (peak < options.min_enhancement_hu) {
    throw InputError(
        what, fmt::format("no contrast arrival detected: the brain's mean enhancement peaks at {:.1f} HU; expected "
                          "at least {:g} HU (perfusion.min_enhancement_hu)",
                          peak, options.min_enhancement_hu));
  }
  // The bolus reaches the brain's mean at the first frame after frame 1 that rises above the level by
  // 5 % of its peak; arteries fill a frame or two earlier, so the baseline ends one frame before
  // that.
  b.arrival = 2;
  while (g[static_cast<std::size_t>(b.arrival)] - level < 0.05 * peak) ++b.arrival;
  const std::int64_t baseline_frames = b.frames = std::max<std::int64_t>(1, b.arrival - 1);
  b.image = mean_of_frames(series.voxels, baseline_frames);
  return b;
}

CurveStats curve_stats(const at::Tensor& curves_in, const std::vector<double>& times_s, double interval_s) {
  // One pass per curve in plain loops: as tensor ops, the [n, T] temporaries (a comparison, a
  // gather, ...) cost more in fresh memory than the arithmetic.
  const at::Tensor curves = curves_in.to(at::kFloat).contiguous();
  const std::int64_t n = curves.size(0), frames = curves.size(1);
  CurveStats s;
  for (at::Tensor* t : {&s.auc, &s.peak, &s.ttp, &s.fwhm}) *t = at::empty({n}, at::kFloat);
  const float* c = curves.data_ptr<float>();
  float *auc = s.auc.data_ptr<float>(), *peak = s.peak.data_ptr<float>(), *ttp = s.ttp.data_ptr<float>(),
        *fwhm = s.fwhm.data_ptr<float>();
  const auto dt = static_cast<float>(interval_s);
  at::parallel_for(0, n, 2048, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const float* x = c + i * frames;
      float sum = 0, top = x[0];
      std::int64_t at = 0;
      for (std::int64_t t = 0; t < frames; ++t) {
        sum += x[t];
        if (x[t] > top) top = x[t], at = t;
      }
      // TTP refined by the parabola through the peak and its neighbours (where it opens down).
      float offset = 0;
      if (at > 0 && at < frames - 1) {
        const float denominator = x[at - 1] - 2 * top + x[at + 1];
        if (denominator < 0) offset = 0.5f * (x[at - 1] - x[at + 1]) / denominator;
      }
      std::int64_t above = 0;
      for (std::int64_t t = 0; t < frames; ++t) above += x[t] >= top / 2;
      auc[i] = sum * dt;
      peak[i] = top;
      ttp[i] = static_cast<float>(times_s[static_cast<std::size_t>(at)]) + offset * dt;
      fwhm[i] = static_cast<float>(above) * dt;
    }
  });
  return s;
}

namespace {

double first_pass_area(const std::vector<double>& hu, double interval_s) {
  const auto frames = static_cast<std::ptrdiff_t>(hu.size());
  if (frames == 0) return 0;
  const std::ptrdiff_t peak = std::max_element(hu.begin(), hu.end()) - hu.begin();
  if (!(hu[peak] > 0)) return 0;
  std::ptrdiff_t half = peak, end = peak;
  while (half + 1 < frames && hu[half] > 0.5 * hu[peak]) ++half;
  while (end + 1 < frames && hu[end] > 0.2 * hu[peak]) ++end;
  double area = 0;
  for (std::ptrdiff_t t = 0; t <= end; ++t) area += hu[t] * interval_s;
  // The tail past `end`, where the curve fell under 20 % within the acquisition: ∫ hu[end] e^(−t/τ)
  // dt from the end of that frame's interval (its middle + Δt / 2) on, τ from the fall half → end
  // and at most the time from the peak to `end` (a fall that flattens there, by recirculation or
  // noise, would give a tail without bound). Its own frames would add the baseline's error over
  // the rest of the acquisition, and any recirculation.
  if (end > half && hu[end] > 0 && hu[end] <= 0.2 * hu[peak]) {
    const double tau = std::min(static_cast<double>(end - half) * interval_s / std::log(hu[half] / hu[end]),
                                static_cast<double>(end - peak) * interval_s);
    area += hu[end] * tau * std::exp(-interval_s / (2 * tau));
  }
  return area;
}

}  // namespace

void describe_curve(PerfusionCurve& curve, const std::vector<double>& times_s, double interval_s) {
  const at::Tensor c = at::tensor(curve.hu, at::kDouble).to(at::kFloat).unsqueeze(0);
  const CurveStats s = curve_stats(c, times_s, interval_s);
  curve.auc_hu_s = s.auc.item<double>();
  curve.peak_hu = s.peak.item<double>();
  curve.ttp_s = s.ttp.item<double>();
  curve.fwhm_s = s.fwhm.item<double>();
  curve.first_pass_auc_hu_s = first_pass_area(curve.hu, interval_s);
}

void own_baseline(PerfusionCurve& c, const std::vector<double>& times_s, double interval_s) {
  if (c.hu.empty()) return;
  const auto peak = std::max_element(c.hu.begin(), c.hu.end()) - c.hu.begin();
  if (!(c.hu[peak] > 0)) return;
  std::ptrdiff_t rise = -1;
  for (std::ptrdiff_t t = 0; t < peak; ++t) {
    if (c.hu[t] < 0.1 * c.hu[peak]) rise = t;
  }
  if (rise < 1) return;
  double shift = 0;
  for (std::ptrdiff_t t = 0; t < rise; ++t) shift += c.hu[t] / static_cast<double>(rise);
  for (double& v : c.hu) v -= shift;
  c.baseline_shift_hu = shift;
  describe_curve(c, times_s, interval_s);
}

std::array<double, 3> voxel_lps(const Geometry& g, const std::array<std::int64_t, 3>& shape, std::int64_t voxel) {
  const double ijk[3] = {static_cast<double>(voxel % shape[2]), static_cast<double>((voxel / shape[2]) % shape[1]),
                         static_cast<double>(voxel / (shape[1] * shape[2]))};
  std::array<double, 3> lps{};
  for (int r = 0; r < 3; ++r) {
    lps[r] = g.origin[r];
    for (int c = 0; c < 3; ++c) lps[r] += g.direction[r * 3 + c] * g.spacing[c] * ijk[c];
  }
  return lps;
}

std::int64_t nearest_voxel(const Geometry& g, const std::array<std::int64_t, 3>& shape,
                           const std::vector<double>& lps) {
  std::int64_t ijk[3];
  for (int c = 0; c < 3; ++c) {
    double along = 0;
    for (int r = 0; r < 3; ++r) along += g.direction[r * 3 + c] * (lps[r] - g.origin[r]);
    ijk[c] = std::llround(along / g.spacing[c]);
  }
  if (ijk[0] < 0 || ijk[0] >= shape[2] || ijk[1] < 0 || ijk[1] >= shape[1] || ijk[2] < 0 || ijk[2] >= shape[0])
    return -1;
  return (ijk[2] * shape[1] + ijk[1]) * shape[2] + ijk[0];
}

}  // namespace vitruvian::data::perfusion
