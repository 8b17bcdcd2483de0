// The phantoms' contrast-bolus model: a gamma-variate arterial input, tissue curves by
// indicator dilution with an exponential residue, and a delayed, dispersed venous output.
// Shared by the head-neck perfusion series and the perfusion-grid phantom. Private to data/.
#pragma once

#include <nlohmann/json.hpp>
#include <array>
#include <vector>

namespace vitruvian::data::phantom {

/// Brain tissue density ρ (g/mL) and the large-to-small-vessel haematocrit ratio k_H: the
/// constants the perfusion analysis divides by (docs/PERFUSION.md), so that it recovers the
/// drawn CBF and CBV exactly from noise-free curves.
inline constexpr double kTissueDensity = 1.04;
inline constexpr double kHematocritRatio = 0.73;
/// ρ / k_H: tissue enhancement per unit of (CBF · AIF ⊗ residue).
inline constexpr double kTissueFactor = kTissueDensity / kHematocritRatio;

/// CT noise falls with the square root of the voxel's volume. A perfusion series' σ (HU) is given
/// for a 1 × 1 × 5 mm voxel (a thin-section CT perfusion reconstruction); on a grid of
/// `spacing_xyz` it is sigma_reference · √(5 mm³ / voxel volume).
inline constexpr double kNoiseReferenceVoxelMm3 = 5.0;
double perfusion_noise_sigma(double sigma_reference, const std::array<double, 3>& spacing_xyz);

/// Gamma-variate bolus: peak · x^α · e^(α (1 − x)), x = (t − t0) / (α β), 0 before t0; its
/// peak (`peak_hu`) is at t0 + α β.
struct GammaBolus {
  double t0_s = 5, alpha = 3, beta_s = 1.5, peak_hu = 300;
  double at(double t) const;
  double time_to_peak_s() const { return t0_s + alpha * beta_s; }
  nlohmann::json truth() const;
};

/// One tissue's flow: CBF (mL/100 g/min), MTT (s), the bolus's arrival delay (s) and the Erlang
/// order of its transit times (1: the exponential residue e^(−t/MTT); k: k compartments in series,
/// each of mean MTT / k, residue e^(−x) Σ_{j<k} x^j / j!, x = k t / MTT).
struct Flow {
  double cbf_ml_100g_min = 0, mtt_s = 1, delay_s = 0;
  int residue_order = 1;
  double cbv_ml_100g() const { return cbf_ml_100g_min * mtt_s / 60.0; }
};

/// Added HU at each of `times_s` (ascending, >= 0) of tissue with `flow`:
/// (ρ/k_H) · CBF[1/s] · ∫ AIF(τ − delay) R(t − τ) dτ, R the flow's residue (e^(−t/MTT) at order 1).
std::vector<double> tissue_curve(const GammaBolus& aif, const Flow& flow, const std::vector<double>& times_s);
/// Added HU at each of `times_s` of whole blood downstream: the AIF delayed by `delay_s` and
/// convolved with a unit-area exponential of mean `dispersion_s` (same area as the AIF).
std::vector<double> venous_curve(const GammaBolus& aif, double delay_s, double dispersion_s,
                                 const std::vector<double>& times_s);
/// The CBV (mL/100 g) the analysis sees from these frames: 100 (k_H/ρ) Σ C / Σ AIF over the
/// frames. Below the drawn CBV when the acquisition ends before the tissue curve has returned to
/// baseline.
double sampled_cbv(const std::vector<double>& tissue, const std::vector<double>& arterial);

/// The JSON record of a flow: cbf_ml_100g_min, mtt_s, cbv_ml_100g, delay_s, tmax_s (= delay_s:
/// every residue of this family peaks at arrival), residue_order.
nlohmann::json flow_truth(const Flow& flow);
/// {"density_g_ml", "hematocrit_ratio", "tissue_factor", "residue", "tissue_curve"}: what the
/// curves of Erlang order `residue_order` assume.
nlohmann::json perfusion_constants(int residue_order = 1);

}  // namespace vitruvian::data::phantom
