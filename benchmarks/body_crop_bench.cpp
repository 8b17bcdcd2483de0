// The body crop's cost on a scanner-sized study: a chest phantom framed as a scan in a 500 mm
// field of view on a 512 × 512 matrix (0.98 × 0.98 × 2.5 mm, about 30 M voxels), and the steps
// a campaign route runs before its windows: data::body_box (the largest 6-connected part above the
// threshold, on runs along x) and data::crop of the box; and, for comparison, the same box from a
// label volume (connected_components), as body_box found it before.
//
//   build/bin/body_crop_bench [--matrix 512] [--benchmark_out=crop.json --benchmark_out_format=json]
//
// Counters: voxels_per_s (voxels of the whole study per second), box_share (the box's share of them).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "benchmarks/bench_options.h"
#include "core/components.h"
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

/// The same box from a label volume, as body_box found it before its runs: the thresholded
/// mask, connected_components (int32 labels), the largest part's extent in one pass.
Box box_by_labels(const Volume& ct) {
  const Components parts = connected_components(ct.voxels.gt(body_threshold(ct)), 6);
  const auto biggest = static_cast<std::int32_t>(std::max_element(parts.sizes.begin(), parts.sizes.end()) - parts.sizes.begin() + 1);
  const std::int64_t Z = parts.labels.size(0), Y = parts.labels.size(1), X = parts.labels.size(2);
  std::array<std::int64_t, 3> low{Z, Y, X}, high{-1, -1, -1};
  const std::int32_t* label = parts.labels.data_ptr<std::int32_t>();
  for (std::int64_t z = 0, i = 0; z < Z; ++z) {
    for (std::int64_t y = 0; y < Y; ++y) {
      for (std::int64_t x = 0; x < X; ++x, ++i) {
        if (label[i] != biggest) continue;
        const std::int64_t at[3] = {z, y, x};
        for (int d = 0; d < 3; ++d) low[d] = std::min(low[d], at[d]), high[d] = std::max(high[d], at[d]);
      }
    }
  }
  Box box;
  for (int d = 0; d < 3; ++d) box.start_zyx[d] = low[d], box.size_zyx[d] = high[d] + 1 - low[d];
  return box;
}

/// Arg 0: body_box alone; 1: body_box and the crop of the series; 2: the box from a label volume.
void BM_BodyCrop(benchmark::State& state) {
  const Volume& ct = framed_ct();
  const bool with_crop = state.range(0) == 1, by_labels = state.range(0) == 2;
  Box box;
  for (auto _ : state) {
    box = by_labels ? box_by_labels(ct) : body_box(ct.voxels, body_threshold(ct), 0);
    if (with_crop) benchmark::DoNotOptimize(crop(ct, box).voxels.data_ptr());
  }
  if (by_labels) {
    const Box runs = body_box(ct.voxels, body_threshold(ct), 0);
    if (box.start_zyx != runs.start_zyx || box.size_zyx != runs.size_zyx) {
      state.SkipWithError("the label volume's box differs from body_box's");
    }
  }
  const double voxels = static_cast<double>(ct.voxels.numel());
  state.counters["voxels_per_s"] = benchmark::Counter(voxels, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["box_share"] =
      static_cast<double>(box.size_zyx[0] * box.size_zyx[1] * box.size_zyx[2]) / voxels;
  state.SetLabel(fmt::format("{}x{}x{} voxels, {}", ct.voxels.size(0), ct.voxels.size(1), ct.voxels.size(2),
                             by_labels ? "box from a label volume" : with_crop ? "box + crop" : "box"));
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
  for (const int variant : {0, 1, 2}) {
    benchmark::RegisterBenchmark("body_crop", BM_BodyCrop)->Arg(variant)->Iterations(3)->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
