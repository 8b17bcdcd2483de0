// Kernel 7 on the CPU: the oSVD deconvolution of many curves on one residue basis (the
// reference of the CUDA kernel). Curves go in blocks of kLanes in structure-of-arrays form
// ([time][lane]), so every loop's innermost dimension is the lane: it vectorises without
// reassociating anything, and each lane sees the same float operations in the same order as a
// curve alone would (and as the CUDA kernel's thread does). Blocks run on at::parallel_for's
// threads; a curve's result depends on nothing else, so neither the block nor the thread split
// changes a bit.
// Numerics, all in float: z and r summed in the order of their index; going down a level, the
// removed components subtracted from r in descending order; OI = Σ |(r[l] − 2r[l−1]) + r[l−2]|
// (in order l) / (float(L) · max |r|), 0 for a zero residue, compared in double with the limit;
// the parabola's offset (0.5 · (r[l−1] − r[l+1])) / ((r[l−1] − 2r[l]) + r[l+1]) added to l.
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/errors.h"
#include "core/kernels/cpu_clones.h"
#include "core/kernels/kernels.h"
#include "core/kernels/scalar_dispatch.h"

namespace vitruvian::kernels {

namespace detail {

void check_basis(const ResidueBasis& b) {
  constexpr const char* kWhat = "deconvolve_curves";
  if (b.samples < 1) {
    throw InputError(kWhat, fmt::format("a basis for curves of {} samples; expected at least 1", b.samples));
  }
  if (b.length < 1 || b.components < 1 || b.components > b.length) {
    throw InputError(kWhat, fmt::format("{} components for residues of length {}; expected 1 … length components",
                                        b.components, b.length));
  }
  if (b.analysis == nullptr || b.synthesis == nullptr) {
    throw InputError(kWhat, "a basis without its analysis or synthesis matrix");
  }
  if (b.n_levels < 1 || b.levels == nullptr) {
    throw InputError(kWhat, fmt::format("{} levels to search; expected at least 1", b.n_levels));
  }
  for (std::int64_t i = 0; i < b.n_levels; ++i) {
    const std::int32_t m = b.levels[i];
    if (m < 1 || m > b.components) {
      throw InputError(kWhat,
                       fmt::format("level {} (number {} of the list); expected 1 … {} components", m, i, b.components));
    }
    if (i > 0 && m <= b.levels[i - 1]) {
      throw InputError(kWhat, fmt::format("levels {} then {}; expected them strictly ascending", b.levels[i - 1], m));
    }
  }
}

}  // namespace detail

namespace {

// A block's kLanes values as one GCC vector: element-wise IEEE operations that every clone
// lowers to its widest instructions (one AVX-512, two AVX2 or four SSE2 operations), nothing
// reassociated. (Plain lane loops let GCC vectorise the wrong loop: across time, with shuffles.)
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

#define LOAD_LANES(v, p) std::memcpy(&(v), (p), sizeof(Lanes))
#define STORE_LANES(p, v) std::memcpy((p), &(v), sizeof(Lanes))

/// z[k][j] = Σ_t analysis[k, t] · c[t][j] for k < m, in order t.
VITRUVIAN_CLONES void block_components(const float* __restrict analysis, std::int64_t samples, std::int64_t m,
                                       const float* __restrict c, float* __restrict z) {
  for (std::int64_t k = 0; k < m; ++k) {
    const float* a = analysis + k * samples;
    Lanes acc = {};
    for (std::int64_t t = 0; t < samples; ++t) {
      Lanes ct;
      LOAD_LANES(ct, c + t * kLanes);
      acc += a[t] * ct;
    }
    STORE_LANES(z + k * kLanes, acc);
  }
}

/// r[l][j] = Σ_{k<m} z[k][j] · synthesis[k, l], in order k.
VITRUVIAN_CLONES void block_residue(const float* __restrict synthesis, std::int64_t length, std::int64_t m,
                                    const float* __restrict z, float* __restrict r) {
  for (std::int64_t l = 0; l < length; ++l) {
    Lanes acc = {};
    for (std::int64_t k = 0; k < m; ++k) {
      Lanes zk;
      LOAD_LANES(zk, z + k * kLanes);
      acc += zk * synthesis[k * length + l];
    }
    STORE_LANES(r + l * kLanes, acc);
  }
}

/// r[l][j] −= z[k][j] · synthesis[k, l] for k = from − 1 down to `to`.
VITRUVIAN_CLONES void block_remove(const float* __restrict synthesis, std::int64_t length, std::int64_t from,
                                   std::int64_t to, const float* __restrict z, float* __restrict r) {
  for (std::int64_t l = 0; l < length; ++l) {
    Lanes acc;
    LOAD_LANES(acc, r + l * kLanes);
    for (std::int64_t k = from - 1; k >= to; --k) {
      Lanes zk;
      LOAD_LANES(zk, z + k * kLanes);
      acc -= zk * synthesis[k * length + l];
    }
    STORE_LANES(r + l * kLanes, acc);
  }
}

/// Per lane: max |r| and the oscillation sum Σ_{l=2}^{L−1} |(r[l] − 2r[l−1]) + r[l−2]| in order l
/// (block_oscillation), and the largest r, the first of equals, and its index (block_peak: only
/// at a level where some lane stops).
struct Shape {
  float peak[kLanes], max_abs[kLanes], oscillation[kLanes];
  std::int32_t at[kLanes];
};

// Comparisons on 16-float vectors stay vectors only with AVX-512 (GCC 12 splits them into
// scalar ones elsewhere); on 8-float halves they stay vectors with AVX2 and AVX-512 alike.
typedef float HalfLanes __attribute__((vector_size(kLanes / 2 * sizeof(float))));
typedef std::int32_t HalfInts __attribute__((vector_size(kLanes / 2 * sizeof(std::int32_t))));

#define HALF_ABS(v) ((HalfLanes)((HalfInts)(v)&0x7fffffff))

/// block_oscillation() for lanes [first, first + kLanes / 2).
VITRUVIAN_INLINE void half_oscillation(const float* __restrict r, std::int64_t length, int first, Shape& s) {
  HalfLanes before, here;
  std::memcpy(&before, r + first, sizeof before);
  HalfLanes max_abs = HALF_ABS(before), oscillation = {};
  if (length > 1) {
    std::memcpy(&here, r + kLanes + first, sizeof here);
    const HalfLanes a = HALF_ABS(here);
    max_abs = a > max_abs ? a : max_abs;
  }
  for (std::int64_t l = 2; l < length; ++l) {
    HalfLanes v;
    std::memcpy(&v, r + l * kLanes + first, sizeof v);
    const HalfLanes a = HALF_ABS(v);
    max_abs = a > max_abs ? a : max_abs;
    oscillation += HALF_ABS((v - 2.0f * here) + before);
    before = here;
    here = v;
  }
  std::memcpy(s.max_abs + first, &max_abs, sizeof max_abs);
  std::memcpy(s.oscillation + first, &oscillation, sizeof oscillation);
}

VITRUVIAN_CLONES void block_oscillation(const float* __restrict r, std::int64_t length, Shape& s) {
  half_oscillation(r, length, 0, s);
  half_oscillation(r, length, kLanes / 2, s);
}

/// block_peak() for lanes [first, first + kLanes / 2).
VITRUVIAN_INLINE void half_peak(const float* __restrict r, std::int64_t length, int first, Shape& s) {
  HalfLanes peak;
  std::memcpy(&peak, r + first, sizeof peak);
  HalfInts at = {};
  for (std::int64_t l = 1; l < length; ++l) {
    HalfLanes v;
    std::memcpy(&v, r + l * kLanes + first, sizeof v);
    const HalfInts take = v > peak;
    peak = take ? v : peak;
    at = take ? HalfInts{} + static_cast<std::int32_t>(l) : at;
  }
  std::memcpy(s.peak + first, &peak, sizeof peak);
  std::memcpy(s.at + first, &at, sizeof at);
}

VITRUVIAN_CLONES void block_peak(const float* __restrict r, std::int64_t length, Shape& s) {
  half_peak(r, length, 0, s);
  half_peak(r, length, kLanes / 2, s);
}

/// OI = oscillation / (L · max |r|) in float; 0 for a zero residue.
float oscillation_index(float oscillation, float max_abs, std::int64_t length) {
  return max_abs == 0.0f ? 0.0f : oscillation / (static_cast<float>(length) * max_abs);
}

/// The peak's index l refined by the parabola through l − 1, l, l + 1 when it opens downwards.
float refined_peak(const float* r, std::int64_t length, std::int32_t l, int lane) {
  const auto position = static_cast<float>(l);
  if (l <= 0 || l >= length - 1) return position;
  const float before = r[(l - 1) * kLanes + lane], here = r[l * kLanes + lane], after = r[(l + 1) * kLanes + lane];
  const float curvature = (before - 2.0f * here) + after;
  if (!(curvature < 0.0f)) return position;
  return position + (0.5f * (before - after)) / curvature;
}

struct Scratch {
  std::vector<float> c, z, r;
};

/// Curves [first, first + count) (count ≤ kLanes).
void deconvolve_block(const float* curves, std::int64_t first, int count, const ResidueBasis& basis,
                      const ResidueOut& out, Scratch& w) {
  const std::int64_t samples = basis.samples, length = basis.length;
  for (std::int64_t t = 0; t < samples; ++t) {
    for (int j = 0; j < kLanes; ++j) {
      w.c[static_cast<std::size_t>(t * kLanes + j)] = j < count ? curves[(first + j) * samples + t] : 0.0f;
    }
  }
  const std::int64_t top = basis.levels[basis.n_levels - 1];
  block_components(basis.analysis, samples, top, w.c.data(), w.z.data());
  block_residue(basis.synthesis, length, top, w.z.data(), w.r.data());
  bool done[kLanes];
  int remaining = count;
  for (int j = 0; j < kLanes; ++j) done[j] = j >= count;
  Shape shape;
  for (std::int64_t i = basis.n_levels - 1; i >= 0 && remaining > 0; --i) {
    if (i < basis.n_levels - 1) {
      block_remove(basis.synthesis, length, basis.levels[i + 1], basis.levels[i], w.z.data(), w.r.data());
    }
    // Plain SVD or the smallest level: every lane left stops here, whatever its OI.
    const bool last = i == 0 || !(basis.max_oscillation > 0);
    bool stop[kLanes] = {};
    int stopping = 0;
    if (!last) block_oscillation(w.r.data(), length, shape);
    for (int j = 0; j < count; ++j) {
      if (done[j]) continue;
      const float oi = last ? 0.0f : oscillation_index(shape.oscillation[j], shape.max_abs[j], length);
      stop[j] = last || static_cast<double>(oi) <= basis.max_oscillation;
      stopping += stop[j] ? 1 : 0;
    }
    if (stopping == 0) continue;
    block_peak(w.r.data(), length, shape);
    for (int j = 0; j < count; ++j) {
      if (!stop[j]) continue;
      out.peak[first + j] = shape.peak[j];
      out.peak_at[first + j] = refined_peak(w.r.data(), length, shape.at[j], j);
      out.components[first + j] = basis.levels[i];
      done[j] = true;
    }
    remaining -= stopping;
  }
}

}  // namespace

void deconvolve_curves(const float* curves, std::int64_t n, const ResidueBasis& basis, const ResidueOut& out) {
  detail::check_basis(basis);
  if (n < 0) throw InputError("deconvolve_curves", fmt::format("{} curves; expected none or more", n));
  const std::int64_t blocks = (n + kLanes - 1) / kLanes;
  const std::int64_t top = basis.levels[basis.n_levels - 1];
  at::parallel_for(0, blocks, 16, [&](std::int64_t begin, std::int64_t end) {
    Scratch w;
    w.c.resize(static_cast<std::size_t>(basis.samples * kLanes));
    w.z.resize(static_cast<std::size_t>(top * kLanes));
    w.r.resize(static_cast<std::size_t>(basis.length * kLanes));
    for (std::int64_t b = begin; b < end; ++b) {
      const std::int64_t first = b * kLanes;
      deconvolve_block(curves, first, static_cast<int>(std::min<std::int64_t>(kLanes, n - first)), basis, out, w);
    }
  });
}

}  // namespace vitruvian::kernels
