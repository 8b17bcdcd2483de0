// What keeping oneDNN's own layout from layer to layer buys on the CPU: the U-Net's 3³
// convolutions (batch 2, fp32, one thread) three ways, in one run:
//   conv/libtorch      at::conv3d on LibTorch's plain NCDHW tensors, as LibTorch's ops run them
//                      (LibTorch reorders input and output to and from oneDNN's layout per call);
//   conv/onednn_plain  oneDNN called directly, plain input and output reordered around the
//                      convolution (the same work, oneDNN's own choice of kernel);
//   conv/onednn_blocked the convolution alone on oneDNN's preferred layouts (format `any`:
//                      channels-last ndhwc for brgconv on AVX-512, nCdhw16c/8c for the older
//                      kernels): what a network pays when activations stay in that layout, as
//                      the oneDNN engine and training ops keep them (models/onednn_unet.h).
//   conv_layout_bench [--benchmark_filter=...]
// Case arguments: input channels, output channels, edge (voxels). Counters: gflops (2·MACs per
// second). Each oneDNN result is checked once against at::conv3d (relative 1e-4 of the largest
// value); a mismatch stops the case with "differ". Built when libdnnl-dev (oneDNN, the library
// Debian's LibTorch itself uses) is installed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "core/mpi_env.h"

namespace vitruvian::bench {
namespace {

constexpr std::int64_t kBatch = 2;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Layer {
  std::int64_t in, out, edge;
  double flops() const { return 2.0 * static_cast<double>(kBatch * out * edge * edge * edge * in * 27); }
};

Layer layer_of(const benchmark::State& state) { return {state.range(0), state.range(1), state.range(2)}; }

void report(benchmark::State& state, const Layer& l) {
  state.counters["gflops"] = benchmark::Counter(l.flops() * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

void BM_LibTorch(benchmark::State& state) {
  const Layer l = layer_of(state);
  const at::Tensor x = at::randn({kBatch, l.in, l.edge, l.edge, l.edge});
  const at::Tensor w = at::randn({l.out, l.in, 3, 3, 3}) * 0.05;
  const at::Tensor b = at::randn({l.out});
  at::Tensor y = at::conv3d(x, w, b, 1, 1);
  for (auto _ : state) {
    y = at::conv3d(x, w, b, 1, 1);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  report(state, l);
}

/// oneDNN directly; `plain` times the reorders from and to NCDHW around the convolution.
void run_onednn(benchmark::State& state, bool plain) {
  const Layer l = layer_of(state);
  const at::Tensor x = at::randn({kBatch, l.in, l.edge, l.edge, l.edge});
  const at::Tensor w = at::randn({l.out, l.in, 3, 3, 3}) * 0.05;
  const at::Tensor b = at::randn({l.out});
  at::Tensor y = at::empty({kBatch, l.out, l.edge, l.edge, l.edge});
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::dims src_dims{kBatch, l.in, l.edge, l.edge, l.edge}, dst_dims{kBatch, l.out, l.edge, l.edge, l.edge},
      w_dims{l.out, l.in, 3, 3, 3}, b_dims{l.out};
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, dnnl::memory::desc(src_dims, dt::f32, tag::any),
      dnnl::memory::desc(w_dims, dt::f32, tag::any), dnnl::memory::desc(b_dims, dt::f32, tag::a),
      dnnl::memory::desc(dst_dims, dt::f32, tag::any), {1, 1, 1}, {1, 1, 1}, {1, 1, 1});
  const dnnl::convolution_forward::primitive_desc pd(desc, engine);
  dnnl::memory user_src({src_dims, dt::f32, tag::ncdhw}, engine, x.data_ptr<float>());
  dnnl::memory user_w({w_dims, dt::f32, tag::oidhw}, engine, w.data_ptr<float>());
  dnnl::memory user_b({b_dims, dt::f32, tag::a}, engine, b.data_ptr<float>());
  dnnl::memory user_dst({dst_dims, dt::f32, tag::ncdhw}, engine, y.data_ptr<float>());
  dnnl::memory src(pd.src_desc(), engine), weights(pd.weights_desc(), engine), dst(pd.dst_desc(), engine);
  dnnl::reorder(user_w, weights).execute(stream, user_w, weights);  // weights once, as a loaded network would
  const dnnl::reorder to_blocked(user_src, src), to_plain(dst, user_dst);
  const dnnl::convolution_forward conv(pd);
  const auto once = [&](bool reorders) {
    if (reorders) to_blocked.execute(stream, user_src, src);
    conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, user_b}, {DNNL_ARG_DST, dst}});
    if (reorders) to_plain.execute(stream, dst, user_dst);
    stream.wait();
  };
  once(true);
  const at::Tensor want = at::conv3d(x, w, b, 1, 1);
  const double scale = std::max(1.0, want.abs().max().item<double>());
  if ((y - want).abs().max().item<double>() > 1e-4 * scale) {
    state.SkipWithError("oneDNN's result differs from at::conv3d");
    return;
  }
  for (auto _ : state) once(plain);
  report(state, l);
  state.SetLabel(pd.impl_info_str());
}

void BM_OneDnnPlain(benchmark::State& state) { run_onednn(state, true); }
void BM_OneDnnBlocked(benchmark::State& state) { run_onednn(state, false); }

// The quickstart U-Net's 3³ layers at 48³ windows: level 0 (16 channels; the decoder's first
// convolution takes 32), level 1 (32 at 24³), level 2 (64 at 12³).
void layers(benchmark::internal::Benchmark* b) {
  b->ArgNames({"in", "out", "edge"})
      ->Args({16, 16, 48})
      ->Args({32, 16, 48})
      ->Args({32, 32, 24})
      ->Args({64, 64, 12})
      ->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_LibTorch)->Name("conv/libtorch")->Apply(layers);
BENCHMARK(BM_OneDnnPlain)->Name("conv/onednn_plain")->Apply(layers);
BENCHMARK(BM_OneDnnBlocked)->Name("conv/onednn_blocked")->Apply(layers);

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  vitruvian::pin_malloc_thresholds();  // as every Vitruvian rank runs
  at::set_num_threads(1);              // one thread, LibTorch's and oneDNN's (one OpenMP runtime)
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
