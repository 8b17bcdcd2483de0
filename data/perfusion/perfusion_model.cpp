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
constexpr std::int64_t kNoiseRows = 1 << 15;  // curves sampled for the noise estimate (at most)
constexpr double kMinShare = 0.25;  // an entry whose norm is below this share of its (order, MTT)'s largest is dropped

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

}  // namespace

ModelDictionary::ModelDictionary(const std::vector<double>& aif_hu, double interval_s, std::int64_t baseline_frames,
                                 const PerfusionOptions& o) {
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
    throw InputError("perfusion", "the model dictionary is empty: no delay in perfusion.model_delay_s lets the "
                                  "arterial input reach the frames");
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

ModelFit::ModelFit(const CurveSlabs& slabs, std::int64_t curve_count, const std::vector<double>& aif_hu, double interval_s,
                   std::int64_t baseline_frames, const PerfusionOptions& o)
    : dictionary_(aif_hu, interval_s, baseline_frames, o) {
  // The noise: the median residual of the best entry over a sample of the brain's curves (every
  // stride-th of each slab), per degree of freedom (frames less CBF, MTT, delay and offset).
  const std::int64_t stride = std::max<std::int64_t>(1, (curve_count + kNoiseRows - 1) / kNoiseRows);
  std::vector<at::Tensor> residuals;
  slabs.for_each([&](const at::Tensor& curves, const at::Tensor&) {
    const at::Tensor sample = curves.slice(0, 0, curves.size(0), stride);
    for (std::int64_t r0 = 0; r0 < sample.size(0); r0 += kRows) {
      residuals.push_back(best_residuals(sample.slice(0, r0, std::min(sample.size(0), r0 + kRows))));
    }
  });
  const auto frames = static_cast<double>(aif_hu.size());
  const double median = residuals.empty() ? 0.0 : at::cat(residuals).median().item<double>();
  noise_hu_ = std::sqrt(std::max(median, 0.0) / std::max(1.0, frames - 4));
  if (!(noise_hu_ > 0)) noise_hu_ = 1e-3;  // noise-free curves: the best entry alone
}

std::array<at::Tensor, 3> ModelFit::fit(const at::Tensor& curves) const {
  // Each entry weighs its likelihood relative to the best, exp(−(RSS − RSS_best) / 2σ²) with
  // RSS = energy − max(score, 0)² (a negative score fits CBF 0): kernel 8 on the scores.
  std::vector<at::Tensor> parts;
  for (std::int64_t r0 = 0; r0 < curves.size(0); r0 += kRows) {
    const at::Tensor scores = at::matmul(curves.slice(0, r0, std::min(curves.size(0), r0 + kRows)), dictionary_.atoms.t());
    parts.push_back(kernels::dictionary_means(scores, dictionary_.scaled, dictionary_.plain,
                                              1.0 / (2 * noise_hu_ * noise_hu_)));
  }
  const at::Tensor m = at::cat(parts);
  return {m.select(1, 0), m.select(1, 1) / 60, m.select(1, 2)};
}

nlohmann::json ModelFit::record() const {
  return {{"entries", dictionary_.atoms.size(0)},
          {"erlang_orders", dictionary_.orders},
          {"mtt_s", {dictionary_.mtts_s.front(), dictionary_.mtts_s.back(), dictionary_.mtts_s.size()}},
          {"delay_s", {dictionary_.delays_s.front(), dictionary_.delays_s.back(), dictionary_.delays_s.size()}},
          {"noise_hu", noise_hu_}};
}

}  // namespace vitruvian::data::perfusion
