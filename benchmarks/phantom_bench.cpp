// Phantom generation speed: one study of each kind, generated (and generated and written to an
// HDF5 dataset) at 1 and 2 threads. Target: a 256³ chest-cardiac study (two series + labels) in
// at most 5 s on 2 cores.
//
//   build/bin/phantom_bench [--size 256] [--dir /tmp/vitruvian_phantom_bench]
//       [--benchmark_filter=...] [--benchmark_out=phantom.json --benchmark_out_format=json]
//
// Counters: s_per_study, voxels_per_s (spatial voxels × series frames per second), and for the
// chest-cardiac cases within_5s (1 when the mean time per study is at most 5 s).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "benchmarks/bench_options.h"
#include "core/mpi_env.h"
#include "data/phantom.h"
#include "data/phantom_write.h"
#include "data/volume_store.h"

namespace vitruvian::bench {
namespace {

namespace fs = std::filesystem;
using namespace vitruvian::data;

std::int64_t g_size = 256;
fs::path g_dir = fs::temp_directory_path() / "vitruvian_phantom_bench";

PhantomOptions options_for(PhantomKind kind, int threads) {
  PhantomOptions o;
  o.kind = kind;
  o.shape_zyx = {g_size, g_size, g_size};
  o.framing = PhantomFraming::kCentred;  // the grid is the size the figures name
  o.threads = threads;
  return o;
}

std::int64_t voxels_of(const PhantomStudy& study) {
  std::int64_t n = study.labels.voxels.numel();
  for (const auto& [name, volume] : study.series) n += volume.voxels.numel();
  return n;
}

/// Args: kind index, threads, write (0: generate only, 1: generate and write to HDF5).
void BM_Phantom(benchmark::State& state) {
  const PhantomKind kind = phantom_study_kinds()[static_cast<std::size_t>(state.range(0))];
  const int threads = static_cast<int>(state.range(1));
  const bool write = state.range(2) != 0;
  const PhantomOptions options = options_for(kind, threads);
  std::int64_t index = 0, voxels = 0;
  double seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const PhantomStudy study = make_phantom_study(options, index++);
    if (write) {
      VolumeWriter writer(g_dir / "phantom_bench.h5");
      writer.set_label_table(phantom_label_table(kind));
      write_phantom_study(writer, study);
      writer.commit();
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(elapsed);
    seconds += elapsed;
    voxels += voxels_of(study);
  }
  const double per_study = seconds / static_cast<double>(state.iterations());
  state.counters["s_per_study"] = per_study;
  state.counters["voxels_per_s"] = static_cast<double>(voxels) / seconds;
  if (kind == PhantomKind::kChestCardiac) state.counters["within_5s"] = per_study <= 5.0 ? 1 : 0;
  state.SetLabel(fmt::format("{} {}^3, {} thread(s){}", phantom_kind_name(kind), g_size, threads, write ? ", written" : ""));
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using namespace vitruvian::bench;
  std::vector<char*> rest = take_bench_options(argc, argv, {{"--size", [](const std::string& v) { g_size = std::stoll(v); }},
                                                           {"--dir", [](const std::string& v) { g_dir = v; }}});
  fs::create_directories(g_dir);
  at::set_num_threads(1);
  vitruvian::pin_malloc_thresholds();  // as every Vitruvian job runs
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  const std::int64_t kinds = static_cast<std::int64_t>(vitruvian::data::phantom_study_kinds().size());
  for (const int write : {0, 1}) {
    for (const int threads : {1, 2}) {
      benchmark::RegisterBenchmark("phantom", BM_Phantom)
          ->Args({0, threads, write})
          ->UseManualTime()
          ->Iterations(3)
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (std::int64_t kind = 1; kind < kinds; ++kind) {
    benchmark::RegisterBenchmark("phantom", BM_Phantom)
        ->Args({kind, 2, 0})
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ignored;
  fs::remove(g_dir / "phantom_bench.h5", ignored);
  return 0;
}
