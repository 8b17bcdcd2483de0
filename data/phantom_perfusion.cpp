// The bolus model: gamma variate, exponential-kernel convolutions on a fine time grid.
#include "data/phantom_perfusion.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

namespace vitruvian::data::phantom {
namespace {

/// ∫₀ᵗ f(τ) e^(−(t − τ)/tau) dτ at each of `times` (ascending), by the midpoint rule on steps of
/// at most 0.01 s: each step decays what came before and adds its own share exactly decayed.
std::vector<double> exponential_convolution(const std::function<double(double)>& f, double tau,
                                            const std::vector<double>& times) {
  std::vector<double> out;
  out.reserve(times.size());
  double value = 0, t = 0;
  for (const double target : times) {
    const int steps = std::max(1, static_cast<int>(std::ceil((target - t) / 0.01)));
    const double h = (target - t) / steps;
    const double decay = std::exp(-h / tau), half = std::exp(-0.5 * h / tau);
    for (int s = 0; s < steps && h > 0; ++s) {
      value = value * decay + h * f(t + (s + 0.5) * h) * half;
    }
    t = std::max(t, target);
    out.push_back(value);
  }
  return out;
}

}  // namespace

double GammaBolus::at(double t) const {
  if (t <= t0_s) return 0;
  const double x = (t - t0_s) / (alpha * beta_s);
  return peak_hu * std::pow(x, alpha) * std::exp(alpha * (1 - x));
}

nlohmann::json GammaBolus::truth() const {
  return {{"model", "gamma variate: peak * x^alpha * exp(alpha (1 - x)), x = (t - t0) / (alpha beta)"},
          {"t0_s", t0_s},
          {"alpha", alpha},
          {"beta_s", beta_s},
          {"peak_hu", peak_hu},
          {"time_to_peak_s", time_to_peak_s()}};
}

std::vector<double> tissue_curve(const GammaBolus& aif, const Flow& flow, const std::vector<double>& times_s) {
  const double cbf = flow.cbf_ml_100g_min / 6000.0;  // mL/g/s
  if (flow.residue_order <= 1) {
    auto curve = exponential_convolution([&](double t) { return aif.at(t - flow.delay_s); }, flow.mtt_s, times_s);
    for (double& c : curve) c *= kTissueFactor * cbf;
    return curve;
  }
  // Order k: R = τ Σ_{j=1..k} h_j with h_j the Erlang-j density of rate 1/τ, τ = MTT / k, and
  // AIF ⊗ h_j = (1/τ) · (AIF ⊗ h_{j−1}) ⊗ e^(−t/τ): k exponential stages on a fine grid, each
  // read back linearly between its points.
  const double tau = flow.mtt_s / flow.residue_order, step = 0.01;
  const double end = times_s.empty() ? 0.0 : times_s.back();
  std::vector<double> fine;
  for (double t = 0; t <= end + step; t += step) fine.push_back(t);
  const auto at = [&](const std::vector<double>& v, double t) {
    if (t <= 0) return v.front();
    const double f = t / step;
    const auto i = std::min(static_cast<std::size_t>(f), v.size() - 2);
    const double w = std::min(1.0, f - static_cast<double>(i));
    return (1 - w) * v[i] + w * v[i + 1];
  };
  std::vector<double> stage(fine.size()), sum(fine.size(), 0.0);
  for (std::size_t i = 0; i < fine.size(); ++i) stage[i] = aif.at(fine[i] - flow.delay_s);
  for (int j = 1; j <= flow.residue_order; ++j) {
    const std::vector<double> previous = stage;
    stage = exponential_convolution([&](double t) { return at(previous, t); }, tau, fine);
    for (std::size_t i = 0; i < fine.size(); ++i) sum[i] += stage[i] /= tau;
  }
  std::vector<double> curve;
  for (const double t : times_s) curve.push_back(kTissueFactor * cbf * tau * at(sum, t));
  return curve;
}

std::vector<double> venous_curve(const GammaBolus& aif, double delay_s, double dispersion_s,
                                 const std::vector<double>& times_s) {
  auto curve = exponential_convolution([&](double t) { return aif.at(t - delay_s); }, dispersion_s, times_s);
  for (double& c : curve) c /= dispersion_s;
  return curve;
}

double sampled_cbv(const std::vector<double>& tissue, const std::vector<double>& arterial) {
  double c = 0, a = 0;
  for (std::size_t t = 0; t < tissue.size() && t < arterial.size(); ++t) c += tissue[t], a += arterial[t];
  return a > 0 ? 100.0 / kTissueFactor * c / a : 0.0;
}

nlohmann::json flow_truth(const Flow& flow) {
  return {{"cbf_ml_100g_min", flow.cbf_ml_100g_min},
          {"mtt_s", flow.mtt_s},
          {"cbv_ml_100g", flow.cbv_ml_100g()},
          {"delay_s", flow.delay_s},
          {"tmax_s", flow.delay_s},
          {"residue_order", flow.residue_order}};
}

nlohmann::json perfusion_constants(int residue_order) {
  return {
      {"density_g_ml", kTissueDensity},
      {"hematocrit_ratio", kHematocritRatio},
      {"tissue_factor", kTissueFactor},
      {"residue", residue_order <= 1
                      ? std::string("exponential: exp(-(t - delay) / MTT) for t >= delay")
                      : "Erlang order " + std::to_string(residue_order) +
                            ": exp(-x) sum_{j<k} x^j / j!, x = k (t - delay) / MTT, for t >= delay"},
      {"tissue_curve", "(density / hematocrit_ratio) * CBF * integral AIF(tau - delay) R(t - tau) dtau"}};
}

double perfusion_noise_sigma(double sigma_reference, const std::array<double, 3>& spacing_xyz) {
  const double volume = spacing_xyz[0] * spacing_xyz[1] * spacing_xyz[2];
  return sigma_reference * std::sqrt(kNoiseReferenceVoxelMm3 / volume);
}

}  // namespace vitruvian::data::phantom
