// The lane layout of the CPU kernels' sums, shared with the CUDA kernels that repeat their order
// of operations: 16 independent float lanes, each block of 1 024 terms carried into double.
#pragma once

#include <cstdint>

namespace vitruvian::kernels {

constexpr int kLanes = 16;
constexpr std::int64_t kLaneBlock = 1024;

}  // namespace vitruvian::kernels
