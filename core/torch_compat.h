// The LibTorch calls whose names differ between the versions Vitruvian builds against (Debian's
// 1.13, 2.6, current releases). Include it from .cpp files only: it pulls in ATen.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

/// True when the LibTorch being compiled against is at least major.minor.
#define VITRUVIAN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace vitruvian::torch_compat {

// CUDA autocast state. LibTorch 2.4 replaced the CUDA-only calls by per-device ones; the old
// names remain, deprecated.
#if VITRUVIAN_TORCH_AT_LEAST(2, 4)
inline bool cuda_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
inline void set_cuda_autocast_enabled(bool on) { at::autocast::set_autocast_enabled(at::kCUDA, on); }
inline at::ScalarType cuda_autocast_dtype() { return at::autocast::get_autocast_dtype(at::kCUDA); }
inline void set_cuda_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_dtype(at::kCUDA, t); }
#else
inline bool cuda_autocast_enabled() { return at::autocast::is_enabled(); }
inline void set_cuda_autocast_enabled(bool on) { at::autocast::set_enabled(on); }
inline at::ScalarType cuda_autocast_dtype() { return at::autocast::get_autocast_gpu_dtype(); }
inline void set_cuda_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_gpu_dtype(t); }
#endif

}  // namespace vitruvian::torch_compat
