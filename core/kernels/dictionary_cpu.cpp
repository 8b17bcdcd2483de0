// Kernels 8 and 9 on the CPU, the perfusion model fit's per-row work (the references of the
// CUDA kernels).
// - Kernel 8: likelihood-weighted means over a dictionary fit. Per row, the largest positive
//   score, then one pass over the entries through lane_sums_n (16 float lanes, each block of
//   1 024 entries carried into double in lane order).
// - Kernel 9: each row's best two-compartment score, a running maximum of products rounded once.
// Rows run on at::parallel_for's threads and depend on nothing else, so neither the thread split
// nor the row's neighbours change a bit.
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/kernels/cpu_clones.h"
#include "core/kernels/exp_nonpositive.h"
#include "core/kernels/kernels.h"
#include "core/kernels/scalar_dispatch.h"

namespace vitruvian::kernels {

namespace {

/// max(0, max_k s[k]), in 16 lanes (the maximum does not depend on the order).
VITRUVIAN_CLONES float row_best(const float* __restrict s, std::int64_t entries) {
  float lanes[kLanes] = {};
  std::int64_t k = 0;
  for (; k + kLanes <= entries; k += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] = lanes[j] < s[k + j] ? s[k + j] : lanes[j];
  }
  float best = 0;
  for (int j = 0; j < kLanes; ++j) best = std::max(best, lanes[j]);
  for (; k < entries; ++k) best = std::max(best, s[k]);
  return best;
}

/// The four weighted sums of one row: Σ w, Σ w·p·scaled[0, ·], Σ w·p·scaled[1, ·], Σ w·plain.
/// p = (s < 0 ? 0 : s), so a NaN score stays NaN (as in the CUDA kernel).
VITRUVIAN_CLONES void row_sums(const float* __restrict s, std::int64_t entries, const float* __restrict scaled,
                               const float* __restrict plain, float best_sq, float inverse, double (&totals)[4]) {
  lane_sums_n<4>(
      entries,
      [&](std::int64_t k, float (&v)[4]) {
        const float p = s[k] < 0.0f ? 0.0f : s[k];
        const float weight = exp_nonpositive((p * p - best_sq) * inverse);
        const float wp = weight * p;
        v[0] = weight;
        v[1] = wp * scaled[k];
        v[2] = wp * scaled[entries + k];
        v[3] = weight * plain[k];
      },
      totals);
}

/// max(0, max_k (s[k] · gain[k] − share · offset[k])) in 16 running maxima (the maximum does not
/// depend on the order; each product rounded once: this file is built without FP contraction).
/// `best < x ? x : best`, as the CUDA kernel: a NaN term leaves the maximum as it was.
VITRUVIAN_CLONES float row_best_mixture(const float* __restrict s, float share, const MixtureValues& m) {
  const float* __restrict gain = m.gain;
  const float* __restrict offset = m.offset;
  float lanes[kLanes] = {};
  std::int64_t k = 0;
  for (; k + kLanes <= m.entries; k += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = s[k + j] * gain[k + j] - share * offset[k + j];
      lanes[j] = lanes[j] < x ? x : lanes[j];
    }
  }
  float best = 0;
  for (; k < m.entries; ++k) {
    const float x = s[k] * gain[k] - share * offset[k];
    best = best < x ? x : best;
  }
  for (int j = 0; j < kLanes; ++j) best = best < lanes[j] ? lanes[j] : best;
  return best;
}

}  // namespace

namespace detail {

void check_dictionary(const DictionaryValues& d) {
  constexpr const char* kWhat = "dictionary_means";
  if (d.entries < 1 || d.scaled == nullptr || d.plain == nullptr) {
    throw InputError(kWhat, fmt::format("a dictionary of {} entries; expected at least 1 with its values", d.entries));
  }
  if (!(d.inverse_two_variance > 0) || !std::isfinite(d.inverse_two_variance)) {
    throw InputError(kWhat, fmt::format("1 / 2σ² = {}; expected a positive finite number", d.inverse_two_variance));
  }
}

void check_mixture(const MixtureValues& m) {
  if (m.entries < 1 || m.gain == nullptr || m.offset == nullptr) {
    throw InputError("best_mixture_scores",
                     fmt::format("a mixture of {} entries; expected at least 1 with its gains and offsets", m.entries));
  }
}

}  // namespace detail

void dictionary_means(const float* scores, std::int64_t n, const DictionaryValues& d, float* out) {
  detail::check_dictionary(d);
  if (n < 0) throw InputError("dictionary_means", fmt::format("{} rows; expected none or more", n));
  const std::int64_t K = d.entries;
  at::parallel_for(0, n, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const float* s = scores + i * K;
      const float best = row_best(s, K);
      double totals[4];
      row_sums(s, K, d.scaled, d.plain, best * best, d.inverse_two_variance, totals);
      // The best entry weighs 1, so Σ w ≥ 1.
      for (int j = 0; j < 3; ++j) out[3 * i + j] = static_cast<float>(totals[j + 1] / totals[0]);
    }
  });
}

void best_mixture_scores(const float* scores, const float* share, std::int64_t n, const MixtureValues& m, float* out) {
  detail::check_mixture(m);
  if (n < 0) throw InputError("best_mixture_scores", fmt::format("{} rows; expected none or more", n));
  at::parallel_for(0, n, 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) out[i] = row_best_mixture(scores + i * m.entries, share[i], m);
  });
}

}  // namespace vitruvian::kernels
