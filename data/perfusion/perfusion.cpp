// The perfusion analysis from end to end: checks, baseline and brain, curve statistics, the
// reference curves, deconvolution (kernel 7's SVDs or the model fit), the maps, tissue classes and triage.
#include "data/perfusion/perfusion.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <utility>

#include "core/components.h"
#include "core/errors.h"
#include "core/huge_page_allocator.h"
#include "core/kernels/dispatch.h"
#include "core/stopwatch.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data {

using perfusion::CurveSlabs;
using perfusion::CurveStats;
using perfusion::FrameTiming;

namespace {

using Clock = std::chrono::steady_clock;

/// An arterial input peaks at least this many times the brain's mean peak (found or placed).
constexpr double kArteryOverBrain = 3;

/// Per-voxel values of the brain's voxels, in the order CurveSlabs gives them.
struct BrainVoxels {
  at::Tensor index;  ///< int64 linear voxel index
  CurveStats stats;
};

BrainVoxels gather_stats(const CurveSlabs& slabs, const FrameTiming& ft) {
  std::vector<at::Tensor> index, auc, peak, ttp, fwhm;
  slabs.for_each([&](const at::Tensor& curves, const at::Tensor& voxels) {
    const CurveStats s = perfusion::curve_stats(curves, ft.times_s, ft.interval_s);
    index.push_back(voxels), auc.push_back(s.auc), peak.push_back(s.peak), ttp.push_back(s.ttp), fwhm.push_back(s.fwhm);
  });
  return {at::cat(index), {at::cat(auc), at::cat(peak), at::cat(ttp), at::cat(fwhm)}};
}

/// The curves (float32 [n, T]) of the brain's voxels at `positions` (int64 [n], BrainVoxels order),
/// and their own curves' weights in them (float32 [n, 1]; CurveSlabs::for_each_with_own).
std::pair<at::Tensor, at::Tensor> curves_at_positions(const CurveSlabs& slabs, const at::Tensor& positions,
                                                      std::int64_t frames) {
  at::Tensor curves_out = at::empty({positions.numel(), frames}, at::kFloat);
  at::Tensor own_out = at::empty({positions.numel(), 1}, at::kFloat);
  std::int64_t offset = 0;
  slabs.for_each_with_own([&](const at::Tensor& curves, const at::Tensor&, const at::Tensor& own) {
    const std::int64_t n = curves.size(0);
    const at::Tensor here = ((positions >= offset) & (positions < offset + n)).nonzero().squeeze(1);
    if (here.numel() > 0) {
      const at::Tensor rows = positions.index_select(0, here) - offset;
      curves_out.index_copy_(0, here, curves.index_select(0, rows));
      own_out.index_copy_(0, here, own.index_select(0, rows).unsqueeze(1));
    }
    offset += n;
  });
  return {curves_out, own_out};
}

std::vector<std::int64_t> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return {c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel()};
}

/// The mean of `curves` (float32 [n, T]: the own curves of `voxels`, as CurveSlabs::at_voxels
/// gives them) as a reference curve; `frame_noise_hu`: σ per voxel and frame.
PerfusionCurve mean_curve(const at::Tensor& curves, const std::vector<std::int64_t>& voxels, double frame_noise_hu,
                          const Volume& series, const FrameTiming& ft) {
  PerfusionCurve c;
  c.voxels = static_cast<std::int64_t>(voxels.size());
  c.hu.assign(ft.times_s.size(), 0.0);
  const at::Tensor values = curves.to(at::kDouble).contiguous();
  const double* row = values.data_ptr<double>();
  const double n = static_cast<double>(voxels.size());
  for (std::size_t v = 0; v < voxels.size(); ++v, row += c.hu.size()) {
    for (std::size_t t = 0; t < c.hu.size(); ++t) c.hu[t] += row[t] / n;
    const auto lps = perfusion::voxel_lps(series.geometry, series.shape_zyx(), voxels[v]);
    for (int r = 0; r < 3; ++r) c.centre_lps_mm[r] += lps[r] / n;
  }
  perfusion::describe_curve(c, ft.times_s, ft.interval_s);
  // σ before any temporal smoothing, which leaves the area's noise as it was.
  c.noise_hu = voxels.empty() ? 0 : frame_noise_hu / std::sqrt(n);
  c.found = true;
  return c;
}

/// The mean of the own curves at `voxels` (a placed one) as a reference curve.
PerfusionCurve mean_curve(const CurveSlabs& slabs, const std::vector<std::int64_t>& voxels, const Volume& series,
                          const FrameTiming& ft) {
  return mean_curve(slabs.at_voxels(voxels), voxels, slabs.frame_noise_hu(), series, ft);
}

/// A manually placed reference voxel, or none when the key is empty.
std::vector<std::int64_t> manual_voxel(const std::vector<double>& lps, const Volume& series, const std::string& key,
                                       const std::string& what) {
  if (lps.empty()) return {};
  const std::int64_t v = perfusion::nearest_voxel(series.geometry, series.shape_zyx(), lps);
  if (v < 0) {
    throw InputError(what, fmt::format("perfusion.{} ({:.1f}, {:.1f}, {:.1f}) mm lies outside the series; expected a "
                                       "point inside it, in LPS mm as DICOM gives them (from RAS, negate x and y)",
                                       key, lps[0], lps[1], lps[2]));
  }
  return {v};
}

/// A reference curve's noise per frame at most this share of its peak: it is the voxels' own
/// curves, not smoothed, averaged. Its area's error is then a few per cent.
constexpr double kReferenceNoise = 0.01;
/// The most voxels a reference curve averages.
constexpr std::int64_t kMaxReferenceVoxels = 1000;
/// Candidates added to a reference curve rank at least this share of the `count`-th's value: so
/// that a study whose vessels run out adds no tissue.
constexpr double kReferenceFloor = 0.5;

/// The candidates ranked by their neighbours' curves: the best by their curves', four times the
/// most a reference curve averages.
constexpr std::int64_t kRankPool = 4 * kMaxReferenceVoxels;
/// Where the in-plane filter's weight on a voxel inside uniform brain is above this, the candidates are
/// ranked by their curves: the voxel itself then places the ranking on a vessel a voxel or two
/// wide. On the 3 mm heads (a Gaussian of one voxel: 0.16) the neighbours' curves ranked the
/// artery's neighbours and the input's area after the venous scaling moved from within 2 % of
/// the drawn to 7–8 % under it in two of ten studies. At 0.47 mm (0.004) and on the 2 mm grid
/// (0.07), and with TIPS (0.01–0.03), the curve is mostly its neighbours' and leaving its own out
/// changes only the noise the ranking sees.
constexpr double kMaxOwnShare = 0.1;
/// A voxel's own weight at most this: above, it has no neighbours to rank it by.
constexpr double kMaxOwnWeight = 0.999;

/// `statistic` (CurveStats' auc or peak) of the candidates' neighbours' curves: each curve less
/// its voxel's own share, (curve − w · own curve) / (1 − w), w from CurveSlabs::for_each_with_own.
/// A reference curve is the mean of its voxels' own curves; ranked by their curves, which hold
/// their own, the voxels chosen were those whose own noise raised the statistic (for a Gaussian
/// in plane its covariance with the curve's value is twice that value's variance), and both
/// reference curves' areas came out 9–11 % over the noise-free analysis's at 0.47 mm. The
/// neighbours' noise is not the voxel's (with TIPS, the neighbours' weights still come from a
/// guide that holds a little of it). `own_curves`: the candidates' own (CurveSlabs::at_voxels).
/// One pass over the slabs to gather the candidates' curves: from memory where CurveSlabs keeps
/// them, else every slab formed again, per reference curve.
at::Tensor neighbours_statistic(const CurveSlabs& slabs, const at::Tensor& candidates, const at::Tensor& own_curves,
                                at::Tensor CurveStats::*statistic, const FrameTiming& ft) {
  const auto [curves, w] = curves_at_positions(slabs, candidates, static_cast<std::int64_t>(ft.times_s.size()));
  const at::Tensor neighbours =
      at::where(w.le(kMaxOwnWeight), (curves - w * own_curves) / (1 - w).clamp_min(1 - kMaxOwnWeight), curves);
  return perfusion::curve_stats(neighbours, ft.times_s, ft.interval_s).*statistic;
}

/// The mean curve of the `count` candidates (positions in BrainVoxels order) with the highest
/// `statistic` of their neighbours' curves (neighbours_statistic(), over the kRankPool best by
/// their curves'; of their curves where the filter's in-plane own weight is over kMaxOwnShare),
/// or of more of them where the frames are so noisy that `count` leave it over kReferenceNoise:
/// on thin slices each voxel carries tens of HU, and eight voxels' areas, VOF against AIF, came
/// out 25 % apart. The candidates are ranked, and their own curves read, once; each curve takes a
/// prefix.
PerfusionCurve reference_curve(const CurveSlabs& slabs, const at::Tensor& candidates, at::Tensor CurveStats::*statistic,
                               std::int64_t count, const BrainVoxels& brain, const Volume& series,
                               const FrameTiming& ft) {
  const std::int64_t most = std::max(count, kMaxReferenceVoxels);
  const bool by_neighbours = slabs.in_plane_own_weight() <= kMaxOwnShare;
  const std::int64_t pooled = std::min(by_neighbours ? std::max(kRankPool, most) : most, candidates.numel());
  const auto [smoothed, top] = (brain.stats.*statistic).index_select(0, candidates).topk(pooled);
  const at::Tensor pool = candidates.index_select(0, top);
  // The pool's own curves where the ranking takes them; else only the ranked ones' are read.
  const at::Tensor own = by_neighbours ? slabs.at_voxels(to_vector(brain.index.index_select(0, pool))) : at::Tensor();
  const at::Tensor values = by_neighbours ? neighbours_statistic(slabs, pool, own, statistic, ft) : smoothed;
  const std::int64_t reach = std::min(most, pool.numel());
  const auto [best, order] = values.topk(reach);
  const std::vector<std::int64_t> ranked = to_vector(brain.index.index_select(0, pool.index_select(0, order)));
  const at::Tensor curves = by_neighbours ? own.index_select(0, order) : slabs.at_voxels(ranked);
  const auto first = [&](std::int64_t k) {
    return mean_curve(curves.narrow(0, 0, k), std::vector<std::int64_t>(ranked.begin(), ranked.begin() + k),
                      slabs.frame_noise_hu(), series, ft);
  };
  const std::int64_t initial = std::min(count, reach);
  PerfusionCurve c = first(initial);
  if (c.peak_hu > 0 && initial > 0) {
    const double needed = std::ceil(std::pow(slabs.frame_noise_hu() / (kReferenceNoise * c.peak_hu), 2));
    const double floor = kReferenceFloor * best[initial - 1].item<double>();
    const std::int64_t eligible = best.ge(floor).sum().item<std::int64_t>();  // best is in descending order
    const std::int64_t more =
        std::min({static_cast<std::int64_t>(std::min(needed, 1e9)), kMaxReferenceVoxels, eligible});
    if (more > initial) c = first(more);
  }
  return c;
}

/// Early, high, narrow peaks inside the brain, as positions in BrainVoxels order: the top 5 % by
/// peak, of those the earliest (TTP within one frame of their 10th percentile), of those the
/// narrower half by FWHM.
at::Tensor arterial_candidates(const BrainVoxels& brain, const FrameTiming& ft, const PerfusionOptions& o) {
  const std::int64_t n = brain.index.numel();
  const std::int64_t pool = std::min(n, std::max<std::int64_t>(4 * o.aif_voxels, (n + 19) / 20));
  at::Tensor top = std::get<1>(brain.stats.peak.topk(pool));
  // The earliest: within one frame of the candidates' 10th-percentile TTP (veins and sinuses,
  // with high peaks too, come seconds later).
  const at::Tensor ttp = brain.stats.ttp.index_select(0, top);
  const auto tenth = std::max<std::int64_t>(1, (ttp.numel() + 9) / 10);
  const double early = std::get<0>(ttp.kthvalue(tenth)).item<double>() + ft.interval_s;
  top = top.index_select(0, (ttp <= early).nonzero().squeeze(1));
  const at::Tensor fwhm = brain.stats.fwhm.index_select(0, top);
  return top.index_select(0, (fwhm <= fwhm.median()).nonzero().squeeze(1));
}

/// The arterial input: the placed voxel, or the arterial candidates with the highest peaks.
PerfusionCurve arterial_input(const CurveSlabs& slabs, const BrainVoxels& brain, const Volume& series,
                              const FrameTiming& ft, const PerfusionOptions& o, double brain_peak_hu,
                              const std::string& what) {
  const std::vector<std::int64_t> placed = manual_voxel(o.aif_lps_mm, series, "aif_lps_mm", what);
  const bool manual = !placed.empty();
  PerfusionCurve aif = manual ? mean_curve(slabs, placed, series, ft)
                              : reference_curve(slabs, arterial_candidates(brain, ft, o), &CurveStats::peak,
                                                o.aif_voxels, brain, series, ft);
  aif.manual = manual;
  // A placed input must look like an artery too: one a few mm off, in air or tissue, would
  // otherwise deconvolve every curve by noise and give a confident, wrong triage.
  if (manual &&
      !(aif.peak_hu >= std::max(o.min_enhancement_hu, kArteryOverBrain * brain_peak_hu) && aif.auc_hu_s > 0)) {
    throw InputError(what, fmt::format("the arterial input placed by perfusion.aif_lps_mm ({:.1f}, {:.1f}, {:.1f}) mm "
                                       "peaks at {:.1f} HU (area {:.0f} HU·s) against the brain's mean {:.1f} HU; "
                                       "expected an artery's curve, peaking at least {:g} times higher and at least "
                                       "{:g} HU (perfusion.min_enhancement_hu)",
                                       o.aif_lps_mm[0], o.aif_lps_mm[1], o.aif_lps_mm[2], aif.peak_hu, aif.auc_hu_s,
                                       brain_peak_hu, kArteryOverBrain, o.min_enhancement_hu));
  }
  if (!manual && !(aif.peak_hu >= kArteryOverBrain * brain_peak_hu)) {
    throw InputError(
        what, fmt::format("no arterial input found: the earliest, narrowest high peaks reach {:.0f} HU against the "
                          "brain's mean {:.1f} HU; expected an artery's peak at least {:g} times higher",
                          aif.peak_hu, brain_peak_hu, kArteryOverBrain));
  }
  return aif;
}

/// Late, large curves (the sinuses): TTP at least Δt after the AIF's, the largest AUC (or the
/// placed voxel); its baseline then from its own frames before it rises.
PerfusionCurve venous_output(const CurveSlabs& slabs, const BrainVoxels& brain, const Volume& series,
                             const FrameTiming& ft, const PerfusionOptions& o, const PerfusionCurve& aif,
                             const std::string& what) {
  const std::vector<std::int64_t> placed = manual_voxel(o.vof_lps_mm, series, "vof_lps_mm", what);
  const bool manual = !placed.empty();
  PerfusionCurve vof;
  if (manual) {
    vof = mean_curve(slabs, placed, series, ft);
  } else {
    const at::Tensor late = (brain.stats.ttp >= aif.ttp_s + ft.interval_s).nonzero().squeeze(1);
    if (late.numel() == 0) return {};
    vof = reference_curve(slabs, late, &CurveStats::auc, o.vof_voxels, brain, series, ft);
  }
  vof.manual = manual;
  perfusion::own_baseline(vof, ft.times_s, ft.interval_s);
  return vof;
}

/// Per brain voxel, in BrainVoxels order: CBF (mL/100 g/min), CBV (mL/100 g), Tmax (s).
struct VoxelMaps {
  at::Tensor cbf, cbv, tmax;
};

/// What every deconvolution reads besides the result's arterial input: the curves, the brain's
/// voxels, the frames, the stored values' type, and where the per-voxel work runs.
struct DeconvolutionInputs {
  const CurveSlabs& slabs;
  const BrainVoxels& voxels;
  const FrameTiming& ft;
  std::int64_t baseline_frames;
  VoxelType type;
  at::Device device;
  const std::string& what;
};

/// oSVD or plain SVD through kernel 7 on the device: CBF from the residue's peak, Tmax from where
/// it peaks, CBV from the curve's area against the arterial input's.
VoxelMaps deconvolve_svd(const DeconvolutionInputs& in, const PerfusionResult& r, const PerfusionOptions& o) {
  const perfusion::Basis basis = perfusion::deconvolution_basis(r.aif.hu, in.ft.interval_s, o);
  const at::Tensor analysis = basis.analysis.to(in.device), synthesis = basis.synthesis.to(in.device);
  const double to_cbf = 6000 * o.hematocrit_ratio / o.density / r.aif_scale;
  std::vector<at::Tensor> cbf, tmax;
  in.slabs.for_each([&](const at::Tensor& curves, const at::Tensor&) {
    const kernels::Deconvolved d =
        kernels::deconvolve_curves(curves.to(in.device), analysis, synthesis, basis.levels, basis.max_oscillation);
    cbf.push_back(d.peak * to_cbf);
    const at::Tensor wrapped =
        basis.circulant ? at::where(d.peak_at > basis.length / 2.0, d.peak_at - basis.length, d.peak_at) : d.peak_at;
    tmax.push_back(wrapped * in.ft.interval_s);
  });
  const double aif_auc = r.aif.auc_hu_s * r.aif_scale;
  return {at::cat(cbf).cpu(), in.voxels.stats.auc * (100 * o.hematocrit_ratio / o.density / aif_auc),
          at::cat(tmax).cpu()};
}

/// The model fit (perfusion::ModelFit) on the arterial input after the venous scaling; its noise
/// and mixtures from the CPU's curves, the fit itself on the device. Its record into r.model.
VoxelMaps deconvolve_model(const DeconvolutionInputs& in, PerfusionResult& r, const PerfusionOptions& o) {
  std::vector<double> aif = r.aif.hu;
  for (double& v : aif) v *= r.aif_scale;
  const bool whole = !is_floating(in.type);  // stored in whole HU
  perfusion::ModelFit model(in.slabs, in.voxels.stats, aif, in.ft.interval_s, in.baseline_frames, whole ? 1.0 : 0.0, o,
                            in.what);
  r.model = model.record();
  model.to(in.device);
  std::vector<at::Tensor> cbf, cbv, tmax;
  at::Tensor mixed = at::zeros({}, at::TensorOptions(in.device).dtype(at::kLong));
  in.slabs.for_each([&](const at::Tensor& curves, const at::Tensor&) {
    const perfusion::ModelFit::Maps m = model.fit(curves.to(in.device));
    cbf.push_back(m.cbf), cbv.push_back(m.cbv), tmax.push_back(m.tmax);
    if (m.mixed.defined()) mixed += m.mixed.sum();
  });
  if (r.model["mixture"].is_object()) r.model["mixture"]["curves_mixed"] = mixed.item<std::int64_t>();
  return {at::cat(cbf).cpu(), at::cat(cbv).cpu(), at::cat(tmax).cpu()};
}

/// The maps by `method` (osvd, svd or model; the options' other keys as given).
VoxelMaps deconvolve(const std::string& method, const DeconvolutionInputs& in, PerfusionResult& r,
                     const PerfusionOptions& o) {
  PerfusionOptions by = o;
  by.deconvolution = method;
  return method == "model" ? deconvolve_model(in, r, by) : deconvolve_svd(in, r, by);
}

/// The five maps (values per brain voxel at `index` of the series' grid) as float32 volumes of
/// `grid`'s grid, zero elsewhere: the series' own, or the whole series' one the series was cut
/// from at `box`. One pass over the brain's voxels, each map written where it is kept.
void build_maps(PerfusionResult& r, const Volume& series, const Volume& grid, const Box& box, const at::Tensor& index,
                const std::array<at::Tensor, 5>& values) {
  const auto part = series.shape_zyx(), shape = grid.shape_zyx();
  std::array<Volume*, 5> maps{&r.cbf, &r.cbv, &r.mtt, &r.tmax, &r.ttp};
  std::array<const float*, 5> from{};
  std::array<float*, 5> to{};
  std::array<at::Tensor, 5> kept;
  for (std::size_t m = 0; m < maps.size(); ++m) {
    Volume& v = *maps[m];
    v.type = VoxelType::kFloat32;
    v.geometry = grid.geometry;
    v.modality = series.modality;
    v.voxels = lazily_zeroed({shape[0], shape[1], shape[2]}, at::kFloat);  // pages only where the brain is
    kept[m] = values[m].to(at::kFloat).contiguous();
    from[m] = kept[m].data_ptr<float>();
    to[m] = v.voxels.data_ptr<float>();
  }
  const std::int64_t* place = index.data_ptr<std::int64_t>();
  const std::int64_t plane = part[1] * part[2];
  at::parallel_for(0, index.numel(), 4096, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t z = place[i] / plane + box.start_zyx[0], y = place[i] / part[2] % part[1] + box.start_zyx[1],
                         x = place[i] % part[2] + box.start_zyx[2];
      const std::int64_t j = (z * shape[1] + y) * shape[2] + x;
      for (std::size_t m = 0; m < maps.size(); ++m) to[m][j] = from[m][i];
    }
  });
}

}  // namespace

PerfusionResult analyse_perfusion(const Volume& series, const PerfusionOptions& o, const std::string& what,
                                  const at::Tensor& first_brain, const WholeGrid& whole, at::Device device) {
  PerfusionResult r;
  r.device = device.str();
  // The grid the maps, tissue and brain are built on, and the series' box in it.
  const bool placed = whole.volume != nullptr;
  const Volume& grid = placed ? *whole.volume : series;
  const Box box = placed ? whole.box : Box{{0, 0, 0}, series.shape_zyx()};
  if (placed) check_part_fits(series.shape_zyx(), box, grid.shape_zyx(), what);  // before any map is written
  auto start = Clock::now();
  const FrameTiming ft = perfusion::check_series(series, o, what);
  r.times_s = ft.times_s;
  r.interval_s = ft.interval_s;
  perfusion::Baseline baseline = perfusion::find_baseline(series, o, what, first_brain);
  r.arrival_frame = baseline.arrival;
  const at::Tensor brain = perfusion::brain_mask(baseline.image, series.geometry, o);
  r.brain_voxels = detail::count_set(brain);
  if (r.brain_voxels == 0)
    throw InputError(what, "no brain found in the pre-contrast baseline; expected a head CT perfusion series");
  r.timing["baseline_s"] = seconds_since(start);

  start = Clock::now();
  const CurveSlabs slabs(series, baseline.image, brain, o);
  r.filter = slabs.record(baseline.peak_hu);
  const BrainVoxels voxels = gather_stats(slabs, ft);
  r.aif = arterial_input(slabs, voxels, series, ft, o, baseline.peak_hu, what);
  r.vof = venous_output(slabs, voxels, series, ft, o, r.aif, what);
  // Partial volume of the artery: the first passes' areas, VOF over AIF. Chosen by the largest
  // area, the venous voxels' noise adds to it, and over the whole acquisition so does their
  // baseline's error (perfusion::own_baseline); recirculation would too.
  if (r.vof.found && r.vof.first_pass_auc_hu_s > r.aif.first_pass_auc_hu_s && r.aif.first_pass_auc_hu_s > 0)
    r.aif_scale = r.vof.first_pass_auc_hu_s / r.aif.first_pass_auc_hu_s;
  r.timing["curves_s"] = seconds_since(start);

  start = Clock::now();
  const DeconvolutionInputs inputs{slabs, voxels, ft, baseline.frames, series.type, device, what};
  auto [cbf, cbv, tmax] = deconvolve(o.deconvolution, inputs, r, o);
  r.timing["deconvolution_s"] = seconds_since(start);
  if (o.tmax_method() != o.deconvolution) {
    // Flows from one deconvolution, Tmax from another, of the same curves and input. For example
    // the model fit's flows with oSVD's Tmax: the model fit's is the bolus's delay, where SVD-type
    // Tmax, on which the Tmax > 6 s threshold was set, peaks later by the residue's spread; and at
    // the lesion's edge it fits one delay between healthy tissue's bolus and the lesion's
    // (docs/PERFUSION.md, "Flows from the model fit, Tmax from oSVD"). Where CurveSlabs cannot
    // keep its curves, this forms them again.
    start = Clock::now();
    tmax = deconvolve(o.tmax_method(), inputs, r, o).tmax;
    r.timing["tmax_deconvolution_s"] = seconds_since(start);
  }

  start = Clock::now();
  const at::Tensor mtt = at::where(cbf > 0, 60 * cbv / cbf.clamp_min(1e-6), at::zeros_like(cbf));
  build_maps(r, series, grid, box, voxels.index, {cbf, cbv, mtt, tmax, voxels.stats.ttp});
  double maps_s = seconds_since(start);  // the five map volumes, for the outputs

  start = Clock::now();
  perfusion::classify(r, voxels.index, cbf, cbv, tmax, series, o);
  r.timing["tissue_s"] = seconds_since(start);
  if (placed) {  // the tissue classes and the brain on the whole grid too
    start = Clock::now();
    r.tissue = uncrop(r.tissue, grid, box);
    Volume placed_brain;
    placed_brain.type = VoxelType::kUInt8;
    placed_brain.voxels = r.brain;
    r.brain = uncrop(placed_brain, grid, box).voxels;
    maps_s += seconds_since(start);
  }
  r.timing["maps_s"] = maps_s;
  return r;
}

}  // namespace vitruvian::data
