// The pipeline's kernels against the equivalent sequence of LibTorch ops, in one run:
//   kernels_bench [--size N] [--classes K] [--window W] [--benchmark_filter=...]
// Benchmarks are named <kernel>/<implementation>: `cpu` (our kernel, one thread), `torch_cpu`
// (LibTorch ops, one thread), and on a GPU `cuda` (our kernel) and `torch_cuda` (LibTorch ops;
// a CUDA LibTorch only), timed with CUDA events (manual time). Counters: bytes_per_second (the
// kernel's least traffic: every input read once, every output written once), voxels_per_s
// (curves_per_s for the deconvolution, at T = 30 and 40 frames), and
// on CUDA copy_fraction: bytes_per_second over the device-to-device copy bandwidth measured in
// the same run (copy/cuda). benchmarks/kernels_report.py turns the JSON into the table of
// docs/PERFORMANCE.md. Every implementation's result is checked against the CPU kernel once.
// Volumes: N³ (default 128, CPU; use 256 on a GPU), K classes (4), windows W³ (64; 128 on a GPU),
// N³ / 32 perfusion curves.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/kernels/dispatch.h"
#include "core/kernels/kernels.h"
#include "core/kernels/kernels_cuda.h"
#include "tests/core/perfusion_curves.h"

#ifdef VITRUVIAN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace vitruvian::bench {
namespace {

using kernels::Scalar;

struct Settings {
  std::int64_t size = 128, classes = 4, window = 64;
} g;

/// Inputs shared by every implementation of a kernel (CPU tensors; copied to a device as needed).
struct Inputs {
  at::Tensor hu;          // int16 [N, N, N], CT-like
  at::Tensor labels;      // uint8 [N, N, N], organ-like regions in `classes` labels
  at::Tensor mask;        // uint8 [N, N, N], blobs
  at::Tensor band;        // float32 [K, W, N, N]: an accumulator band one window deep
  at::Tensor weight;      // float32 [W, N, N]
  at::Tensor logits;      // float32 [2, K, W, W, W]: a batch of windows
  at::Tensor importance;  // float32 [W, W, W]
  std::vector<std::int64_t> origins;  // the batch's first voxels in the band
};

const Inputs& inputs() {
  static const Inputs in = [] {
    torch::manual_seed(0);
    const std::int64_t n = g.size, k = g.classes, w = std::min(g.window, g.size);
    Inputs i;
    // Smooth random fields (noise upsampled): regions and blobs rather than salt and pepper.
    const auto smooth = [n](std::int64_t coarse) {
      return at::upsample_trilinear3d(torch::randn({1, 1, coarse, coarse, coarse}), {n, n, n}, false).view({n, n, n});
    };
    i.hu = (smooth(8) * 400 + 40).clamp(-1024, 3071).to(at::kShort);
    i.labels = ((smooth(6) + 1.5) * static_cast<double>(k) / 3).clamp(0, static_cast<double>(k - 1)).to(at::kByte);
    i.mask = (smooth(12) > 0.8).to(at::kByte);
    i.band = torch::randn({k, w, n, n});
    i.weight = torch::rand({w, n, n}) + 0.1;
    i.logits = torch::randn({2, k, w, w, w});
    i.importance = torch::rand({w, w, w}) + 1e-3;
    i.origins = {0, 0, 0, 0, 0, n - w};
    return i;
  }();
  return in;
}

std::int64_t voxels() { return g.size * g.size * g.size; }
std::int64_t window_voxels() { return 2 * std::min(g.window, g.size) * std::min(g.window, g.size) * std::min(g.window, g.size); }

/// The LibTorch op sequence equivalent to each kernel, on the inputs' device.
namespace torch_ops {

void accumulate(const at::Tensor& logits, const at::Tensor& importance, const std::vector<std::int64_t>& origins,
                at::Tensor& band, at::Tensor& weight) {
  const std::int64_t w = importance.size(0);
  for (std::int64_t b = 0; b < logits.size(0); ++b) {
    const std::int64_t* o = &origins[static_cast<std::size_t>(3 * b)];
    band.slice(1, o[0], o[0] + w).slice(2, o[1], o[1] + w).slice(3, o[2], o[2] + w).add_(logits[b] * importance);
    weight.slice(0, o[0], o[0] + w).slice(1, o[1], o[1] + w).slice(2, o[2], o[2] + w).add_(importance);
  }
}

at::Tensor normalize(const at::Tensor& hu) { return hu.to(at::kFloat).clamp(-200, 1500).sub_(40).div_(350); }

/// Trilinear resampling by 0.8 per axis through affine_grid + grid_sample (align_corners).
at::Tensor resample(const at::Tensor& image, std::int64_t out) {
  const at::Tensor theta = at::eye(3, 4, image.options().dtype(at::kFloat)).unsqueeze(0);
  const at::Tensor grid = at::affine_grid_generator(theta, {1, 1, out, out, out}, true);
  return at::grid_sampler(image.to(at::kFloat).view({1, 1, image.size(0), image.size(1), image.size(2)}), grid, 0, 1, true)
      .view({out, out, out});
}

std::pair<at::Tensor, at::Tensor> softmax_argmax(const at::Tensor& band, const at::Tensor& weight) {
  const auto [prob, label] = (band / weight).softmax(0).max(0);
  return {label.to(at::kByte), prob};
}

/// Count, sums, box per label: bincounts and scatter_reduce over coordinates.
at::Tensor label_stats(const at::Tensor& labels, const at::Tensor& image, std::int64_t k) {
  const at::Tensor l = labels.flatten().to(at::kLong);
  const at::Tensor v = image.flatten().to(at::kDouble);
  std::vector<at::Tensor> parts{at::bincount(l, {}, k).to(at::kDouble), at::bincount(l, v, k), at::bincount(l, v * v, k)};
  for (int a = 0; a < 3; ++a) {
    std::vector<std::int64_t> shape{1, 1, 1};
    shape[static_cast<std::size_t>(a)] = labels.size(a);
    const at::Tensor coord = at::arange(labels.size(a), l.options()).view(shape).expand(labels.sizes()).flatten();
    parts.push_back(at::full({k}, labels.numel(), l.options()).scatter_reduce(0, l, coord, "amin").to(at::kDouble));
    parts.push_back(at::full({k}, -1, l.options()).scatter_reduce(0, l, coord, "amax").to(at::kDouble));
  }
  return at::stack(parts);
}

/// Connected components (26) as in PyTorch-only code: every voxel takes the largest index around
/// it (3³ max pooling) until nothing changes; roots then are the largest index, not the first.
at::Tensor components(const at::Tensor& mask) {
  const at::Tensor m = mask.to(at::kFloat).unsqueeze(0).unsqueeze(0);
  at::Tensor label = (at::arange(1, mask.numel() + 1, m.options()).view(m.sizes())) * m;
  while (true) {
    const at::Tensor next = at::max_pool3d(label, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}) * m;
    if (at::equal(next, label)) break;
    label = next;
  }
  return label.view(mask.sizes());
}

}  // namespace torch_ops

/// Wall-clock timing of one CPU call per iteration.
template <typename F>
void time_cpu(benchmark::State& state, F run) {
  run();  // warm-up
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    run();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

/// bytes_per_second and voxels_per_s (per iteration: `bytes` moved, `vox` voxels), and on a GPU
/// (`gpu`) copy_fraction, the share of the measured copy bandwidth.
void set_counters(benchmark::State& state, double bytes, std::int64_t vox, bool gpu = false);
/// set_counters() without voxels, and curves_per_s: `curves` curves (rows) per iteration.
void set_curve_counters(benchmark::State& state, double bytes, std::int64_t curves, bool gpu = false);

#ifdef VITRUVIAN_WITH_CUDA

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", call, cudaGetErrorString(status)));
}

/// A device copy of a CPU tensor's bytes (or `bytes` of uninitialised memory).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) { check_cuda(cudaMalloc(&data_, bytes), "cudaMalloc"); }
  explicit DeviceBuffer(const at::Tensor& t) : DeviceBuffer(static_cast<std::size_t>(t.nbytes())) {
    const at::Tensor c = t.contiguous();
    check_cuda(cudaMemcpy(data_, c.data_ptr(), bytes_, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* get() const { return static_cast<T*>(data_); }
  /// The bytes back, as a CPU tensor shaped like `like`.
  at::Tensor to_host(const at::Tensor& like) const {
    at::Tensor out = at::empty_like(like).contiguous();
    check_cuda(cudaMemcpy(out.data_ptr(), data_, static_cast<std::size_t>(out.nbytes()), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return out;
  }

 private:
  void* data_ = nullptr;
  std::size_t bytes_;
};

/// CUDA-event timing of one call per iteration on the default stream.
template <typename F>
void time_cuda(benchmark::State& state, F run) {
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  run();  // warm-up
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
    run();
    check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

/// Device-to-device copy bandwidth (bytes read + written per second) of 1 GiB, best of 20.
double copy_bandwidth() {
  static const double bandwidth = [] {
    const std::size_t bytes = std::size_t{1} << 30;
    DeviceBuffer a(bytes), b(bytes);
    cudaEvent_t start, stop;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    float best = 1e30f;
    for (int i = 0; i < 20; ++i) {
      check_cuda(cudaEventRecord(start, nullptr), "cudaEventRecord");
      check_cuda(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr), "cudaMemcpyAsync");
      check_cuda(cudaEventRecord(stop, nullptr), "cudaEventRecord");
      check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float ms = 0;
      check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      best = std::min(best, ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * static_cast<double>(bytes) / (best / 1e3);
  }();
  return bandwidth;
}

bool skip_without_gpu(benchmark::State& state) {
  if (kernels::cuda::device_count() > 0) return false;
  state.SkipWithError("no CUDA device");
  return true;
}

void BM_Copy_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const std::size_t bytes = std::size_t{1} << 30;
  DeviceBuffer a(bytes), b(bytes);
  time_cuda(state, [&] { check_cuda(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr), "copy"); });
  set_counters(state, 2.0 * static_cast<double>(bytes), 0, true);
  state.counters["copy_bandwidth"] = copy_bandwidth();
}
BENCHMARK(BM_Copy_Cuda)->Name("copy/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

#endif  // VITRUVIAN_WITH_CUDA

void set_counters(benchmark::State& state, double bytes, std::int64_t vox, bool gpu) {
  const double it = static_cast<double>(state.iterations());
  state.counters["bytes_per_second"] = benchmark::Counter(bytes * it, benchmark::Counter::kIsRate);
  if (vox > 0) state.counters["voxels_per_s"] = benchmark::Counter(static_cast<double>(vox) * it, benchmark::Counter::kIsRate);
#ifdef VITRUVIAN_WITH_CUDA
  if (gpu) state.counters["copy_fraction"] = benchmark::Counter(bytes * it / copy_bandwidth(), benchmark::Counter::kIsRate);
#else
  (void)gpu;
#endif
}

void set_curve_counters(benchmark::State& state, double bytes, std::int64_t curves, bool gpu) {
  set_counters(state, bytes, 0, gpu);
  state.counters["curves_per_s"] = benchmark::Counter(
      static_cast<double>(curves) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void fail_unless(benchmark::State& state, bool ok, const char* what) {
  if (!ok) state.SkipWithError(what);
}

// ---- 1. window accumulation -------------------------------------------------------------

double accumulate_bytes() {
  const double v = static_cast<double>(window_voxels()), k = static_cast<double>(g.classes);
  return v * (k * 4 + 4 + 2 * k * 4 + 2 * 4);  // logits, importance, band read + write, weight read + write
}

void BM_Accumulate(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  at::Tensor band = in.band.clone(), weight = in.weight.clone();
  const auto ours = [&] { kernels::accumulate_windows(in.logits, in.importance, in.origins.data(), band, weight); };
  const auto theirs = [&] { torch_ops::accumulate(in.logits, in.importance, in.origins, band, weight); };
  time_cpu(state, [&] { use_torch ? theirs() : ours(); });
  set_counters(state, accumulate_bytes(), window_voxels());
}

// ---- 2. normalisation --------------------------------------------------------------------

void BM_Normalize(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  const kernels::Normalization norm{-200, 1500, 40, 350};
  at::Tensor out;
  time_cpu(state, [&] { out = use_torch ? torch_ops::normalize(in.hu) : kernels::normalize(in.hu, norm); });
  fail_unless(state, at::allclose(out, torch_ops::normalize(in.hu)), "results differ");
  set_counters(state, static_cast<double>(voxels()) * (2 + 4), voxels());
}

// ---- 3. resampling -----------------------------------------------------------------------

std::int64_t resampled_size() { return g.size * 4 / 5; }

kernels::IndexMap resample_map() {
  // Output index → source index: the align-corners map of the LibTorch sequence.
  kernels::IndexMap map;
  const double scale = static_cast<double>(g.size - 1) / static_cast<double>(resampled_size() - 1);
  map.a[0] = map.a[4] = map.a[8] = scale;
  return map;
}

void BM_Resample(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  const std::int64_t m = resampled_size();
  at::Tensor out = at::empty({m, m, m}, at::kFloat);
  time_cpu(state, [&] {
    if (use_torch) {
      out = torch_ops::resample(in.hu, m);
    } else {
      kernels::resample(in.hu, out, resample_map(), {true, false, 0});
    }
  });
  fail_unless(state, at::allclose(out, torch_ops::resample(in.hu, m), 1e-3, 1e-2), "results differ");
  set_counters(state, static_cast<double>(voxels()) * 2 + static_cast<double>(m * m * m) * 4, m * m * m);
}

// ---- 4. softmax-argmax -------------------------------------------------------------------

double argmax_bytes() {
  const double v = static_cast<double>(inputs().weight.numel()), k = static_cast<double>(g.classes);
  return v * (k * 4 + 4 + 1 + 4);  // classes, weight; labels and probability written
}

void BM_SoftmaxArgmax(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  at::Tensor labels, prob;
  time_cpu(state, [&] {
    if (use_torch) {
      std::tie(labels, prob) = torch_ops::softmax_argmax(in.band, in.weight);
    } else {
      labels = kernels::softmax_argmax(in.band, in.weight, at::kByte, &prob);
    }
  });
  fail_unless(state, at::equal(labels, torch_ops::softmax_argmax(in.band, in.weight).first), "labels differ");
  set_counters(state, argmax_bytes(), in.weight.numel());
}

// ---- 5. per-label statistics -------------------------------------------------------------

void BM_LabelStats(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  std::vector<kernels::LabelStats> stats;
  at::Tensor reference;
  time_cpu(state, [&] {
    if (use_torch) {
      reference = torch_ops::label_stats(in.labels, in.hu, g.classes);
    } else {
      stats = kernels::label_stats(in.labels, &in.hu, g.classes);
    }
  });
  if (!use_torch) {
    const at::Tensor expected = torch_ops::label_stats(in.labels, in.hu, g.classes);
    bool ok = true;
    for (std::int64_t l = 0; l < g.classes; ++l) ok = ok && expected[0][l].item<double>() == static_cast<double>(stats[static_cast<std::size_t>(l)].count);
    fail_unless(state, ok, "counts differ");
  }
  set_counters(state, static_cast<double>(voxels()) * (1 + 2), voxels());
}

// ---- 6. connected components -------------------------------------------------------------

void BM_Components(benchmark::State& state, bool use_torch) {
  const Inputs& in = inputs();
  at::Tensor roots;
  time_cpu(state, [&] { roots = use_torch ? torch_ops::components(in.mask) : kernels::connected_roots(in.mask, 26); });
  // Same partition: the component of every voxel's root is the same under both numberings.
  if (!use_torch) {
    const at::Tensor other = torch_ops::components(in.mask);
    const at::Tensor fg = in.mask.to(at::kBool);
    const at::Tensor mine = roots.masked_select(fg).to(at::kLong), theirs = other.masked_select(fg).to(at::kLong);
    const auto distinct = [](const at::Tensor& t) { return std::get<0>(at::_unique(t)).numel(); };
    const std::int64_t pairs = distinct(mine * (voxels() + 1) + theirs);
    fail_unless(state, pairs == distinct(mine) && pairs == distinct(theirs), "partitions differ");
  }
  set_counters(state, static_cast<double>(voxels()) * (1 + 4), voxels());
}

// ---- 7. deconvolution of perfusion curves ------------------------------------------------

/// A CT perfusion case of T frames (Δt 1.5 s): the block-circulant oSVD basis of a gamma-variate
/// input (K = L = 2T), the levels with s ≥ 2 % of s_max, and N³ / 32 tissue curves (2^16 at the
/// default size; brain voxels are about that share of a head CT's) with 3 HU of noise.
struct PerfusionInputs {
  at::Tensor curves, analysis, synthesis;
  std::vector<std::int32_t> levels;
};

const PerfusionInputs& perfusion_inputs(std::int64_t samples) {
  static std::map<std::int64_t, PerfusionInputs> cache;
  auto [it, fresh] = cache.try_emplace(samples);
  if (!fresh) return it->second;
  torch::manual_seed(samples);
  const double dt = 1.5;
  const at::Tensor aif = kernels::testing::gamma_variate_aif(samples, dt);
  const auto basis = kernels::testing::circulant_basis(aif, dt);
  const std::int64_t n = std::max<std::int64_t>(256, g.size * g.size * g.size / 32 / 256 * 256);
  const at::Tensor base = kernels::testing::random_tissue(aif, dt, 256, 0.0);
  it->second.curves = (base.repeat({n / 256, 1}) + 3.0 * torch::randn({n, samples})).contiguous();
  it->second.analysis = basis.analysis;
  it->second.synthesis = basis.synthesis;
  it->second.levels = kernels::testing::levels_above(basis.singular, 0.02);
  return it->second;
}

namespace torch_ops {

/// The same search as LibTorch ops on all curves at once: each level's residues as a matrix
/// product, OI per curve, the first level within the limit kept.
kernels::Deconvolved deconvolve(const PerfusionInputs& p, double limit) {
  const at::Tensor z = p.curves.matmul(p.analysis.t());
  const std::int64_t n = p.curves.size(0), length = p.synthesis.size(1);
  at::Tensor kept = at::zeros({n, length}), level = at::zeros({n}, at::kInt), done = at::zeros({n}, at::kBool);
  for (std::size_t i = p.levels.size(); i-- > 0;) {
    const std::int32_t m = p.levels[i];
    const at::Tensor r = z.slice(1, 0, m).matmul(p.synthesis.slice(0, 0, m));
    const at::Tensor second = r.slice(1, 2) - 2 * r.slice(1, 1, -1) + r.slice(1, 0, -2);
    const at::Tensor max_abs = r.abs().amax(1);
    const at::Tensor oi =
        at::where(max_abs > 0, second.abs().sum(1) / (static_cast<double>(length) * max_abs), at::zeros_like(max_abs));
    const at::Tensor take = done.logical_not() & ((oi <= limit) | (i == 0 || limit <= 0));
    kept = at::where(take.unsqueeze(1), r, kept);
    level = at::where(take, at::full({n}, m, at::kInt), level);
    done = done | take;
    if (done.all().item<bool>()) break;
  }
  const auto [peak, at_index] = kept.max(1);
  const at::Tensor inner = (at_index > 0) & (at_index < length - 1);
  const at::Tensor before = kept.gather(1, (at_index - 1).clamp(0, length - 1).unsqueeze(1)).squeeze(1);
  const at::Tensor after = kept.gather(1, (at_index + 1).clamp(0, length - 1).unsqueeze(1)).squeeze(1);
  const at::Tensor curvature = before - 2 * peak + after;
  const at::Tensor shift = at::where(inner & (curvature < 0), 0.5 * (before - after) / curvature, at::zeros_like(peak));
  return {peak, at_index.to(at::kFloat) + shift, level};
}

}  // namespace torch_ops

/// Ours against the LibTorch sequence: the same level for all but a few curves (OI on either side
/// of the limit by rounding), and there the same peak within float rounding.
bool deconvolutions_agree(const kernels::Deconvolved& a, const kernels::Deconvolved& b) {
  const at::Tensor same = a.components == b.components;
  const double share = same.to(at::kDouble).mean().item<double>();
  const at::Tensor pa = a.peak.masked_select(same), pb = b.peak.masked_select(same);
  return share > 0.99 && at::allclose(pa, pb, 1e-3, 1e-6) &&
         a.components.min().item<std::int32_t>() < a.components.max().item<std::int32_t>();
}

void BM_Deconvolve(benchmark::State& state, bool use_torch) {
  const PerfusionInputs& p = perfusion_inputs(state.range(0));
  constexpr double kLimit = 0.095;
  kernels::Deconvolved out;
  time_cpu(state, [&] {
    out = use_torch ? torch_ops::deconvolve(p, kLimit)
                    : kernels::deconvolve_curves(p.curves, p.analysis, p.synthesis, p.levels, kLimit);
  });
  if (!use_torch) {
    fail_unless(state, deconvolutions_agree(out, torch_ops::deconvolve(p, kLimit)), "results differ");
    state.counters["mean_components"] = out.components.to(at::kDouble).mean().item<double>();
  }
  const std::int64_t n = p.curves.size(0);
  set_curve_counters(state, static_cast<double>(n) * static_cast<double>(p.curves.size(1) * 4 + 12), n);
}

/// Kernel 8's inputs: scores of 8 192 curves against a dictionary of `entries` (perfusion's
/// model fit: 1 650), a few sharp best entries among many negative ones.
struct DictionaryInputs {
  at::Tensor scores, scaled, plain;
  at::Tensor share, gain, offset;  ///< kernel 9: per row, and per entry (a fifth left out at 0)
};
const DictionaryInputs& dictionary_inputs(std::int64_t entries) {
  static std::map<std::int64_t, DictionaryInputs> cache;
  auto [it, fresh] = cache.try_emplace(entries);
  if (fresh) {
    torch::manual_seed(8);
    it->second.scores = (torch::randn({8192, entries}) * 3 + torch::linspace(-2, 6, entries).unsqueeze(0)).contiguous();
    it->second.scaled = (torch::rand({2, entries}) * 10 + 0.1).contiguous();
    it->second.plain = torch::linspace(-3, 15, entries);
    it->second.share = torch::randn({8192}) * 3;
    const at::Tensor rho = torch::rand({entries}) * 1.9 - 0.95;
    it->second.gain = torch::where(torch::rand({entries}) > 0.2, 1 / (1 - rho * rho).sqrt(), torch::zeros_like(rho));
    it->second.offset = rho * it->second.gain;
  }
  return it->second;
}
/// Bytes a pass moves: the scores read, and per row 3 floats written (kernel 8), or its share
/// read and 1 float written (kernel 9).
double dictionary_bytes(const DictionaryInputs& d) {
  return static_cast<double>(d.scores.numel()) * 4 + static_cast<double>(d.scores.size(0)) * 12;
}
double mixture_bytes(const DictionaryInputs& d) {
  return static_cast<double>(d.scores.numel()) * 4 + static_cast<double>(d.scores.size(0)) * 8;
}

namespace torch_ops {

/// The same weighted means as LibTorch ops, as the model fit first had them.
at::Tensor dictionary_means(const DictionaryInputs& d, double inverse) {
  const at::Tensor p = d.scores.clamp_min(0);
  at::Tensor w = p.square().sub_(std::get<0>(p.max(1, true)).square()).mul_(inverse).exp_();
  const at::Tensor total = w.sum(1, true);
  const at::Tensor delay = at::matmul(w, d.plain.unsqueeze(1));
  const at::Tensor flow = at::matmul(w.mul_(p), d.scaled.t());
  return at::cat({flow, delay}, 1) / total;
}

/// The best mixture's score as LibTorch ops, as the model fit ran it off the CPU before kernel 9.
at::Tensor best_mixture_scores(const DictionaryInputs& d) {
  return (d.scores * d.gain - d.share.unsqueeze(1) * d.offset).amax(1).clamp_min(0);
}

}  // namespace torch_ops

void BM_DictionaryMeans(benchmark::State& state, bool use_torch) {
  const DictionaryInputs& d = dictionary_inputs(state.range(0));
  constexpr double kInverse = 0.5;
  at::Tensor out;
  time_cpu(state, [&] {
    out = use_torch ? torch_ops::dictionary_means(d, kInverse) : kernels::dictionary_means(d.scores, d.scaled, d.plain, kInverse);
  });
  if (!use_torch) fail_unless(state, at::allclose(out, torch_ops::dictionary_means(d, kInverse), 1e-4, 1e-5), "results differ");
  const std::int64_t n = d.scores.size(0);
  set_curve_counters(state, dictionary_bytes(d), n);
}

void BM_BestMixtureScores(benchmark::State& state, bool use_torch) {
  const DictionaryInputs& d = dictionary_inputs(state.range(0));
  at::Tensor out;
  time_cpu(state, [&] {
    out = use_torch ? torch_ops::best_mixture_scores(d)
                    : kernels::best_mixture_scores(d.scores, d.share, d.gain, d.offset);
  });
  if (!use_torch) fail_unless(state, at::equal(out, torch_ops::best_mixture_scores(d)), "results differ");
  const std::int64_t n = d.scores.size(0);
  set_curve_counters(state, mixture_bytes(d), n);
}

#ifdef VITRUVIAN_WITH_CUDA
// ---- the same kernels on the GPU ---------------------------------------------------------

void BM_Accumulate_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  DeviceBuffer logits(in.logits), importance(in.importance), band(in.band), weight(in.weight);
  kernels::WindowBatch batch{logits.get<float>(), 2, g.classes, in.logits.size(2), in.logits.size(3), in.logits.size(4),
                             in.origins.data()};
  const kernels::Accumulator acc{band.get(), false, g.classes, in.band.stride(0),
                                 kernels::Grid::dense(in.band.size(1), g.size, g.size), weight.get<float>()};
  time_cuda(state, [&] { kernels::cuda::accumulate_windows(batch, importance.get<float>(), acc, nullptr); });
  set_counters(state, accumulate_bytes(), window_voxels(), true);
}
BENCHMARK(BM_Accumulate_Cuda)->Name("accumulate/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Normalize_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  DeviceBuffer hu(in.hu), out(static_cast<std::size_t>(voxels()) * 4);
  const kernels::Normalization norm{-200, 1500, 40, 350};
  time_cuda(state, [&] { kernels::cuda::normalize(hu.get(), Scalar::kInt16, voxels(), norm, out.get<float>(), nullptr); });
  fail_unless(state, at::equal(out.to_host(at::empty({voxels()})), kernels::normalize(in.hu, norm).flatten()), "results differ");
  set_counters(state, static_cast<double>(voxels()) * (2 + 4), voxels(), true);
}
BENCHMARK(BM_Normalize_Cuda)->Name("normalize/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Resample_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  const std::int64_t m = resampled_size();
  DeviceBuffer hu(in.hu), out(static_cast<std::size_t>(m * m * m) * 4);
  const std::int64_t src[3] = {g.size, g.size, g.size}, dst[3] = {m, m, m};
  time_cuda(state, [&] {
    kernels::cuda::resample(hu.get(), Scalar::kInt16, src, out.get(), dst, resample_map(), {true, false, 0}, nullptr);
  });
  at::Tensor expected = at::empty({m, m, m}, at::kFloat);
  kernels::resample(in.hu, expected, resample_map(), {true, false, 0});
  fail_unless(state, at::equal(out.to_host(expected), expected), "results differ");
  set_counters(state, static_cast<double>(voxels()) * 2 + static_cast<double>(m * m * m) * 4, m * m * m, true);
}
BENCHMARK(BM_Resample_Cuda)->Name("resample/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_SoftmaxArgmax_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  DeviceBuffer band(in.band), weight(in.weight), labels(static_cast<std::size_t>(in.weight.numel())),
      prob(static_cast<std::size_t>(in.weight.numel()) * 4);
  const kernels::Accumulator acc{band.get(), false, g.classes, in.band.stride(0),
                                 kernels::Grid::dense(in.band.size(1), g.size, g.size), weight.get<float>()};
  time_cuda(state, [&] { kernels::cuda::softmax_argmax(acc, labels.get(), Scalar::kUInt8, prob.get<float>(), nullptr); });
  const at::Tensor expected = kernels::softmax_argmax(in.band, in.weight, at::kByte);
  fail_unless(state, at::equal(labels.to_host(expected), expected), "labels differ");
  set_counters(state, argmax_bytes(), in.weight.numel(), true);
}
BENCHMARK(BM_SoftmaxArgmax_Cuda)->Name("softmax_argmax/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_LabelStats_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  DeviceBuffer labels(in.labels), hu(in.hu);
  const auto grid = kernels::Grid::dense(g.size, g.size, g.size);
  std::vector<kernels::LabelStats> stats(static_cast<std::size_t>(g.classes));
  time_cuda(state, [&] {
    kernels::cuda::label_stats(labels.get(), Scalar::kUInt8, grid, hu.get(), Scalar::kInt16, g.classes, stats.data(), nullptr);
  });
  const auto expected = kernels::label_stats(in.labels, &in.hu, g.classes);
  bool ok = true;
  for (std::size_t l = 0; l < stats.size(); ++l) ok = ok && stats[l].count == expected[l].count && stats[l].sum == expected[l].sum;
  fail_unless(state, ok, "statistics differ");
  set_counters(state, static_cast<double>(voxels()) * (1 + 2), voxels(), true);
}
BENCHMARK(BM_LabelStats_Cuda)->Name("label_stats/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Components_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  DeviceBuffer mask(in.mask), roots(static_cast<std::size_t>(voxels()) * 4);
  const auto grid = kernels::Grid::dense(g.size, g.size, g.size);
  time_cuda(state, [&] { kernels::cuda::connected_roots(mask.get<std::uint8_t>(), grid, 26, roots.get<std::int32_t>(), nullptr); });
  const at::Tensor expected = kernels::connected_roots(in.mask, 26);
  fail_unless(state, at::equal(roots.to_host(expected), expected), "roots differ");
  set_counters(state, static_cast<double>(voxels()) * (1 + 4), voxels(), true);
}
BENCHMARK(BM_Components_Cuda)->Name("components/cuda")->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_Deconvolve_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const PerfusionInputs& p = perfusion_inputs(state.range(0));
  const std::int64_t n = p.curves.size(0);
  DeviceBuffer curves(p.curves), analysis(p.analysis), synthesis(p.synthesis);
  DeviceBuffer peak(static_cast<std::size_t>(n) * 4), peak_at(static_cast<std::size_t>(n) * 4),
      level(static_cast<std::size_t>(n) * 4);
  kernels::ResidueBasis basis;
  basis.samples = p.analysis.size(1), basis.length = p.synthesis.size(1), basis.components = p.analysis.size(0);
  basis.analysis = analysis.get<float>(), basis.synthesis = synthesis.get<float>();
  basis.levels = p.levels.data(), basis.n_levels = static_cast<std::int64_t>(p.levels.size());
  basis.max_oscillation = 0.095;
  DeviceBuffer workspace(kernels::cuda::deconvolve_workspace_bytes(n, basis));
  const kernels::ResidueOut out{peak.get<float>(), peak_at.get<float>(), level.get<std::int32_t>()};
  time_cuda(state,
            [&] { kernels::cuda::deconvolve_curves(curves.get<float>(), n, basis, out, nullptr, workspace.get()); });
  const kernels::Deconvolved cpu = kernels::deconvolve_curves(p.curves, p.analysis, p.synthesis, p.levels, 0.095);
  fail_unless(state,
              at::equal(peak.to_host(cpu.peak), cpu.peak) && at::equal(peak_at.to_host(cpu.peak_at), cpu.peak_at) &&
                  at::equal(level.to_host(cpu.components), cpu.components),
              "results differ");
  set_curve_counters(state, static_cast<double>(n) * static_cast<double>(p.curves.size(1) * 4 + 12), n, true);
}
BENCHMARK(BM_Deconvolve_Cuda)
    ->Name("deconvolve/cuda")
    ->Arg(30)
    ->Arg(40)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_DictionaryMeans_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const DictionaryInputs& d = dictionary_inputs(state.range(0));
  const std::int64_t n = d.scores.size(0);
  constexpr float kInverse = 0.5f;
  DeviceBuffer scores(d.scores), scaled(d.scaled), plain(d.plain), out(static_cast<std::size_t>(n) * 3 * 4);
  const kernels::DictionaryValues values{d.scores.size(1), scaled.get<float>(), plain.get<float>(), kInverse};
  time_cuda(state, [&] { kernels::cuda::dictionary_means(scores.get<float>(), n, values, out.get<float>(), nullptr); });
  const at::Tensor cpu = kernels::dictionary_means(d.scores, d.scaled, d.plain, kInverse);
  fail_unless(state, at::allclose(out.to_host(cpu), cpu, 1e-5, 1e-5), "results differ");  // expf: a few ulp
  set_curve_counters(state, dictionary_bytes(d), n, true);
}
BENCHMARK(BM_DictionaryMeans_Cuda)
    ->Name("dictionary_means/cuda")
    ->Arg(1650)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_BestMixtureScores_Cuda(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const DictionaryInputs& d = dictionary_inputs(state.range(0));
  const std::int64_t n = d.scores.size(0);
  DeviceBuffer scores(d.scores), share(d.share), gain(d.gain), offset(d.offset), out(static_cast<std::size_t>(n) * 4);
  const kernels::MixtureValues values{d.scores.size(1), gain.get<float>(), offset.get<float>()};
  time_cuda(state, [&] {
    kernels::cuda::best_mixture_scores(scores.get<float>(), share.get<float>(), n, values, out.get<float>(), nullptr);
  });
  const at::Tensor cpu = kernels::best_mixture_scores(d.scores, d.share, d.gain, d.offset);
  fail_unless(state, at::equal(out.to_host(cpu), cpu), "results differ");  // bit for bit
  set_curve_counters(state, mixture_bytes(d), n, true);
}
BENCHMARK(BM_BestMixtureScores_Cuda)
    ->Name("best_mixture_scores/cuda")
    ->Arg(1650)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

#endif  // VITRUVIAN_WITH_CUDA

#ifdef VITRUVIAN_TORCH_CUDA
// ---- the LibTorch op sequences on the GPU (a CUDA LibTorch only) -------------------------

void BM_Torch_Cuda(benchmark::State& state, int which) {
  if (skip_without_gpu(state)) return;
  const Inputs& in = inputs();
  const at::Device cuda(at::kCUDA, 0);
  const at::Tensor hu = in.hu.to(cuda), labels = in.labels.to(cuda), mask = in.mask.to(cuda);
  at::Tensor band = in.band.to(cuda), weight = in.weight.to(cuda);
  const at::Tensor logits = in.logits.to(cuda), importance = in.importance.to(cuda);
  const std::int64_t m = resampled_size();
  switch (which) {
    case 1:
      time_cuda(state, [&] { torch_ops::accumulate(logits, importance, in.origins, band, weight); });
      return set_counters(state, accumulate_bytes(), window_voxels(), true);
    case 2:
      time_cuda(state, [&] { torch_ops::normalize(hu); });
      return set_counters(state, static_cast<double>(voxels()) * 6, voxels(), true);
    case 3:
      time_cuda(state, [&] { torch_ops::resample(hu, m); });
      return set_counters(state, static_cast<double>(voxels()) * 2 + static_cast<double>(m * m * m) * 4, m * m * m, true);
    case 4:
      time_cuda(state, [&] { torch_ops::softmax_argmax(band, weight); });
      return set_counters(state, argmax_bytes(), in.weight.numel(), true);
    case 5:
      time_cuda(state, [&] { torch_ops::label_stats(labels, hu, g.classes); });
      return set_counters(state, static_cast<double>(voxels()) * 3, voxels(), true);
    default:
      time_cuda(state, [&] { torch_ops::components(mask); });
      return set_counters(state, static_cast<double>(voxels()) * 5, voxels(), true);
  }
}
BENCHMARK_CAPTURE(BM_Torch_Cuda, accumulate, 1)->Name("accumulate/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Torch_Cuda, normalize, 2)->Name("normalize/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Torch_Cuda, resample, 3)->Name("resample/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Torch_Cuda, softmax_argmax, 4)->Name("softmax_argmax/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Torch_Cuda, label_stats, 5)->Name("label_stats/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Torch_Cuda, components, 6)->Name("components/torch_cuda")->UseManualTime()->Unit(benchmark::kMillisecond);
#endif  // VITRUVIAN_TORCH_CUDA

#define CPU_PAIR(fn, name)                                                                                        \
  BENCHMARK_CAPTURE(fn, cpu, false)->Name(name "/cpu")->UseManualTime()->Unit(benchmark::kMillisecond);          \
  BENCHMARK_CAPTURE(fn, torch_cpu, true)->Name(name "/torch_cpu")->UseManualTime()->Unit(benchmark::kMillisecond)
CPU_PAIR(BM_Accumulate, "accumulate");
CPU_PAIR(BM_Normalize, "normalize");
CPU_PAIR(BM_Resample, "resample");
CPU_PAIR(BM_SoftmaxArgmax, "softmax_argmax");
CPU_PAIR(BM_LabelStats, "label_stats");
CPU_PAIR(BM_Components, "components");
BENCHMARK_CAPTURE(BM_Deconvolve, cpu, false)->Name("deconvolve/cpu")->Arg(30)->Arg(40)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Deconvolve, torch_cpu, true)->Name("deconvolve/torch_cpu")->Arg(30)->Arg(40)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DictionaryMeans, cpu, false)->Name("dictionary_means/cpu")->Arg(1650)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DictionaryMeans, torch_cpu, true)->Name("dictionary_means/torch_cpu")->Arg(1650)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BestMixtureScores, cpu, false)
    ->Name("best_mixture_scores/cpu")
    ->Arg(1650)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_BestMixtureScores, torch_cpu, true)
    ->Name("best_mixture_scores/torch_cpu")
    ->Arg(1650)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using vitruvian::bench::g;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&](std::int64_t& out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "kernels_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      out = std::atoll(argv[++i]);
      if (out < 1) {
        std::fprintf(stderr, "kernels_bench: %s %s; expected a positive whole number\n", a.c_str(), argv[i]);
        std::exit(2);
      }
    };
    if (a == "--size") {
      value(g.size);
    } else if (a == "--classes") {
      value(g.classes);
    } else if (a == "--window") {
      value(g.window);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (g.size < 8 || g.classes < 2 || g.classes > 256) {
    std::fprintf(stderr, "kernels_bench: --size at least 8 and --classes 2..256 expected\n");
    return 2;
  }
  at::set_num_threads(1);  // CPU implementations on one thread each, as a rank runs them
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
