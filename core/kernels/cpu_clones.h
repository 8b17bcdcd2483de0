// Helpers for CPU loops that must vectorise in a baseline x86-64 build (SSE2, as Debian's
// packages are built) and give the same values on every instruction set:
// - VITRUVIAN_CLONES compiles a function for AVX-512, AVX2 and the baseline, chosen at load
//   time (x86-64 with GCC or Clang; elsewhere one version). Callers' files are compiled with
//   -ffp-contract=off (no fused multiply-adds), so every clone computes the same values.
// - VITRUVIAN_INLINE forces helpers into those clones (compiled with the clone's instructions).
// - lane_sums: two sums over n terms in 16 independent float lanes, carried in double every
//   1024 terms: vectorisable without reassociation, in a fixed order.
#pragma once

#include <algorithm>
#include <cstdint>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define VITRUVIAN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VITRUVIAN_CLONES
#endif
#define VITRUVIAN_INLINE __attribute__((always_inline)) inline

namespace vitruvian::kernels {

constexpr int kLanes = 16;
constexpr std::int64_t kLaneBlock = 1024;

/// first = Σ a(i), second = Σ b(i) for i in [0, n), where terms(i, a, b) sets a and b.
template <typename Terms>
VITRUVIAN_INLINE void lane_sums(std::int64_t n, Terms&& terms, double& first, double& second) {
  first = 0;
  second = 0;
  for (std::int64_t start = 0; start < n; start += kLaneBlock) {
    const std::int64_t end = std::min(n, start + kLaneBlock);
    float s[kLanes] = {}, q[kLanes] = {};
    std::int64_t i = start;
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        float a, b;
        terms(i + j, a, b);
        s[j] += a;
        q[j] += b;
      }
    }
    float block_first = 0, block_second = 0;
    for (int j = 0; j < kLanes; ++j) {
      block_first += s[j];
      block_second += q[j];
    }
    for (; i < end; ++i) {
      float a, b;
      terms(i, a, b);
      block_first += a;
      block_second += b;
    }
    first += block_first;
    second += block_second;
  }
}

}  // namespace vitruvian::kernels
