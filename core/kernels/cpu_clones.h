// Helpers for CPU loops that must vectorise in a baseline x86-64 build (SSE2, as Debian's
// packages are built) and give the same values on every instruction set:
// - VITRUVIAN_CLONES compiles a function for AVX-512, AVX2 and the baseline, chosen at load
//   time (x86-64 with GCC or Clang; elsewhere one version). Callers' files are compiled with
//   -ffp-contract=off (no fused multiply-adds), so every clone computes the same values.
// - VITRUVIAN_INLINE forces helpers into those clones (compiled with the clone's instructions).
// - lane_sums_n (lane_sums for two): N sums over n terms in 16 independent float lanes, carried
//   in double every 1024 terms: vectorisable without reassociation, in a fixed order.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/kernels/lanes.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define VITRUVIAN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VITRUVIAN_CLONES
#endif
#define VITRUVIAN_INLINE __attribute__((always_inline)) inline

namespace vitruvian::kernels {

/// totals[m] = Σ_i v_m(i) for m < N and i in [0, n), where terms(i, v) sets v[0 … N − 1]: per
/// block of kLaneBlock terms, kLanes float lanes, then the lanes in order, then the block's tail,
/// the block's float sum added to the double total.
template <int N, typename Terms>
VITRUVIAN_INLINE void lane_sums_n(std::int64_t n, Terms&& terms, double (&totals)[N]) {
  for (int m = 0; m < N; ++m) totals[m] = 0;
  for (std::int64_t start = 0; start < n; start += kLaneBlock) {
    const std::int64_t end = std::min(n, start + kLaneBlock);
    float lanes[N][kLanes] = {};
    std::int64_t i = start;
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        float v[N];
        terms(i + j, v);
        for (int m = 0; m < N; ++m) lanes[m][j] += v[m];
      }
    }
    float block[N] = {};
    for (int j = 0; j < kLanes; ++j) {
      for (int m = 0; m < N; ++m) block[m] += lanes[m][j];
    }
    for (; i < end; ++i) {
      float v[N];
      terms(i, v);
      for (int m = 0; m < N; ++m) block[m] += v[m];
    }
    for (int m = 0; m < N; ++m) totals[m] += block[m];
  }
}

/// first = Σ a(i), second = Σ b(i) for i in [0, n), where terms(i, a, b) sets a and b.
template <typename Terms>
VITRUVIAN_INLINE void lane_sums(std::int64_t n, Terms&& terms, double& first, double& second) {
  double totals[2];
  lane_sums_n<2>(n, [&](std::int64_t i, float (&v)[2]) { terms(i, v[0], v[1]); }, totals);
  first = totals[0];
  second = totals[1];
}

}  // namespace vitruvian::kernels
