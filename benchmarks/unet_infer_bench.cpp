// Whole-volume inference throughput of the MLPerf 3D U-Net shape: a plain U-Net of 5 levels,
// 32 → 320 features, on 128³ windows with overlap 0.5 and Gaussian weights, over a 256³ volume
// (KiTS19-sized), through the same sliding_window_labels the campaigns run (windows batched on
// the device, the band stitched there by the kernels, labels back on the host):
//
//   unet_infer_bench [--device auto|cpu|cuda] [--size 256] [--window 128] [--stages 5]
//       [--base 32] [--max 320] [--classes 3] [--batch 2] [--precision fp16|bf16|fp32]
//       [--accumulation fp32|fp16] [--channels-last] [--engine auto|libtorch] [--iterations 5]
//
// --engine auto (the default, as campaigns) runs a CPU fp32 network on the oneDNN engine
// (models/onednn_unet.h) where it applies; libtorch always on LibTorch's ops.
// Counters: volumes_per_s, voxels_per_s, windows_per_s. The first volume (cuDNN autotuning,
// allocator warm-up) is not timed. On a CPU use small settings (the smoke test runs 40³).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "core/device.h"
#include "core/errors.h"
#include "models/onednn_unet.h"
#include "models/precision.h"
#include "models/registry.h"
#include "models/stitcher.h"

namespace vitruvian::bench {
namespace {

struct Settings {
  std::string device = "auto", precision = "fp16", accumulation = "fp32", engine = "auto";
  std::int64_t size = 256, window = 128, base = 32, max = 320, classes = 3, batch = 2, iterations = 5;
  int stages = 5;
  bool channels_last = false;
} g;

void BM_UNetInfer(benchmark::State& state) {
  const c10::Device device = select_device(parse_device_choice(g.device), 0);
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  const models::Precision precision = models::precision_from_name(g.precision, "--precision");
  const models::Accumulation accumulation = models::accumulation_from_name(g.accumulation, "--accumulation");
  torch::manual_seed(0);
  models::ModelConfig config;
  config.stages = g.stages;
  config.base_features = g.base;
  config.max_features = g.max;
  config.deep_supervision = false;
  models::UNet net = models::make_model(config, 1, g.classes);
  net->to(device);
  const bool whole_bf16 = models::whole_bfloat16(precision, device);
  if (whole_bf16) net->to(at::kBFloat16);
  if (g.channels_last) models::to_channels_last_3d(*net);
  net->eval();
  std::unique_ptr<models::OneDnnUNet> onednn;
  std::string why = "--engine libtorch";
  if (g.engine == "auto" && device.is_cpu() && !whole_bf16 && !g.channels_last) onednn = models::OneDnnUNet::create(*net, &why);
  torch::NoGradGuard no_grad;
  const at::Tensor volume = torch::randn({1, g.size, g.size, g.size});
  models::SlidingWindowOptions window;
  window.window = {g.window, g.window, g.window};
  window.overlap = 0.5;
  window.batch = g.batch;
  std::int64_t windows = 0;
  const auto run = [&] {
    return models::sliding_window_labels(
        volume, g.classes,
        [&](const at::Tensor& x) {
          const models::Autocast autocast(precision, device);
          const at::Tensor in = x.to(device, whole_bf16 ? at::kBFloat16 : x.scalar_type());
          if (onednn && onednn->accepts(in)) return onednn->forward(in);
          return net->forward(g.channels_last ? models::channels_last_3d(in) : in)[0];
        },
        window, accumulation, [&](std::int64_t, std::int64_t total) { windows = total; }, device);
  };
  at::Tensor labels = run();  // warm-up: cuDNN autotuning, allocator
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    labels = run();  // ends with the labels copied to the host: the device is done
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (labels.sizes() != at::IntArrayRef({g.size, g.size, g.size}) || labels.max().item<std::int64_t>() >= g.classes) {
    state.SkipWithError("labels of the wrong shape or range");
    return;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["volumes_per_s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
  state.counters["voxels_per_s"] = benchmark::Counter(n * static_cast<double>(volume.numel()), benchmark::Counter::kIsRate);
  state.counters["windows_per_s"] = benchmark::Counter(n * static_cast<double>(windows), benchmark::Counter::kIsRate);
  state.SetLabel(fmt::format("{}, {}^3 volume, {}^3 windows x{}, unet {} levels {}->{}, {} classes, {}, {} band{}, {}",
                             device.str(), g.size, g.window, windows, g.stages, g.base, g.max, g.classes,
                             device.is_cuda() ? g.precision + " autocast" : (whole_bf16 ? "whole-bf16 network" : "fp32"), g.accumulation,
                             g.channels_last ? ", channels-last" : "",
                             onednn ? "oneDNN engine" : (device.is_cpu() ? "LibTorch's ops (" + why + ")" : "LibTorch's ops")));
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using vitruvian::bench::g;
  std::vector<char*> rest{argv[0]};
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw vitruvian::InputError("unet_infer_bench", a + " needs a value");
        return argv[++i];
      };
      const auto number = [&]() {
        const std::string v = next();
        const long long n = std::atoll(v.c_str());
        if (n < 1) throw vitruvian::InputError("unet_infer_bench", a + " " + v + "; expected a positive whole number");
        return static_cast<std::int64_t>(n);
      };
      if (a == "--device") g.device = next();
      else if (a == "--precision") g.precision = next();
      else if (a == "--accumulation") g.accumulation = next();
      else if (a == "--channels-last") g.channels_last = true;
      else if (a == "--engine") g.engine = next();
      else if (a == "--size") g.size = number();
      else if (a == "--window") g.window = number();
      else if (a == "--stages") g.stages = static_cast<int>(number());
      else if (a == "--base") g.base = number();
      else if (a == "--max") g.max = number();
      else if (a == "--classes") g.classes = number();
      else if (a == "--batch") g.batch = number();
      else if (a == "--iterations") g.iterations = number();
      else rest.push_back(argv[i]);
    }
    vitruvian::parse_device_choice(g.device);
    vitruvian::models::precision_from_name(g.precision, "--precision");
    vitruvian::models::accumulation_from_name(g.accumulation, "--accumulation");
    if (g.engine != "auto" && g.engine != "libtorch") {
      throw vitruvian::InputError("unet_infer_bench", "--engine " + g.engine + "; expected auto or libtorch");
    }
  } catch (const vitruvian::Error& e) {
    std::fprintf(stderr, "unet_infer_bench: %s\n", e.what());
    return 2;
  }
  at::set_num_threads(1);  // one thread per rank, as a campaign runs on a CPU
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RegisterBenchmark("unet_infer", vitruvian::bench::BM_UNetInfer)
      ->Iterations(g.iterations)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
