// CUDA kernels for the pipeline's hot loops. Volumes go row by row (a block row per (z, y), no
// per-voxel division), flat arrays by grid-stride loops; products and sums that the CPU rounds
// separately use __fmul_rn / __fadd_rn (and the double forms) so that nvcc cannot fuse them,
// which keeps results identical to the CPU references.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/kernels/kernels_cuda.h"
#include "core/kernels/lanes.h"
#include "core/kernels/scalar_dispatch.h"

namespace vitruvian::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 4096;  // 1 M threads: enough to fill any current GPU

void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) throw CudaError(call, static_cast<int>(status), cudaGetErrorString(status));
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

/// Blocks for a grid-stride loop over n items.
unsigned blocks_for(std::int64_t n) {
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(blocks, kMaxBlocks)));
}

__device__ __forceinline__ std::int64_t first_item() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t item_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

/// A launch over the rows of a [nz, ny, nx] box: blockIdx.z and blockIdx.y pick the row, threads
/// and blockIdx.x stride along x, so no thread divides to find its voxel (64-bit division costs
/// tens of instructions, as much as a voxel's memory traffic is worth).
struct RowLaunch {
  dim3 grid, block;
  bool empty = false;
};

RowLaunch rows_of(std::int64_t nz, std::int64_t ny, std::int64_t nx) {
  RowLaunch l;
  l.empty = nz <= 0 || ny <= 0 || nx <= 0;
  if (l.empty) return l;
  if (nz > 65535 || ny > 65535) {
    throw InputError("kernels", "a box of " + std::to_string(nz) + " x " + std::to_string(ny) +
                                    " rows; CUDA kernels take at most 65535 along z and y");
  }
  const std::int64_t threads = std::min<std::int64_t>(kThreads, (nx + 31) / 32 * 32);
  l.block = dim3(static_cast<unsigned>(threads));
  l.grid = dim3(static_cast<unsigned>(std::min<std::int64_t>((nx + threads - 1) / threads, 65535)), static_cast<unsigned>(ny),
                static_cast<unsigned>(nz));
  return l;
}

// 1. Window accumulation: one launch per window (windows of a batch overlap; launches on one
// stream run in order, so no atomics and the same summation order as the CPU).
template <bool Half>
__global__ void accumulate_window(const float* __restrict__ logits, const float* __restrict__ importance,
                                  std::int64_t classes, std::int64_t wy, std::int64_t wx, std::int64_t window_voxels,
                                  void* values, std::int64_t class_stride, std::int64_t stride_z, std::int64_t stride_y,
                                  std::int64_t base, float* __restrict__ weight) {
  const std::int64_t y = blockIdx.y, z = blockIdx.z;
  const std::int64_t row_in = (z * wy + y) * wx, row_out = base + z * stride_z + y * stride_y;
  for (std::int64_t x = first_item(); x < wx; x += item_stride()) {
    const std::int64_t v = row_in + x, off = row_out + x;
    const float w = importance[v];
    for (std::int64_t k = 0; k < classes; ++k) {
      const float add = __fmul_rn(logits[k * window_voxels + v], w);
      if constexpr (Half) {
        __half* a = static_cast<__half*>(values) + k * class_stride + off;
        *a = __float2half_rn(__fadd_rn(__half2float(*a), add));
      } else {
        float* a = static_cast<float*>(values) + k * class_stride + off;
        *a = __fadd_rn(*a, add);
      }
    }
    weight[off] = __fadd_rn(weight[off], w);
  }
}

// 2. Normalisation.
template <typename T>
__global__ void normalize_kernel(const T* __restrict__ in, std::int64_t n, float lower, float upper, float mean,
                                 float sd, float* __restrict__ out) {
  for (std::int64_t i = first_item(); i < n; i += item_stride()) {
    float v = static_cast<float>(in[i]);
    v = v < lower ? lower : (v > upper ? upper : v);
    out[i] = __fdiv_rn(__fsub_rn(v, mean), sd);
  }
}

// 3. Resampling: one thread per output voxel, the CPU's arithmetic in double.
struct Sizes {
  std::int64_t n[3], m[3];  // source and output sizes along x, y, z
};

template <typename In, typename Out>
__global__ void resample_kernel(const In* __restrict__ src, Sizes s, IndexMap map, bool linear, bool fill_outside,
                                Out fill, Out* __restrict__ dst) {
  const std::int64_t stride_y = s.n[0], stride_z = s.n[0] * s.n[1];
  const std::int64_t j = blockIdx.y, k = blockIdx.z;
  for (std::int64_t i = first_item(); i < s.m[0]; i += item_stride()) {
    const std::int64_t v = (k * s.m[1] + j) * s.m[0] + i;
    double p[3];
    bool inside = true;
    for (int c = 0; c < 3; ++c) {
      p[c] = __dadd_rn(__dadd_rn(__dadd_rn(__dmul_rn(map.a[c * 3], static_cast<double>(i)),
                                           __dmul_rn(map.a[c * 3 + 1], static_cast<double>(j))),
                                 __dmul_rn(map.a[c * 3 + 2], static_cast<double>(k))),
                       map.t[c]);
      const double half = 0.5 + kBoxTolerance;
      inside = inside && p[c] >= -half && p[c] <= static_cast<double>(s.n[c]) - 1.0 + half;
    }
    if (fill_outside && !inside) {
      dst[v] = fill;
      continue;
    }
    if (!linear) {
      std::int64_t idx[3];
      for (int c = 0; c < 3; ++c) {
        idx[c] = min(max(static_cast<std::int64_t>(floor(__dadd_rn(p[c], 0.5))), std::int64_t{0}), s.n[c] - 1);
      }
      dst[v] = static_cast<Out>(src[idx[2] * stride_z + idx[1] * stride_y + idx[0]]);
      continue;
    }
    std::int64_t lo[3], hi[3];
    double f[3];
    for (int c = 0; c < 3; ++c) {
      const double q = fmin(fmax(p[c], 0.0), static_cast<double>(s.n[c] - 1));
      lo[c] = min(static_cast<std::int64_t>(floor(q)), s.n[c] - 1);
      hi[c] = min(lo[c] + 1, s.n[c] - 1);
      f[c] = __dsub_rn(q, static_cast<double>(lo[c]));
    }
    const auto at = [&](std::int64_t x, std::int64_t y, std::int64_t z) {
      return static_cast<double>(src[z * stride_z + y * stride_y + x]);
    };
    const auto lerp = [](double a, double b, double t) {
      return __dadd_rn(__dmul_rn(a, __dsub_rn(1.0, t)), __dmul_rn(b, t));
    };
    const double c00 = lerp(at(lo[0], lo[1], lo[2]), at(hi[0], lo[1], lo[2]), f[0]);
    const double c10 = lerp(at(lo[0], hi[1], lo[2]), at(hi[0], hi[1], lo[2]), f[0]);
    const double c01 = lerp(at(lo[0], lo[1], hi[2]), at(hi[0], lo[1], hi[2]), f[0]);
    const double c11 = lerp(at(lo[0], hi[1], hi[2]), at(hi[0], hi[1], hi[2]), f[0]);
    dst[v] = static_cast<Out>(lerp(lerp(c00, c10, f[1]), lerp(c01, c11, f[1]), f[2]));
  }
}

// 4. Softmax-argmax: per voxel one pass over the classes (online softmax), no probabilities stored.
template <bool Half, typename L>
__global__ void softmax_argmax_kernel(const void* values, std::int64_t classes, std::int64_t class_stride, Grid g,
                                      const float* __restrict__ weight, L* __restrict__ labels,
                                      float* __restrict__ max_prob) {
  const std::int64_t y = blockIdx.y, z = blockIdx.z;
  for (std::int64_t x = first_item(); x < g.nx; x += item_stride()) {
    const std::int64_t v = (z * g.ny + y) * g.nx + x;
    const std::int64_t off = z * g.stride_z + y * g.stride_y + x;
    const float w = weight[off];
    float best = 0, top = 0, sum = 1;
    std::int32_t arg = 0;
    for (std::int64_t k = 0; k < classes; ++k) {
      float a;
      if constexpr (Half) {
        a = __half2float(static_cast<const __half*>(values)[k * class_stride + off]);
      } else {
        a = static_cast<const float*>(values)[k * class_stride + off];
      }
      const float l = __fdiv_rn(a, w);
      if (k == 0) {
        best = top = l;
        continue;
      }
      if (l > best || (isnan(l) && !isnan(best))) best = l, arg = static_cast<std::int32_t>(k);
      if (l > top) {
        sum = __fadd_rn(__fmul_rn(sum, expf(top - l)), 1.0f);
        top = l;
      } else {
        sum = __fadd_rn(sum, expf(l - top));
      }
    }
    labels[v] = static_cast<L>(arg);
    if (max_prob != nullptr) max_prob[v] = expf(best - top) / sum;
  }
}

// 5. Per-label statistics. Each thread runs through a segment of consecutive voxels keeping the
// statistics of the current run of one label; a run ends in a flush into per-block shared
// arrays (or global ones when there are too many labels), and when a whole warp ends its
// segments on the same label the warp first sums its runs with shuffles: labels come in large
// regions, so atomics are rare and hardly contended.
constexpr int kSegment = 16;
constexpr int kSharedLabels = 128;

struct StatsArrays {  // struct of arrays, n labels each (box and index sums 3 × n, [z, y, x])
  unsigned long long* count;
  double* index_sum;
  int* box_min;
  int* box_max;
  double* sum;
  double* sum_sq;
  double* min;
  double* max;
};

struct Run {
  long long label = -1;  // -1: none
  unsigned long long count = 0;
  double index_sum[3] = {0, 0, 0};
  int box_min[3] = {INT_MAX, INT_MAX, INT_MAX}, box_max[3] = {-1, -1, -1};
  double sum = 0, sum_sq = 0, min = 0, max = 0;
};

__device__ void atomic_min_double(double* address, double value) {
  auto* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long old = *bits;
  while (value < __longlong_as_double(static_cast<long long>(old))) {
    const unsigned long long assumed = old;
    old = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(value)));
    if (old == assumed) break;
  }
}

__device__ void atomic_max_double(double* address, double value) {
  auto* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long old = *bits;
  while (value > __longlong_as_double(static_cast<long long>(old))) {
    const unsigned long long assumed = old;
    old = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(value)));
    if (old == assumed) break;
  }
}

__device__ __forceinline__ void flush(const Run& r, const StatsArrays& s, std::int64_t n, bool image) {
  if (r.count == 0) return;
  const auto l = static_cast<std::int64_t>(r.label);
  atomicAdd(&s.count[l], r.count);
  for (int a = 0; a < 3; ++a) {
    atomicAdd(&s.index_sum[a * n + l], r.index_sum[a]);
    atomicMin(&s.box_min[a * n + l], r.box_min[a]);
    atomicMax(&s.box_max[a * n + l], r.box_max[a]);
  }
  if (!image) return;
  atomicAdd(&s.sum[l], r.sum);
  atomicAdd(&s.sum_sq[l], r.sum_sq);
  atomic_min_double(&s.min[l], r.min);
  atomic_max_double(&s.max[l], r.max);
}

__device__ __forceinline__ void warp_sum(Run& r) {
  for (int offset = 16; offset > 0; offset /= 2) {
    r.count += __shfl_xor_sync(0xffffffffu, r.count, offset);
    for (int a = 0; a < 3; ++a) {
      r.index_sum[a] += __shfl_xor_sync(0xffffffffu, r.index_sum[a], offset);
      r.box_min[a] = min(r.box_min[a], __shfl_xor_sync(0xffffffffu, r.box_min[a], offset));
      r.box_max[a] = max(r.box_max[a], __shfl_xor_sync(0xffffffffu, r.box_max[a], offset));
    }
    r.sum += __shfl_xor_sync(0xffffffffu, r.sum, offset);
    r.sum_sq += __shfl_xor_sync(0xffffffffu, r.sum_sq, offset);
    r.min = fmin(r.min, __shfl_xor_sync(0xffffffffu, r.min, offset));
    r.max = fmax(r.max, __shfl_xor_sync(0xffffffffu, r.max, offset));
  }
}

__device__ void init_arrays(const StatsArrays& s, std::int64_t n, std::int64_t first, std::int64_t stride) {
  for (std::int64_t l = first; l < n; l += stride) {
    s.count[l] = 0;
    for (int a = 0; a < 3; ++a) {
      s.index_sum[a * n + l] = 0;
      s.box_min[a * n + l] = INT_MAX;
      s.box_max[a * n + l] = -1;
    }
    s.sum[l] = 0;
    s.sum_sq[l] = 0;
    s.min[l] = __longlong_as_double(0x7ff0000000000000LL);   // +inf
    s.max[l] = __longlong_as_double(static_cast<long long>(0xfff0000000000000ULL));  // -inf
  }
}

__global__ void init_stats(StatsArrays s, std::int64_t n) { init_arrays(s, n, first_item(), item_stride()); }

template <typename L, typename I>
__global__ void label_stats_kernel(const L* __restrict__ labels, const I* __restrict__ image, Grid g, std::int64_t n,
                                   StatsArrays global, unsigned long long* outside) {
  __shared__ unsigned long long s_count[kSharedLabels];
  __shared__ double s_index_sum[3 * kSharedLabels];
  __shared__ int s_box_min[3 * kSharedLabels], s_box_max[3 * kSharedLabels];
  __shared__ double s_sum[kSharedLabels], s_sum_sq[kSharedLabels], s_min[kSharedLabels], s_max[kSharedLabels];
  const bool shared = n <= kSharedLabels;
  const StatsArrays local{s_count, s_index_sum, s_box_min, s_box_max, s_sum, s_sum_sq, s_min, s_max};
  const StatsArrays target = shared ? local : global;  // by value: no stack frame
  if (shared) init_arrays(local, n, threadIdx.x, blockDim.x);
  __syncthreads();

  const bool has_image = image != nullptr;
  const std::int64_t total = g.nz * g.ny * g.nx;
  const std::int64_t segments = (total + kSegment - 1) / kSegment;
  const int lane = threadIdx.x % 32;
  const std::int64_t warp = first_item() / 32, warps = item_stride() / 32;
  unsigned long long out_of_range = 0;
  for (std::int64_t base = warp * 32; base < segments; base += warps * 32) {
    Run r;
    const std::int64_t seg = base + lane;
    const std::int64_t begin = seg * kSegment, end = min(total, begin + kSegment);
    std::int64_t x = begin % g.nx, y = (begin / g.nx) % g.ny, z = begin / (g.nx * g.ny);
    for (std::int64_t v = begin; v < end; ++v) {
      const auto c = static_cast<long long>(labels[v]);
      if (c < 0 || c >= n) {
        ++out_of_range;
      } else {
        if (c != r.label) {
          flush(r, target, n, has_image);
          r = Run{};
          r.label = c;
        }
        const int p[3] = {static_cast<int>(z), static_cast<int>(y), static_cast<int>(x)};
        ++r.count;
        for (int a = 0; a < 3; ++a) {
          r.index_sum[a] += p[a];
          r.box_min[a] = min(r.box_min[a], p[a]);
          r.box_max[a] = max(r.box_max[a], p[a]);
        }
        if (has_image) {
          const double value = static_cast<double>(image[v]);
          if (r.count == 1) r.min = r.max = value;
          r.sum += value;
          r.sum_sq += value * value;
          r.min = fmin(r.min, value);
          r.max = fmax(r.max, value);
        }
      }
      if (++x == g.nx) {
        x = 0;
        if (++y == g.ny) y = 0, ++z;
      }
    }
    // The whole warp on one label (and every run non-empty): one flush for all 32.
    const long long first = __shfl_sync(0xffffffffu, r.label, 0);
    if (__all_sync(0xffffffffu, r.label == first && r.count > 0)) {
      warp_sum(r);
      if (lane == 0) flush(r, target, n, has_image);
    } else {
      flush(r, target, n, has_image);
    }
  }
  if (out_of_range > 0) atomicAdd(outside, out_of_range);
  if (!shared) return;
  __syncthreads();
  for (std::int64_t l = threadIdx.x; l < n; l += blockDim.x) {
    Run r;
    r.label = l;
    r.count = s_count[l];
    for (int a = 0; a < 3; ++a) {
      r.index_sum[a] = s_index_sum[a * n + l];
      r.box_min[a] = s_box_min[a * n + l];
      r.box_max[a] = s_box_max[a * n + l];
    }
    r.sum = s_sum[l], r.sum_sq = s_sum_sq[l], r.min = s_min[l], r.max = s_max[l];
    flush(r, global, n, has_image);
  }
}

// 6. Connected components: union-find on the voxel indices (each root the smallest index of
// its tree, unions by atomicMin on roots), then full path compression.
__device__ int find_root(const volatile int* parent, int x) {
  int p = parent[x];
  while (p != x) {
    x = p;
    p = parent[x];
  }
  return x;
}

__device__ void unite(int* parent, int a, int b) {
  while (true) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a > b) {
      const int t = a;
      a = b;
      b = t;
    }
    const int old = atomicMin(&parent[b], a);
    if (old == b) return;  // b was a root and now hangs under a
    b = old;               // b gained another parent meanwhile: retry from there
  }
}

__global__ void ccl_init(const std::uint8_t* __restrict__ mask, std::int64_t n, int* __restrict__ parent) {
  for (std::int64_t i = first_item(); i < n; i += item_stride()) parent[i] = mask[i] != 0 ? static_cast<int>(i) : -1;
}

struct Neighbours {
  int count;
  int d[13][3];
};

__global__ void ccl_merge(const std::uint8_t* __restrict__ mask, Grid g, Neighbours nb, int* parent) {
  const std::int64_t y = blockIdx.y, z = blockIdx.z;
  for (std::int64_t x = first_item(); x < g.nx; x += item_stride()) {
    const std::int64_t i = (z * g.ny + y) * g.nx + x;
    if (mask[i] == 0) continue;
    for (int d = 0; d < nb.count; ++d) {
      const std::int64_t zz = z + nb.d[d][0], yy = y + nb.d[d][1], xx = x + nb.d[d][2];
      if (zz < 0 || yy < 0 || yy >= g.ny || xx < 0 || xx >= g.nx) continue;
      const std::int64_t j = (zz * g.ny + yy) * g.nx + xx;
      if (mask[j] != 0) unite(parent, static_cast<int>(i), static_cast<int>(j));
    }
  }
}

// Path compression: every voxel points at its root. Concurrent readers see either the old
// parent or the root, both on the way to the same root.
__global__ void ccl_compress(std::int64_t n, int* parent) {
  for (std::int64_t i = first_item(); i < n; i += item_stride()) {
    if (parent[i] >= 0) static_cast<volatile int*>(parent)[i] = find_root(parent, static_cast<int>(i));
  }
}

__global__ void ccl_output(std::int64_t n, int* parent) {
  for (std::int64_t i = first_item(); i < n; i += item_stride()) parent[i] = parent[i] >= 0 ? parent[i] + 1 : 0;
}

/// Scratch memory: the caller's, or allocated stream-ordered and freed on the same stream
/// however the scope is left.
class Scratch {
 public:
  Scratch(void* given, std::size_t bytes, cudaStream_t stream) : data_(given), stream_(stream) {
    if (data_ != nullptr) return;
    check(cudaMallocAsync(&data_, std::max<std::size_t>(bytes, 1), stream), "cudaMallocAsync");
    owned_ = true;
  }
  ~Scratch() {
    if (owned_) (void)cudaFreeAsync(data_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  unsigned char* get() const { return static_cast<unsigned char*>(data_); }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
  bool owned_ = false;
};

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void accumulate_windows(const WindowBatch& batch, const float* importance, const Accumulator& acc, void* stream) {
  detail::check_windows(batch, acc);
  const std::int64_t window_voxels = batch.wz * batch.wy * batch.wx;
  for (std::int64_t b = 0; b < batch.windows; ++b) {
    const std::int64_t* o = batch.origins + 3 * b;
    const float* logits = batch.logits + b * batch.classes * window_voxels;
    const std::int64_t base = acc.grid.offset(o[0], o[1], o[2]);
    const RowLaunch l = rows_of(batch.wz, batch.wy, batch.wx);
    if (l.empty) return;
    if (acc.half) {
      accumulate_window<true><<<l.grid, l.block, 0, as_stream(stream)>>>(
          logits, importance, acc.classes, batch.wy, batch.wx, window_voxels, acc.values, acc.class_stride,
          acc.grid.stride_z, acc.grid.stride_y, base, acc.weight);
    } else {
      accumulate_window<false><<<l.grid, l.block, 0, as_stream(stream)>>>(
          logits, importance, acc.classes, batch.wy, batch.wx, window_voxels, acc.values, acc.class_stride,
          acc.grid.stride_z, acc.grid.stride_y, base, acc.weight);
    }
    check(cudaGetLastError(), "accumulate_windows");
  }
}

void normalize(const void* in, Scalar type, std::int64_t n, const Normalization& norm, float* out, void* stream) {
  detail::with_real(type, [&](auto tag) {
    using T = decltype(tag);
    normalize_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(in), n, static_cast<float>(norm.lower), static_cast<float>(norm.upper),
        static_cast<float>(norm.mean), static_cast<float>(norm.std), out);
  });
  check(cudaGetLastError(), "normalize");
}

void resample(const void* src, Scalar type, const std::int64_t src_zyx[3], void* dst, const std::int64_t dst_zyx[3],
              const IndexMap& map, const Resampling& how, void* stream) {
  const Sizes sizes{{src_zyx[2], src_zyx[1], src_zyx[0]}, {dst_zyx[2], dst_zyx[1], dst_zyx[0]}};
  const RowLaunch l = rows_of(dst_zyx[0], dst_zyx[1], dst_zyx[2]);
  if (l.empty) return;
  detail::with_real(type, [&](auto tag) {
    using T = decltype(tag);
    if (how.linear) {
      resample_kernel<T, float><<<l.grid, l.block, 0, as_stream(stream)>>>(
          static_cast<const T*>(src), sizes, map, true, how.fill_outside, static_cast<float>(how.fill),
          static_cast<float*>(dst));
    } else {
      resample_kernel<T, T><<<l.grid, l.block, 0, as_stream(stream)>>>(
          static_cast<const T*>(src), sizes, map, false, how.fill_outside, static_cast<T>(how.fill),
          static_cast<T*>(dst));
    }
  });
  check(cudaGetLastError(), "resample");
}

void softmax_argmax(const Accumulator& acc, void* labels, Scalar label_type, float* max_prob, void* stream) {
  const RowLaunch l = rows_of(acc.grid.nz, acc.grid.ny, acc.grid.nx);
  if (l.empty) return;
  detail::with_label(label_type, [&](auto tag) {
    using L = decltype(tag);
    if (acc.half) {
      softmax_argmax_kernel<true, L><<<l.grid, l.block, 0, as_stream(stream)>>>(
          acc.values, acc.classes, acc.class_stride, acc.grid, acc.weight, static_cast<L*>(labels), max_prob);
    } else {
      softmax_argmax_kernel<false, L><<<l.grid, l.block, 0, as_stream(stream)>>>(
          acc.values, acc.classes, acc.class_stride, acc.grid, acc.weight, static_cast<L*>(labels), max_prob);
    }
  });
  check(cudaGetLastError(), "softmax_argmax");
}

std::size_t label_stats_workspace_bytes(std::int64_t n_labels) {
  // 12 slots of n 8-byte values (the int boxes use half of their 3 + 3), then the counter.
  return static_cast<std::size_t>(8 * (12 * std::max<std::int64_t>(n_labels, 1) + 1));
}

std::int64_t label_stats(const void* labels, Scalar label_type, const Grid& grid, const void* image, Scalar image_type,
                         std::int64_t n_labels, LabelStats* out, void* stream, void* workspace) {
  VITRUVIAN_INTERNAL_ASSERT(grid.stride_y == grid.nx && grid.stride_z == grid.nx * grid.ny,
                            "label_stats on CUDA takes dense volumes");
  VITRUVIAN_INTERNAL_ASSERT(grid.nz < INT_MAX && grid.ny < INT_MAX && grid.nx < INT_MAX, "grid too large");
  const cudaStream_t s = as_stream(stream);
  detail::with_label(label_type, [](auto) {});  // types checked before anything is allocated
  if (image != nullptr) detail::with_real(image_type, [](auto) {});
  const std::int64_t n = std::max<std::int64_t>(n_labels, 1);
  const Scratch scratch(workspace, label_stats_workspace_bytes(n_labels), s);
  unsigned char* block = scratch.get();
  StatsArrays arrays{};
  arrays.count = reinterpret_cast<unsigned long long*>(block);
  arrays.index_sum = reinterpret_cast<double*>(block + 8 * n);
  arrays.box_min = reinterpret_cast<int*>(block + 8 * 4 * n);
  arrays.box_max = reinterpret_cast<int*>(block + 8 * 6 * n);
  arrays.sum = reinterpret_cast<double*>(block + 8 * 8 * n);
  arrays.sum_sq = reinterpret_cast<double*>(block + 8 * 9 * n);
  arrays.min = reinterpret_cast<double*>(block + 8 * 10 * n);
  arrays.max = reinterpret_cast<double*>(block + 8 * 11 * n);
  auto* outside = reinterpret_cast<unsigned long long*>(block + 8 * 12 * n);
  init_stats<<<blocks_for(n), kThreads, 0, s>>>(arrays, n);
  check(cudaMemsetAsync(outside, 0, sizeof(unsigned long long), s), "label_stats: cudaMemsetAsync");
  const std::int64_t segments = (grid.voxels() + kSegment - 1) / kSegment;
  detail::with_label(label_type, [&](auto ltag) {
    using L = decltype(ltag);
    const auto launch = [&](const auto* img) {
      label_stats_kernel<<<blocks_for(segments), kThreads, 0, s>>>(static_cast<const L*>(labels), img, grid, n_labels,
                                                                   arrays, outside);
    };
    if (image == nullptr) {
      launch(static_cast<const float*>(nullptr));
    } else {
      detail::with_real(image_type, [&](auto itag) { launch(static_cast<const decltype(itag)*>(image)); });
    }
  });
  check(cudaGetLastError(), "label_stats");
  std::vector<unsigned char> host(static_cast<std::size_t>(8 * 12 * n + 8));
  check(cudaMemcpyAsync(host.data(), block, host.size(), cudaMemcpyDeviceToHost, s), "label_stats: cudaMemcpyAsync");
  check(cudaStreamSynchronize(s), "label_stats: cudaStreamSynchronize");
  const auto* count = reinterpret_cast<const unsigned long long*>(host.data());
  const auto* index_sum = reinterpret_cast<const double*>(host.data() + 8 * n);
  const auto* box_min = reinterpret_cast<const int*>(host.data() + 8 * 4 * n);
  const auto* box_max = reinterpret_cast<const int*>(host.data() + 8 * 6 * n);
  const auto* values = reinterpret_cast<const double*>(host.data() + 8 * 8 * n);  // sum, sum_sq, min, max
  for (std::int64_t l = 0; l < n_labels; ++l) {
    LabelStats& o = out[l];
    o = LabelStats{};
    o.count = static_cast<std::int64_t>(count[l]);
    if (o.count == 0) continue;
    for (int a = 0; a < 3; ++a) {
      o.index_sum[a] = index_sum[a * n + l];
      o.box_min[a] = box_min[a * n + l];
      o.box_max[a] = box_max[a * n + l];
    }
    if (image == nullptr) continue;
    o.sum = values[l], o.sum_sq = values[n + l], o.min = values[2 * n + l], o.max = values[3 * n + l];
  }
  return static_cast<std::int64_t>(*reinterpret_cast<const unsigned long long*>(host.data() + 8 * 12 * n));
}

void connected_roots(const std::uint8_t* mask, const Grid& grid, int connectivity, std::int32_t* roots, void* stream) {
  detail::check_components_input(grid, connectivity);
  VITRUVIAN_INTERNAL_ASSERT(grid.stride_y == grid.nx && grid.stride_z == grid.nx * grid.ny,
                            "connected components on CUDA take dense volumes");
  Neighbours nb{};
  nb.count = detail::backward_neighbours(connectivity, nb.d);
  const cudaStream_t s = as_stream(stream);
  const std::int64_t n = grid.voxels();
  const RowLaunch rows = rows_of(grid.nz, grid.ny, grid.nx);
  if (rows.empty) return;
  ccl_init<<<blocks_for(n), kThreads, 0, s>>>(mask, n, roots);
  ccl_merge<<<rows.grid, rows.block, 0, s>>>(mask, grid, nb, roots);
  ccl_compress<<<blocks_for(n), kThreads, 0, s>>>(n, roots);
  ccl_output<<<blocks_for(n), kThreads, 0, s>>>(n, roots);
  check(cudaGetLastError(), "connected_roots");
}

}  // namespace vitruvian::kernels::cuda

// 7. Deconvolution of curves: one thread per curve (grid-stride), the float operations of the
// CPU's lanes in the same order. Each thread's components z and residue r live in scratch
// memory interleaved across threads (element k of slot j at k · slots + j), so a warp's accesses
// coalesce; the basis rows the search uses go to shared memory when they fit, and every thread
// of a warp reads the same basis element at once (a broadcast).
namespace vitruvian::kernels::cuda {
namespace {

constexpr int kCurveThreads = 128;
constexpr std::int64_t kMaxCurveSlots = std::int64_t{1} << 17;  // threads at once: 1024 blocks

struct DeconvolutionArgs {
  const float* curves;
  std::int64_t n, samples, length, top, n_levels;
  const float* analysis;   // [K, T]
  const float* synthesis;  // [K, L]
  const std::int32_t* levels;  // device
  double max_oscillation;
  bool shared_basis;
  float* scratch;  // z: top × slots, then r: length × slots
  std::int64_t slots;
  ResidueOut out;
};

std::int64_t curve_slots(std::int64_t n) { return std::max<std::int64_t>(1, std::min(n, kMaxCurveSlots)); }

/// z[k] = Σ_t a[k, t] · c[t] for k < top; r[l] = Σ_{k<top} z[k] · s[k, l].
__device__ __forceinline__ void components_and_residue(const DeconvolutionArgs& p, const float* a, const float* s, const float* c, float* z,
                                       float* r) {
  for (std::int64_t k = 0; k < p.top; ++k) {
    float acc = 0.0f;
    for (std::int64_t t = 0; t < p.samples; ++t) acc = __fadd_rn(acc, __fmul_rn(a[k * p.samples + t], c[t]));
    z[k * p.slots] = acc;
  }
  for (std::int64_t l = 0; l < p.length; ++l) {
    float acc = 0.0f;
    for (std::int64_t k = 0; k < p.top; ++k) acc = __fadd_rn(acc, __fmul_rn(z[k * p.slots], s[k * p.length + l]));
    r[l * p.slots] = acc;
  }
}

/// The curve's peak, its index and level when the residue r (of `level` components) is kept:
/// true if it is (OI ≤ limit, or `last`).
__device__ __forceinline__ bool keep_residue(const DeconvolutionArgs& p, const float* r, std::int32_t level, bool last, std::int64_t i) {
  const std::int64_t L = p.length, S = p.slots;
  float peak = r[0], max_abs = fabsf(r[0]), oscillation = 0.0f;
  std::int64_t at = 0;
  for (std::int64_t l = 1; l < L; ++l) {
    const float v = r[l * S], a = fabsf(v);
    if (v > peak) peak = v, at = l;
    max_abs = a > max_abs ? a : max_abs;
  }
  for (std::int64_t l = 2; l < L; ++l) {
    const float second = __fadd_rn(__fsub_rn(r[l * S], __fmul_rn(2.0f, r[(l - 1) * S])), r[(l - 2) * S]);
    oscillation = __fadd_rn(oscillation, fabsf(second));
  }
  if (!last) {
    const float oi = max_abs == 0.0f ? 0.0f : __fdiv_rn(oscillation, __fmul_rn(static_cast<float>(L), max_abs));
    if (!(static_cast<double>(oi) <= p.max_oscillation)) return false;
  }
  float position = static_cast<float>(at);
  if (at > 0 && at < L - 1) {
    const float before = r[(at - 1) * S], here = r[at * S], after = r[(at + 1) * S];
    const float curvature = __fadd_rn(__fsub_rn(before, __fmul_rn(2.0f, here)), after);
    if (curvature < 0.0f) {
      position = __fadd_rn(position, __fdiv_rn(__fmul_rn(0.5f, __fsub_rn(before, after)), curvature));
    }
  }
  p.out.peak[i] = peak;
  p.out.peak_at[i] = position;
  p.out.components[i] = level;
  return true;
}

__global__ void deconvolve_kernel(DeconvolutionArgs p) {
  extern __shared__ float basis[];
  const float* a = p.analysis;
  const float* s = p.synthesis;
  if (p.shared_basis) {
    const std::int64_t na = p.top * p.samples, ns = p.top * p.length;
    for (std::int64_t j = threadIdx.x; j < na; j += blockDim.x) basis[j] = p.analysis[j];
    for (std::int64_t j = threadIdx.x; j < ns; j += blockDim.x) basis[na + j] = p.synthesis[j];
    __syncthreads();
    a = basis;
    s = basis + na;
  }
  const std::int64_t slot = first_item();
  if (slot >= p.slots) return;
  float* z = p.scratch + slot;
  float* r = p.scratch + p.top * p.slots + slot;
  for (std::int64_t i = slot; i < p.n; i += p.slots) {
    components_and_residue(p, a, s, p.curves + i * p.samples, z, r);
    for (std::int64_t level = p.n_levels - 1; level >= 0; --level) {
      if (level < p.n_levels - 1) {
        for (std::int64_t l = 0; l < p.length; ++l) {
          float acc = r[l * p.slots];
          for (std::int64_t k = p.levels[level + 1] - 1; k >= p.levels[level]; --k) {
            acc = __fsub_rn(acc, __fmul_rn(z[k * p.slots], s[k * p.length + l]));
          }
          r[l * p.slots] = acc;
        }
      }
      const bool last = level == 0 || !(p.max_oscillation > 0);
      if (keep_residue(p, r, p.levels[level], last, i)) break;
    }
  }
}

}  // namespace

std::size_t deconvolve_workspace_bytes(std::int64_t n, const ResidueBasis& basis) {
  const std::int64_t top = basis.n_levels > 0 && basis.levels != nullptr ? basis.levels[basis.n_levels - 1] : 0;
  const auto floats = static_cast<std::size_t>(curve_slots(n) * (top + basis.length));
  return floats * sizeof(float) + static_cast<std::size_t>(std::max<std::int64_t>(basis.n_levels, 0)) * sizeof(std::int32_t);
}

void deconvolve_curves(const float* curves, std::int64_t n, const ResidueBasis& basis, const ResidueOut& out, void* stream,
                       void* workspace) {
  detail::check_basis(basis);
  if (n < 0) throw InputError("deconvolve_curves", std::to_string(n) + " curves; expected none or more");
  if (n == 0) return;
  const cudaStream_t st = as_stream(stream);
  DeconvolutionArgs p{};
  p.curves = curves;
  p.n = n, p.samples = basis.samples, p.length = basis.length;
  p.top = basis.levels[basis.n_levels - 1], p.n_levels = basis.n_levels;
  p.analysis = basis.analysis, p.synthesis = basis.synthesis;
  p.max_oscillation = basis.max_oscillation;
  p.slots = curve_slots(n);
  p.out = out;
  const std::size_t bytes = deconvolve_workspace_bytes(n, basis);
  const Scratch scratch(workspace, bytes, st);
  p.scratch = reinterpret_cast<float*>(scratch.get());
  auto* levels = reinterpret_cast<std::int32_t*>(scratch.get() + bytes - static_cast<std::size_t>(basis.n_levels) * sizeof(std::int32_t));
  // From pageable memory: staged before the call returns, so `basis.levels` may go at once.
  check(cudaMemcpyAsync(levels, basis.levels, static_cast<std::size_t>(basis.n_levels) * sizeof(std::int32_t),
                        cudaMemcpyHostToDevice, st),
        "deconvolve_curves: cudaMemcpyAsync");
  p.levels = levels;
  // The basis rows the search uses, in shared memory when the device allows that much per block.
  const auto shared = static_cast<std::size_t>(p.top * (p.samples + p.length)) * sizeof(float);
  int device = 0, limit = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  p.shared_basis = shared <= static_cast<std::size_t>(limit);
  if (p.shared_basis && shared > 48 * 1024) {
    check(cudaFuncSetAttribute(deconvolve_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)),
          "cudaFuncSetAttribute");
  }
  const auto blocks = static_cast<unsigned>((p.slots + kCurveThreads - 1) / kCurveThreads);
  deconvolve_kernel<<<blocks, kCurveThreads, p.shared_basis ? shared : 0, st>>>(p);
  check(cudaGetLastError(), "deconvolve_curves");
}

// Kernel 8: one thread per row, the CPU's order of operations (lane_sums_n's kLanes lanes, blocks
// of kLaneBlock entries carried in double); expf instead of the CPU's polynomial, so results agree
// to a few ulp.
namespace {

__global__ void dictionary_means_kernel(const float* __restrict__ scores, std::int64_t n, DictionaryValues d,
                                        float* __restrict__ out) {
  const std::int64_t K = d.entries;
  for (std::int64_t i = first_item(); i < n; i += item_stride()) {
    const float* s = scores + i * K;
    float best = 0.0f;
    for (std::int64_t k = 0; k < K; ++k) best = fmaxf(best, s[k]);
    const float best_sq = __fmul_rn(best, best);
    double totals[4] = {0, 0, 0, 0};
    const auto term = [&](std::int64_t k, float& w, float& a, float& b, float& c) {
      const float p = s[k] < 0.0f ? 0.0f : s[k];  // the CPU's: a NaN score stays NaN
      const float weight = expf(__fmul_rn(__fsub_rn(__fmul_rn(p, p), best_sq), d.inverse_two_variance));
      const float wp = __fmul_rn(weight, p);
      w = __fadd_rn(w, weight);
      a = __fadd_rn(a, __fmul_rn(wp, d.scaled[k]));
      b = __fadd_rn(b, __fmul_rn(wp, d.scaled[K + k]));
      c = __fadd_rn(c, __fmul_rn(weight, d.plain[k]));
    };
    for (std::int64_t start = 0; start < K; start += kLaneBlock) {
      const std::int64_t end = start + kLaneBlock < K ? start + kLaneBlock : K;
      float w[kLanes] = {}, a[kLanes] = {}, b[kLanes] = {}, c[kLanes] = {};
      std::int64_t k = start;
      for (; k + kLanes <= end; k += kLanes) {
        for (int j = 0; j < kLanes; ++j) term(k + j, w[j], a[j], b[j], c[j]);
      }
      float sw = 0.0f, sa = 0.0f, sb = 0.0f, sc = 0.0f;
      for (int j = 0; j < kLanes; ++j) {
        sw = __fadd_rn(sw, w[j]), sa = __fadd_rn(sa, a[j]), sb = __fadd_rn(sb, b[j]), sc = __fadd_rn(sc, c[j]);
      }
      for (; k < end; ++k) term(k, sw, sa, sb, sc);
      totals[0] += sw, totals[1] += sa, totals[2] += sb, totals[3] += sc;
    }
    for (int j = 0; j < 3; ++j) out[3 * i + j] = static_cast<float>(totals[j + 1] / totals[0]);
  }
}

// Kernel 9: one thread per row, each term's products rounded once as on the CPU (no fused
// multiply-add) and the CPU's `best < x ? x : best`: the same bits, whatever the order.
__global__ void best_mixture_scores_kernel(const float* __restrict__ scores, const float* __restrict__ share,
                                           std::int64_t n, MixtureValues m, float* __restrict__ out) {
  const std::int64_t K = m.entries;
  for (std::int64_t i = first_item(); i < n; i += item_stride()) {
    const float* s = scores + i * K;
    const float h = share[i];
    float best = 0.0f;
    for (std::int64_t k = 0; k < K; ++k) {
      const float x = __fsub_rn(__fmul_rn(s[k], m.gain[k]), __fmul_rn(h, m.offset[k]));
      best = best < x ? x : best;
    }
    out[i] = best;
  }
}

}  // namespace

void dictionary_means(const float* scores, std::int64_t n, const DictionaryValues& d, float* out, void* stream) {
  detail::check_dictionary(d);
  if (n < 0) throw InputError("dictionary_means", std::to_string(n) + " rows; expected none or more");
  if (n == 0) return;
  constexpr int kThreads = 128;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535));
  dictionary_means_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(scores, n, d, out);
  check(cudaGetLastError(), "dictionary_means");
}

void best_mixture_scores(const float* scores, const float* share, std::int64_t n, const MixtureValues& m, float* out,
                         void* stream) {
  detail::check_mixture(m);
  if (n < 0) throw InputError("best_mixture_scores", std::to_string(n) + " rows; expected none or more");
  if (n == 0) return;
  constexpr int kThreads = 128;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 65535));
  best_mixture_scores_kernel<<<blocks, kThreads, 0, as_stream(stream)>>>(scores, share, n, m, out);
  check(cudaGetLastError(), "best_mixture_scores");
}

}  // namespace vitruvian::kernels::cuda
