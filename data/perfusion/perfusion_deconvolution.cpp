// The deconvolution basis for an arterial input: the SVD of its convolution matrix, block-
// circulant (oSVD, Wu et al. 2003: a delay shifts the residue instead of distorting it) or lower-
// triangular Toeplitz (plain SVD, the delay-sensitive reference), as kernel 7 takes it.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/errors.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

Basis deconvolution_basis(const std::vector<double>& aif_hu, double interval_s, const PerfusionOptions& options) {
  const auto frames = static_cast<std::int64_t>(aif_hu.size());
  Basis b;
  b.circulant = options.deconvolution == "osvd";
  b.length = b.circulant ? 2 * frames : frames;
  const std::int64_t L = b.length;
  at::Tensor a = at::zeros({L, L}, at::kDouble);
  double* m = a.data_ptr<double>();
  // The arterial input as linear between its samples (the 1-4-1 weights of a piecewise-linear
  // convolution, Sourbron et al. 2007): a rectangle rule would underestimate fast residues more.
  const auto aif = [&](std::int64_t k) {
    if (b.circulant) k = (k + L) % L;
    return k >= 0 && k < frames ? aif_hu[static_cast<std::size_t>(k)] : 0.0;
  };
  for (std::int64_t i = 0; i < L; ++i) {
    for (std::int64_t j = 0; j < L; ++j) {
      const std::int64_t k = b.circulant ? (i - j + L) % L : i - j;
      if (k >= 0) m[i * L + j] = interval_s * (aif(k - 1) + 4 * aif(k) + aif(k + 1)) / 6;
    }
  }
  auto [u, s, vh] = at::linalg_svd(a, /*full_matrices=*/false);
  const double* sv = s.data_ptr<double>();
  // The arterial input's checks (a peak above the brain's, a positive area) rule this out.
  if (!(sv[0] > 0)) throw InternalError("perfusion", "the arterial input has no enhancement after its checks");
  const double keep_from = (b.circulant ? options.osvd_min_threshold : options.svd_threshold) * sv[0];
  std::int64_t kept = 0;
  while (kept < L && sv[kept] >= keep_from) ++kept;
  if (b.circulant) {
    // Levels end between distinct singular values: the circulant matrix's come in equal pairs
    // (a frequency and its conjugate), which are kept or dropped together.
    for (std::int64_t level = 1; level <= kept; ++level) {
      if (level == kept || sv[level] < sv[level - 1] * (1 - 1e-6)) b.levels.push_back(static_cast<std::int32_t>(level));
    }
    b.max_oscillation = options.max_oscillation;
  } else {
    b.levels.push_back(static_cast<std::int32_t>(kept));
  }
  const std::int64_t components = b.levels.back();
  b.analysis = (u.slice(0, 0, frames).slice(1, 0, components) / s.slice(0, 0, components).unsqueeze(0))
                   .t()
                   .to(at::kFloat)
                   .contiguous();
  b.synthesis = vh.slice(0, 0, components).to(at::kFloat).contiguous();
  return b;
}

}  // namespace vitruvian::data::perfusion
