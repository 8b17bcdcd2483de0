// A whole CT perfusion study analysed in memory (data/perfusion: every step from the baseline to
// the tissue classes; the series is already in memory, so no read), with the per-voxel
// deconvolution on the CPU and, where LibTorch sees a GPU, on it: the per-study GPU figure of
// docs/PERFORMANCE.md. The study is the side-by-side's head (benchmarks/perfusion_side_by_side.sh:
// head-neck, seed 3), drawn once. Built with vitruvian::volumes alone, so the GPU machine's
// compute build has it (benchmarks/gpu/device_check.sh).
//
//   build/bin/perfusion_study_bench [--shape 80,256,256] [--frames 30] [--threads 2]
//                                   [--benchmark_filter=...]
//
// Cases: oSVD and the model fit, each on cpu and cuda (a CUDA case without a device reports an
// error and is skipped). Each case analyses the study once untimed first (the device's first
// launches, the first touch of the maps' memory). Counters: the result's step seconds
// (deconvolution_s, and tmax_deconvolution_s where that key is set, are the part the device
// takes), brain voxels, core and penumbra mL; the label names the device the deconvolution ran on.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/bench_options.h"
#include "core/device.h"
#include "data/perfusion/perfusion.h"
#include "data/phantom.h"

namespace {

namespace data = vitruvian::data;

std::array<std::int64_t, 3> study_shape{80, 256, 256};
int study_frames = 30;
int threads = 2;

/// The head's 4D perfusion series, drawn on first use.
const data::Volume& study_series() {
  static const data::Volume series = [] {
    data::PhantomOptions p;
    p.kind = data::PhantomKind::kHeadNeck;
    p.shape_zyx = study_shape;
    p.perfusion_frames = study_frames;
    p.seed = 3;
    p.threads = threads;
    p.validate();
    return std::move(data::make_phantom_study(p, 0).series_named("perfusion"));
  }();
  return series;
}

void analyse(benchmark::State& state, const std::string& deconvolution, c10::DeviceType type) {
  if (type == c10::kCUDA && vitruvian::cuda_device_count() == 0) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const data::Volume& series = study_series();
  data::PerfusionOptions options;
  options.deconvolution = deconvolution;
  const c10::Device device = type == c10::kCUDA ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  data::PerfusionResult r = data::analyse_perfusion(series, options, "perfusion_study_bench", {}, {}, device);
  for (auto _ : state) r = data::analyse_perfusion(series, options, "perfusion_study_bench", {}, {}, device);
  for (const auto& [step, seconds] : r.timing.items()) state.counters[step] = seconds.get<double>();
  state.counters["brain_voxels"] = static_cast<double>(r.brain_voxels);
  state.counters["core_ml"] = r.triage.core_ml;
  state.counters["penumbra_ml"] = r.triage.penumbra_ml;
  state.SetLabel(r.device);
}

std::array<std::int64_t, 3> parse_shape(const std::string& text) {
  std::array<std::int64_t, 3> shape{};
  std::istringstream in(text);
  char comma = 0;
  if (!(in >> shape[0] >> comma >> shape[1] >> comma >> shape[2]) || !in.eof()) {
    throw std::invalid_argument("--shape '" + text + "': expected Z,Y,X");
  }
  return shape;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  try {
    rest =
        vitruvian::bench::take_bench_options(argc, argv,
                                             {{"--shape", [](const std::string& v) { study_shape = parse_shape(v); }},
                                              {"--frames", [](const std::string& v) { study_frames = std::stoi(v); }},
                                              {"--threads", [](const std::string& v) { threads = std::stoi(v); }}});
  } catch (const std::exception& e) {
    std::cerr << "perfusion_study_bench: " << e.what() << "\n";
    return 2;
  }
  at::set_num_threads(threads);
  for (const char* deconvolution : {"osvd", "model"}) {
    for (const auto& [name, type] : {std::pair{"cpu", c10::kCPU}, std::pair{"cuda", c10::kCUDA}}) {
      benchmark::RegisterBenchmark((std::string("study/") + deconvolution + "/" + name).c_str(), analyse,
                                   std::string(deconvolution), type)
          ->Unit(benchmark::kSecond)
          ->Iterations(3)
          ->UseRealTime();
    }
  }
  int count = static_cast<int>(rest.size());
  benchmark::Initialize(&count, rest.data());
  if (benchmark::ReportUnrecognizedArguments(count, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
