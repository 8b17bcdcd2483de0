// The perfusion curves' in-plane Gaussian (data/perfusion/perfusion_smoothing.h): one thread,
// one [ny, nx] plane at a time, as the curves stage calls it per (slice, frame). The cases are the
// brain's box in plane on the benchmark's studies: 0.94 mm pixels (the side-by-side's default
// 80 × 256 × 256 study, σ 3 mm = 3.2 pixels, 21 taps) and 0.47 mm (the clinical 512 × 512 matrix,
// 6.4 pixels, 41 taps), and the head-neck phantom's 3 mm pixels (7 taps).
//
//   build/bin/perfusion_smoothing_bench [--benchmark_filter=...] [--benchmark_repetitions=3]
//
// Counters: planes_per_s and voxels_per_s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "data/perfusion/perfusion_smoothing.h"
#include "data/perfusion/perfusion_steps.h"

namespace {

using vitruvian::data::perfusion::gaussian_taps;
using vitruvian::data::perfusion::smooth_plane;

/// Arguments: ny, nx, σ in hundredths of a pixel.
void smooth(benchmark::State& state) {
  const std::int64_t ny = state.range(0), nx = state.range(1);
  const std::vector<float> taps = gaussian_taps(static_cast<double>(state.range(2)) / 100);
  std::vector<float> source(static_cast<std::size_t>(ny * nx)), plane, scratch;
  std::mt19937 random(7);
  std::normal_distribution<float> noise(0, 10);
  for (float& v : source) v = noise(random);
  for (auto _ : state) {
    state.PauseTiming();
    plane = source;
    state.ResumeTiming();
    smooth_plane(plane.data(), ny, nx, taps, taps, scratch);
    benchmark::DoNotOptimize(plane.data());
  }
  state.counters["planes_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["voxels_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * ny * nx), benchmark::Counter::kIsRate);
  state.counters["taps"] = static_cast<double>(taps.size());
}
BENCHMARK(smooth)
    ->ArgNames({"ny", "nx", "sigma_px_x100"})
    ->Args({60, 60, 100})    // head-neck phantom: 3 mm pixels
    ->Args({200, 220, 320})  // 0.94 mm pixels
    ->Args({400, 440, 640})  // 0.47 mm pixels (512 × 512 matrix)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
