// Synthetic CT perfusion data for the deconvolution kernel's tests and benchmark: a gamma-variate
// arterial input, its block-circulant residue basis (from LibTorch's SVD in double) and tissue
// curves made by convolving the input with exponential residues, plus noise.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace vitruvian::kernels::testing {

/// A gamma variate sampled every dt seconds: arrival t0, shape 3, scale 1.5 s, peak 300.
inline at::Tensor gamma_variate_aif(std::int64_t samples, double dt, double t0 = 4.0) {
  const double alpha = 3.0, beta = 1.5;
  at::Tensor a = torch::zeros({samples}, torch::kDouble);
  auto acc = a.accessor<double, 1>();
  for (std::int64_t t = 0; t < samples; ++t) {
    const double x = static_cast<double>(t) * dt - t0;
    if (x > 0) acc[t] = 300.0 * std::pow(x / (alpha * beta), alpha) * std::exp(alpha - x / beta);
  }
  return a;
}

/// The oSVD basis of an arterial input (double [T]): A[i, j] = dt · a[(i − j) mod L] with the
/// input zero-padded to L = 2T, A = U·S·Vᵀ; analysis[k, t] = U[t, k] / s_k (float32 [L, T]),
/// synthesis[k, l] = V[l, k] (float32 [L, L]); `singular` the s_k (double, decreasing).
struct CirculantBasis {
  at::Tensor analysis, synthesis, singular;
};

inline CirculantBasis circulant_basis(const at::Tensor& aif, double dt) {
  const std::int64_t samples = aif.size(0), length = 2 * samples;
  at::Tensor padded = torch::zeros({length}, torch::kDouble);
  padded.slice(0, 0, samples).copy_(aif);
  const at::Tensor i = torch::arange(length).unsqueeze(1), j = torch::arange(length).unsqueeze(0);
  const at::Tensor a = dt * padded.index({(i - j).remainder(length)});
  const auto [u, s, vh] = at::linalg_svd(a, false);
  CirculantBasis b;
  b.analysis = (u.t().slice(1, 0, samples) / s.unsqueeze(1)).to(torch::kFloat).contiguous();
  b.synthesis = vh.to(torch::kFloat).contiguous();
  b.singular = s;
  return b;
}

/// Component counts m with s_{m−1} ≥ fraction · s_max, from `smallest` up (oSVD's search list).
inline std::vector<std::int32_t> levels_above(const at::Tensor& singular, double fraction, std::int32_t smallest = 2) {
  std::vector<std::int32_t> levels;
  const double top = singular[0].item<double>();
  for (std::int64_t m = smallest; m <= singular.size(0); ++m) {
    if (singular[m - 1].item<double>() >= fraction * top) levels.push_back(static_cast<std::int32_t>(m));
  }
  return levels;
}

/// c[t] = dt · Σ_{j ≤ t} a[t − j] · f · exp(−(j − d) · dt / mtt) (j ≥ d) for each row's flow f, delay d
/// (whole samples) and mtt (s): double [n, T].
inline at::Tensor tissue_curves(const at::Tensor& aif, double dt, const at::Tensor& flow, const at::Tensor& delay,
                                const at::Tensor& mtt) {
  const std::int64_t samples = aif.size(0), n = flow.size(0);
  at::Tensor c = torch::zeros({n, samples}, torch::kDouble);
  auto out = c.accessor<double, 2>();
  const auto a = aif.accessor<double, 1>();
  for (std::int64_t v = 0; v < n; ++v) {
    const double f = flow[v].item<double>(), m = mtt[v].item<double>();
    const std::int64_t d = delay[v].item<std::int64_t>();
    for (std::int64_t t = 0; t < samples; ++t) {
      double sum = 0;
      for (std::int64_t q = d; q <= t; ++q) sum += a[t - q] * f * std::exp(-static_cast<double>(q - d) * dt / m);
      out[v][t] = dt * sum;
    }
  }
  return c;
}

/// n random tissue curves (float32 [n, T]): flow 0.005 … 0.015 /s, delay 0 … 3 samples, MTT
/// 2 … 8 s, plus Gaussian noise of `noise` HU.
inline at::Tensor random_tissue(const at::Tensor& aif, double dt, std::int64_t n, double noise) {
  const at::Tensor flow = 0.005 + 0.01 * torch::rand({n}, torch::kDouble);
  const at::Tensor delay = torch::randint(0, 4, {n}, torch::kLong);
  const at::Tensor mtt = 2.0 + 6.0 * torch::rand({n}, torch::kDouble);
  const at::Tensor c = tissue_curves(aif, dt, flow, delay, mtt);
  return (c + noise * torch::randn(c.sizes(), torch::kDouble)).to(torch::kFloat).contiguous();
}

}  // namespace vitruvian::kernels::testing
