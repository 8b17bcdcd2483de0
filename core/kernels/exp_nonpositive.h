// A vectorisable exp for non-positive arguments (softmax after subtracting the maximum), shared
// by the CPU softmax-argmax kernel and the fused Dice + CE loss. Compile its callers with
// -fno-trapping-math so that its selects vectorise.
#pragma once

#include <cstdint>
#include <cstring>

namespace vitruvian::kernels {

/// exp(x) for x <= 0 within 2 ulp, branch-free so that loops over it vectorise (std::exp does
/// not without -ffast-math): x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its Taylor polynomial
/// to degree 7, 2^n through the exponent bits; below −87 (e^x under float's normal range) 0;
/// NaN gives NaN.
inline float exp_nonpositive(float x) {
  const float clamped = !(x >= -87.0f) ? -87.0f : x;  // NaN too: no float-to-int conversion of NaN below
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to a whole number
  const float n = (clamped * 1.44269504f + kRound) - kRound;
  const float r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;  // ln 2 in two parts (Cody-Waite)
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x != x ? x : (x < -87.0f ? 0.0f : p * scale);  // NaN stays NaN
}

}  // namespace vitruvian::kernels
