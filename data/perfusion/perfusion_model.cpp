// Model-based deconvolution (deconvolution: model): every curve against a dictionary of tissue
// curves, arterial input ⊗ residue, over Erlang transit-time orders, MTTs and delays with a free
// offset; CBF, CBV and Tmax as means over the dictionary weighted by each entry's likelihood.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/kernels/dispatch.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

namespace {

constexpr double kMttStep = 1.2;          // ratio between neighbouring MTTs of the dictionary
constexpr double kDelayStep = 0.75;       // s between neighbouring delays
constexpr int kFineSteps = 16;            // fine time steps per frame interval for the convolutions
constexpr std::int64_t kRows = 512;       // curves fitted at once ([rows, entries] scores: 3.4 MB)
constexpr std::int64_t kDeviceRows = 16384;   // on a GPU (scores: 108 MB): launches few enough to keep it busy
constexpr std::int64_t kNoiseRows = 1 << 15;  // curves sampled for the noise estimate (at most)
constexpr double kMinShare = 0.25;  // an entry whose norm is below this share of its (order, MTT)'s largest is dropped
// A mixture (healthy tissue's curve plus one entry) replaces the best single entry where it
// lowers the residual by more than this many σ²: a likelihood ratio of e^4.5 (about 90) for its
// one more parameter, about three standard deviations.
constexpr double kMixtureEvidence = 9;
// Entries whose curve is this close to the healthy curve's (1 − ρ² below it: within about 13°)
// are left out of the mixture: α and β would trade against each other.
constexpr double kMinIndependence = 0.05;

/// The best entry's score, not below 0 (a negative score fits CBF 0), per row of `scores` [n, K].
at::Tensor best_score(const at::Tensor& scores) { return scores.amax(1).clamp_min(0); }

/// Residue of an Erlang transit-time distribution of order k and mean `mtt`: the fraction still
/// in the tissue `t` after arrival, e^(−x) Σ_{j<k} x^j / j!, x = k t / mtt (k = 1: e^(−t/MTT)).
double erlang_residue(std::int64_t order, double mtt, double t) {
  const double x = static_cast<double>(order) * t / mtt;
  double term = 1, sum = 1;
  for (std::int64_t j = 1; j < order; ++j) sum += term *= x / static_cast<double>(j);
  return std::exp(-x) * sum;
}

/// The arterial input linear between its samples, 0 before the first and held after the last.
double aif_at(const std::vector<double>& aif, double interval, double t) {
  if (t <= 0) return t < 0 ? 0.0 : aif.front();
  const double f = t / interval;
  const auto i = static_cast<std::size_t>(f);
  if (i + 1 >= aif.size()) return aif.back();
  const double w = f - static_cast<double>(i);
  return (1 - w) * aif[i] + w * aif[i + 1];
}

std::vector<double> log_levels(double low, double high, double step) {
  const auto n = static_cast<int>(std::ceil(std::log(high / low) / std::log(step))) + 1;
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(low * std::pow(high / low, n > 1 ? i / double(n - 1) : 0.0));
  return v;
}

std::vector<double> linear_levels(double low, double high, double step) {
  const auto n = static_cast<int>(std::ceil((high - low) / step - 1e-9)) + 1;
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(n > 1 ? low + (high - low) * i / double(n - 1) : low);
  return v;
}

/// The curves that make the healthy curve, as weights 0 / 1 (float32 [n]): TTP within one frame
/// interval of the median TTP, AUC 0.5 … 2 times the median AUC (the bulk of the brain, healthy
/// tissue: not the lesion's late bolus, not vessels or CSF). Undefined when none qualifies.
at::Tensor healthy_weights(const CurveStats& stats, double interval_s) {
  if (stats.ttp.numel() == 0) return {};
  const double ttp = stats.ttp.median().item<double>(), auc = stats.auc.median().item<double>();
  if (!(auc > 0)) return {};
  const at::Tensor take = ((stats.ttp - ttp).abs() <= interval_s) & (stats.auc >= 0.5 * auc) & (stats.auc <= 2 * auc);
  return take.any().item<bool>() ? take.to(at::kFloat) : at::Tensor();
}

}  // namespace

ModelDictionary::ModelDictionary(const std::vector<double>& aif_hu, double interval_s, std::int64_t baseline_frames,
                                 const PerfusionOptions& o, const std::string& what) {
  const auto frames = static_cast<std::int64_t>(aif_hu.size());
  // The curves' offset is the error of a baseline averaged over `baseline_frames` frames: a
  // Gaussian prior of the noise's σ / √baseline_frames, i.e. λ = baseline_frames pseudo-frames.
  shrink_ = 1.0 / static_cast<double>(frames + baseline_frames);
  mtts_s = log_levels(o.model_mtt_s[0], o.model_mtt_s[1], kMttStep);
  delays_s = linear_levels(o.model_delay_s[0], o.model_delay_s[1], kDelayStep);
  orders = o.model_orders;
  // Tissue enhancement (HU) per mL/100 g/min: (ρ / k_H) · CBF[mL/g/s] · (AIF ⊗ R).
  const double per_cbf = o.density / o.hematocrit_ratio / 6000;
  const double h = interval_s / kFineSteps;
  const double t_last = interval_s * static_cast<double>(frames - 1);
  // g(t) = ∫₀ᵗ AIF(τ) R(t − τ) dτ on a fine grid reaching the last frame after the earliest delay.
  const auto fine = static_cast<std::int64_t>(std::ceil((t_last - std::min(0.0, delays_s.front())) / h)) + 2;
  std::vector<double> a(static_cast<std::size_t>(fine)), r(static_cast<std::size_t>(fine)),
      g(static_cast<std::size_t>(fine));
  for (std::int64_t j = 0; j < fine; ++j) a[j] = aif_at(aif_hu, interval_s, (j + 0.5) * h);

  std::vector<float> rows;
  std::vector<double> atom(static_cast<std::size_t>(frames));
  struct Entry {
    std::vector<double> atom;
    double norm, delay;
  };
  std::vector<Entry> group;
  std::vector<double> cbf_per_score, mtt_of, delay_of;  // per entry kept
  for (const std::int64_t order : orders) {
    for (const double mtt : mtts_s) {
      for (std::int64_t j = 0; j < fine; ++j) r[j] = erlang_residue(order, mtt, (j + 0.5) * h);
      for (std::int64_t n = 0; n < fine; ++n) {
        double s = 0;  // midpoint rule: AIF at (j + ½)h, residue at (n − j − ½)h
        for (std::int64_t j = 0; j < n; ++j) s += a[j] * r[n - 1 - j];
        g[n] = s * h * per_cbf;
      }
      group.clear();
      for (const double delay : delays_s) {
        double sum = 0, squares = 0;
        for (std::int64_t i = 0; i < frames; ++i) {
          const double u = (interval_s * static_cast<double>(i) - delay) / h;
          const auto k = static_cast<std::int64_t>(std::floor(u));
          const double w = u - static_cast<double>(k);
          atom[i] = u <= 0 ? 0.0 : (1 - w) * g[std::min(k, fine - 1)] + w * g[std::min(k + 1, fine - 1)];
          sum += atom[i], squares += atom[i] * atom[i];
        }
        // M a / √(aᵀ M a), M = I − 11ᵀ / (T + λ): the offset profiled out under its prior.
        const double norm = std::sqrt(std::max(0.0, squares - sum * sum * shrink_));
        for (double& v : atom) v -= sum * shrink_;
        group.push_back({atom, norm, delay});
      }
      // An entry whose bolus mostly arrives after the last frame keeps only a sliver of its curve:
      // its CBF per unit of score (1 / norm) is huge, and a noisy curve would give it weight.
      double largest = 0;
      for (const Entry& e : group) largest = std::max(largest, e.norm);
      for (const Entry& e : group) {
        if (!(e.norm > 0) || e.norm < kMinShare * largest) continue;
        for (const double v : e.atom) rows.push_back(static_cast<float>(v / e.norm));
        cbf_per_score.push_back(1 / e.norm);
        mtt_of.push_back(mtt);
        delay_of.push_back(e.delay);
      }
    }
  }
  const auto entries = static_cast<std::int64_t>(cbf_per_score.size());
  if (entries == 0) {
    throw InputError(what,
                     fmt::format("the model dictionary is empty: no delay of perfusion.model_delay_s [{:g}, {:g}] "
                                 "s lets the arterial input reach enough of the frames; expected delays well "
                                 "before the last frame, at {:g} s",
                                 o.model_delay_s[0], o.model_delay_s[1], t_last));
  }
  atoms = at::from_blob(rows.data(), {entries, frames}, at::kFloat).clone();
  const auto column = [&](const std::vector<double>& v) { return at::tensor(v, at::kDouble).to(at::kFloat); };
  at::Tensor cbf = column(cbf_per_score);
  // Kernel 8's values: CBF and CBF · MTT (→ CBV) per unit of score, and the delay (→ Tmax).
  scaled = at::stack({cbf, cbf * column(mtt_of)}).contiguous();
  plain = column(delay_of);
}

at::Tensor ModelFit::best_residuals(const at::Tensor& curves) const {
  const at::Tensor best = at::matmul(curves, dictionary_.atoms.t()).amax(1).clamp_min(0);
  return curves.square().sum(1) - curves.sum(1).square() * dictionary_.shrink() - best.square();
}

ModelFit::ModelFit(const CurveSlabs& slabs, const CurveStats& stats, const std::vector<double>& aif_hu,
                   double interval_s, std::int64_t baseline_frames, double step_hu, const PerfusionOptions& o,
                   const std::string& what)
    : dictionary_(aif_hu, interval_s, baseline_frames, o, what), rounding_variance_(step_hu * step_hu / 12) {
  // One pass over the curves for two things. The noise: the median residual of the best entry
  // over a sample of the brain's curves (every stride-th of each slab), per degree of freedom
  // (frames less CBF, MTT, delay and offset). With mixtures, the healthy curve's sum.
  const std::int64_t curve_count = stats.ttp.numel();
  const std::int64_t stride = std::max<std::int64_t>(1, (curve_count + kNoiseRows - 1) / kNoiseRows);
  const at::Tensor healthy = o.model_mixture ? healthy_weights(stats, interval_s) : at::Tensor();
  std::vector<at::Tensor> residuals;
  at::Tensor healthy_sum;
  std::int64_t offset = 0;
  slabs.for_each([&](const at::Tensor& curves, const at::Tensor&) {
    const at::Tensor sample = curves.slice(0, 0, curves.size(0), stride);
    for (std::int64_t r0 = 0; r0 < sample.size(0); r0 += kRows) {
      residuals.push_back(best_residuals(sample.slice(0, r0, std::min(sample.size(0), r0 + kRows))));
    }
    if (healthy.defined()) {
      const at::Tensor part = at::matmul(healthy.slice(0, offset, offset + curves.size(0)), curves).to(at::kDouble);
      healthy_sum = healthy_sum.defined() ? healthy_sum + part : part;
    }
    offset += curves.size(0);
  });
  const auto frames = static_cast<double>(aif_hu.size());
  const double median = residuals.empty() ? 0.0 : at::cat(residuals).median().item<double>();
  noise_hu_ = std::sqrt(std::max(median, 0.0) / std::max(1.0, frames - 4));
  if (!(noise_hu_ > 0)) noise_hu_ = 1e-3;  // noise-free curves: the best entry alone
  if (healthy_sum.defined()) {
    const auto voxels = static_cast<std::int64_t>(healthy.sum().item<double>());
    add_mixture(healthy_sum / static_cast<double>(voxels), voxels);
  }
}

void ModelFit::add_mixture(const at::Tensor& h, std::int64_t voxels) {
  const double sum = h.sum().item<double>(), squares = h.square().sum().item<double>();
  const double norm = std::sqrt(std::max(0.0, squares - sum * sum * dictionary_.shrink()));
  if (!(norm > 0)) return;
  // The healthy curve's own fit: its flow, volume and delay stand for the share α of it.
  const Maps own = fit(h.to(at::kFloat).unsqueeze(0));
  Mixture m;
  m.cbf = own.cbf.item<double>(), m.cbv = own.cbv.item<double>(), m.tmax = own.tmax.item<double>();
  m.norm = norm;
  m.voxels = voxels;
  const at::Tensor H = (h - sum * dictionary_.shrink()) / norm;  // M h / |h|
  const at::Tensor atoms = dictionary_.atoms.to(at::kDouble);    // M a / |a|
  const at::Tensor rho = at::matmul(atoms, h) / norm;
  const at::Tensor kept = ((1 - rho * rho) > kMinIndependence).nonzero().squeeze(1);
  if (kept.numel() == 0) return;
  const at::Tensor r = rho.index_select(0, kept), independence = (1 - r * r).sqrt();
  m.kept = kept;
  // Per entry of the whole dictionary, 0 where not kept: ã · c = s · gain − H · c · offset.
  m.gain = at::zeros({atoms.size(0)}, at::kFloat).index_put_({kept}, (1 / independence).to(at::kFloat));
  m.offset = at::zeros({atoms.size(0)}, at::kFloat).index_put_({kept}, (r / independence).to(at::kFloat));
  const at::Tensor per_score = dictionary_.scaled[0].to(at::kDouble).index_select(0, kept);  // 1 / |a|
  const at::Tensor mtt = dictionary_.scaled[1].to(at::kDouble).index_select(0, kept) / per_score;
  const at::Tensor beta = per_score / independence;    // β per unit of score
  const at::Tensor alpha_lost = r / per_score / norm;  // α = H·c / |h| − β · this
  m.scaled =
      at::stack({beta * (1 - m.cbf * alpha_lost), beta * (mtt - 60 * m.cbv * alpha_lost)}).to(at::kFloat).contiguous();
  m.alpha_lost = at::stack({beta * alpha_lost, beta * alpha_lost}).to(at::kFloat).contiguous();
  m.plain = dictionary_.plain.index_select(0, kept).contiguous();
  m.healthy = H.to(at::kFloat).contiguous();
  mixture_ = std::move(m);
}

void ModelFit::to(at::Device device) {
  for (at::Tensor* t : {&dictionary_.atoms, &dictionary_.scaled, &dictionary_.plain}) *t = t->to(device);
  if (!mixture_) return;
  Mixture& x = *mixture_;
  for (at::Tensor* t : {&x.healthy, &x.kept, &x.gain, &x.offset, &x.scaled, &x.alpha_lost, &x.plain})
    *t = t->to(device);
}

ModelFit::Maps ModelFit::fit(const at::Tensor& curves) const {
  // Each entry weighs its likelihood relative to the best, exp(−(RSS − RSS_best) / 2σ²) with
  // RSS = energy − max(score, 0)² (a negative score fits CBF 0): kernel 8 on the scores.
  const auto inverse_two_variance = static_cast<float>(1.0 / (2 * noise_hu_ * noise_hu_));
  std::vector<at::Tensor> parts, mixed;
  const std::int64_t chunk = curves.is_cpu() ? kRows : kDeviceRows;
  for (std::int64_t r0 = 0; r0 < curves.size(0); r0 += chunk) {
    const at::Tensor c = curves.slice(0, r0, std::min(curves.size(0), r0 + chunk));
    const at::Tensor scores = at::matmul(c, dictionary_.atoms.t()).contiguous();
    at::Tensor m = kernels::dictionary_means(scores, dictionary_.scaled, dictionary_.plain, inverse_two_variance);
    if (mixture_) {
      // With the healthy curve's part taken out first, entry k fits what is left: the best
      // mixture's residual is energy − (H·c)² − max(s̃, 0)².
      const Mixture& x = *mixture_;
      // ã_k · c = (a_k · c − ρ_k H · c) / √(1 − ρ_k²): from the scores, no second product.
      const at::Tensor share = at::matmul(c, x.healthy).contiguous();
      const at::Tensor evidence = share.square() +
                                  kernels::best_mixture_scores(scores, share, x.gain, x.offset).square() -  // kernel 9
                                  best_score(scores).square();
      const at::Tensor use = evidence > kMixtureEvidence * std::max(noise_hu_ * noise_hu_, rounding_variance_);
      const at::Tensor rows = use.nonzero().squeeze(1);
      if (rows.numel() > 0) {
        const at::Tensor sub =
            (scores.index_select(0, rows) * x.gain - share.index_select(0, rows).unsqueeze(1) * x.offset)
                .index_select(1, x.kept)
                .contiguous();
        const at::Tensor beyond = kernels::dictionary_means(sub, x.scaled, x.plain, inverse_two_variance);
        const at::Tensor lost = kernels::dictionary_means(sub, x.alpha_lost, x.plain, inverse_two_variance);
        const at::Tensor share_of_h = share.index_select(0, rows) / x.norm;  // α before the entry's part
        const at::Tensor cbf = (x.cbf * share_of_h + beyond.select(1, 0)).clamp_min(0);
        const at::Tensor cbf_mtt = (60 * x.cbv * share_of_h + beyond.select(1, 1)).clamp_min(0);
        // Tmax: the entry's delay where healthy tissue fills less than half the voxel (α < ½),
        // else healthy tissue's: the voxel's majority tissue, as a label names it. By flow share
        // instead, a voxel mostly of slow lesion tissue took healthy tissue's Tmax, and the
        // hypoperfused volume's edge moved into the lesion.
        const at::Tensor alpha = share_of_h - lost.select(1, 0);
        const at::Tensor tmax = at::where(alpha < 0.5, beyond.select(1, 2), at::full_like(cbf, x.tmax));
        m.index_copy_(0, rows, at::stack({cbf, cbf_mtt, tmax}, 1));
      }
      mixed.push_back(use);
    }
    parts.push_back(m);
  }
  const at::Tensor m = at::cat(parts);
  return {m.select(1, 0), m.select(1, 1) / 60, m.select(1, 2), mixed.empty() ? at::Tensor() : at::cat(mixed)};
}

nlohmann::json ModelFit::record() const {
  return {{"entries", dictionary_.atoms.size(0)},
          {"erlang_orders", dictionary_.orders},
          {"mtt_s", {dictionary_.mtts_s.front(), dictionary_.mtts_s.back(), dictionary_.mtts_s.size()}},
          {"delay_s", {dictionary_.delays_s.front(), dictionary_.delays_s.back(), dictionary_.delays_s.size()}},
          {"noise_hu", noise_hu_},
          {"mixture", mixture_ ? nlohmann::json{{"healthy_voxels", mixture_->voxels},
                                                {"healthy_cbf", mixture_->cbf},
                                                {"healthy_cbv", mixture_->cbv},
                                                {"healthy_tmax_s", mixture_->tmax},
                                                {"entries", mixture_->kept.numel()}}
                               : nlohmann::json()}};
}

}  // namespace vitruvian::data::perfusion
