// In-plane Gaussian smoothing of float planes, separable, edges replicated: plain loops that
// vectorise along x (a single-channel convolution through LibTorch is many times slower).
#pragma once

#include <cstdint>
#include <vector>

namespace vitruvian::data::perfusion {

/// Smooths the [ny, nx] plane in place with taps `kx` along x and `ky` along y (odd lengths);
/// `scratch` is reused between calls.
void smooth_plane(float* plane, std::int64_t ny, std::int64_t nx, const std::vector<float>& kx,
                  const std::vector<float>& ky, std::vector<float>& scratch);

}  // namespace vitruvian::data::perfusion
