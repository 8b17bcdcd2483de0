// Calls a generic lambda with a value of the C++ type behind a kernels::Scalar; shared by the CPU
// and CUDA implementations (plain C++, no LibTorch). Private to core/kernels.
#pragma once

#include <cstdint>
#include <string>

#include "core/errors.h"
#include "core/kernels/kernels.h"

namespace vitruvian::kernels::detail {

/// f(T{}) for the real types a kernel reads (kFloat16 excluded: it is only an accumulator type).
template <typename F>
void with_real(Scalar s, F&& f) {
  switch (s) {
    case Scalar::kUInt8: return f(std::uint8_t{});
    case Scalar::kInt16: return f(std::int16_t{});
    case Scalar::kUInt16: return f(std::uint16_t{});
    case Scalar::kInt32: return f(std::int32_t{});
    case Scalar::kFloat32: return f(float{});
    case Scalar::kFloat64: return f(double{});
    case Scalar::kFloat16: break;
  }
  throw InputError("kernels", std::string("no kernel reads voxels of type ") + scalar_name(s));
}

/// f(T{}) for the label types (uint8, uint16, int32).
template <typename F>
void with_label(Scalar s, F&& f) {
  switch (s) {
    case Scalar::kUInt8: return f(std::uint8_t{});
    case Scalar::kUInt16: return f(std::uint16_t{});
    case Scalar::kInt32: return f(std::int32_t{});
    default: break;
  }
  throw InputError("kernels", std::string("labels of type ") + scalar_name(s) + "; expected uint8, uint16 or int32");
}

/// The backward neighbours of a voxel in z-y-x scan order (negative offsets) for a connectivity:
/// 3, 9 or 13 of them. Returns the count; `out` holds up to 13 [dz, dy, dx].
inline int backward_neighbours(int connectivity, int out[13][3]) {
  int n = 0;
  for (int dz = -1; dz <= 0; ++dz) {
    for (int dy = -1; dy <= 1; ++dy) {
      for (int dx = -1; dx <= 1; ++dx) {
        if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0))) continue;  // not yet scanned, or the voxel itself
        const int order = (dz != 0) + (dy != 0) + (dx != 0);
        if ((connectivity == 6 && order > 1) || (connectivity == 18 && order > 2)) continue;
        out[n][0] = dz, out[n][1] = dy, out[n][2] = dx;
        ++n;
      }
    }
  }
  return n;
}

/// Throws InputError unless the batch has the accumulator's classes and every window lies inside
/// the accumulator's grid.
void check_windows(const WindowBatch& batch, const Accumulator& acc);

/// Throws InputError unless connectivity is 6, 18 or 26 and the grid indexes in int32.
void check_components_input(const Grid& grid, int connectivity);

/// Throws InputError naming the bad value unless samples ≥ 1, 1 ≤ components ≤ length, the
/// matrices are set, n_levels ≥ 1 and the levels strictly ascend within [1, components].
void check_basis(const ResidueBasis& basis);

/// Throws InputError naming the bad value unless the dictionary has entries, its values and a
/// positive finite 1 / 2σ².
void check_dictionary(const DictionaryValues& dictionary);

/// Throws InputError unless the mixture has entries and its gains and offsets.
void check_mixture(const MixtureValues& mixture);

}  // namespace vitruvian::kernels::detail
