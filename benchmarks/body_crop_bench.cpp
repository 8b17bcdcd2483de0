// The body crop's cost on a scanner-sized study: a chest phantom framed as a scan in a 500 mm
// field of view on a 512 × 512 matrix (0.98 × 0.98 × 2.5 mm, about 30 M voxels), and the steps
// a campaign route runs before its windows: the threshold, data::body_box (threshold + largest
// 6-connected part) and data::crop of the box.
//
//   build/bin/body_crop_bench [--matrix 512] [--benchmark_out=crop.json --benchmark_out_format=json]
//
// Counters: voxels_per_s (voxels of the whole study per second), box_share (the box's share of them).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "benchmarks/bench_options.h"
#include "core/mpi_env.h"
#include "data/phantom.h"
#include "data/preprocess.h"

namespace vitruvian::bench {
namespace {

using namespace vitruvian::data;

std::int64_t g_matrix = 512;

/// The study, made once: chest-cardiac, seed 1000, 500 mm in-plane at matrix g_matrix.
const Volume& framed_ct() {
  static const Volume ct = [] {
    PhantomOptions o;
    o.kind = PhantomKind::kChestCardiac;
    o.seed = 1000;
    o.spacing_xyz = {500.0 / static_cast<double>(g_matrix), 500.0 / static_cast<double>(g_matrix), 2.5};
    o.fov_xyz = {500, 0, 0};
    o.threads = 2;
    return make_phantom_study(o, 0).series.front().second;
  }();
  return ct;
}

/// Arg 0: body_box alone; 1: body_box and the crop of the series.
void BM_BodyCrop(benchmark::State& state) {
  const Volume& ct = framed_ct();
  const bool with_crop = state.range(0) != 0;
  Box box;
  for (auto _ : state) {
    box = body_box(ct.voxels, body_threshold(ct), 0);
    if (with_crop) benchmark::DoNotOptimize(crop(ct, box).voxels.data_ptr());
  }
  const double voxels = static_cast<double>(ct.voxels.numel());
  state.counters["voxels_per_s"] = benchmark::Counter(voxels, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["box_share"] =
      static_cast<double>(box.size_zyx[0] * box.size_zyx[1] * box.size_zyx[2]) / voxels;
  state.SetLabel(fmt::format("{}x{}x{} voxels, {}", ct.voxels.size(0), ct.voxels.size(1), ct.voxels.size(2),
                             with_crop ? "box + crop" : "box"));
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using namespace vitruvian::bench;
  std::vector<char*> rest = take_bench_options(argc, argv, {{"--matrix", [](const std::string& v) { g_matrix = std::stoll(v); }}});
  at::set_num_threads(1);
  vitruvian::pin_malloc_thresholds();  // as every Vitruvian job runs
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  for (const int with_crop : {0, 1}) {
    benchmark::RegisterBenchmark("body_crop", BM_BodyCrop)->Arg(with_crop)->Iterations(3)->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
