// The bolus model: gamma variate, exponential-kernel convolutions on a fine time grid.
#include "data/phantom_perfusion.h"

#include <algorithm>
#include <cmath>
#include <functional>

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
  auto curve = exponential_convolution([&](double t) { return aif.at(t - flow.delay_s); }, flow.mtt_s, times_s);
  for (double& c : curve) c *= kTissueFactor * cbf;
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
          {"tmax_s", flow.delay_s}};
}

nlohmann::json perfusion_constants() {
  return {
      {"density_g_ml", kTissueDensity},
      {"hematocrit_ratio", kHematocritRatio},
      {"tissue_factor", kTissueFactor},
      {"residue", "exponential: exp(-(t - delay) / MTT) for t >= delay"},
      {"tissue_curve", "(density / hematocrit_ratio) * CBF * integral AIF(tau - delay) exp(-(t - tau) / MTT) dtau"}};
}

double perfusion_noise_sigma(double sigma_reference, const std::array<double, 3>& spacing_xyz) {
  const double volume = spacing_xyz[0] * spacing_xyz[1] * spacing_xyz[2];
  return sigma_reference * std::sqrt(kNoiseReferenceVoxelMm3 / volume);
}

}  // namespace vitruvian::data::phantom
