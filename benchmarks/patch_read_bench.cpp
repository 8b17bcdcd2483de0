// Patch reads from the HDF5 store, in the same run as the memcpy bandwidth they are compared with:
// random patches of 64³, 96³ and 128³ from contiguous, chunked (64³), compressed (64³,
// shuffle+deflate-1) and LZ4 (64³, shuffle+LZ4, hdf5-filter-plugin) datasets, whole-volume
// reads, and the training loader's batches/s against its worker count.
//
//   build/bin/patch_read_bench [--dir /tmp/vitruvian_patch_bench] [--size 256]
//       [--benchmark_filter=...] [--benchmark_out=patch_read.json --benchmark_out_format=json]
//
// The datasets are written once into --dir as <layout>_<size>.h5 (a 256³ int16 CT-like volume and its uint8 label
// map, about 48 MB per layout) and then read from the page cache. Counters: MBps (patch bytes
// per second), patches_per_s, of_memcpy (MBps / the memcpy bandwidth measured first).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_options.h"
#include "core/mpi_env.h"
#include "data/loader.h"
#include "data/volume_store.h"

namespace vitruvian::bench {
namespace {

namespace fs = std::filesystem;
using data::StorageOptions;
using data::VolumeStore;

fs::path g_dir = fs::temp_directory_path() / "vitruvian_patch_bench";
std::int64_t g_size = 256;
double g_memcpy_bps = 0;

const char* const kLayouts[] = {"contiguous", "chunked", "compressed", "lz4"};
constexpr int kLayoutCount = 4;

fs::path dataset_path(int layout) { return g_dir / fmt::format("{}_{}.h5", kLayouts[layout], g_size); }

/// A CT-like volume: air outside an ellipsoid body of soft tissue with a brighter organ and
/// noise, so compression sees realistic redundancy.
void write_datasets() {
  fs::create_directories(g_dir);
  const std::int64_t n = g_size;
  const at::Tensor axis = at::linspace(-1.0, 1.0, n);
  const auto grid = at::meshgrid({axis, axis, axis}, "ij");
  const at::Tensor r2 = grid[0].pow(2) / 0.8 + grid[1].pow(2) / 0.6 + grid[2].pow(2) / 0.9;
  const at::Tensor organ = (grid[0] - 0.2).pow(2) + (grid[1] + 0.1).pow(2) + grid[2].pow(2) < 0.1;
  at::manual_seed(0);
  at::Tensor hu = at::where(r2 < 1.0, at::full_like(r2, 40.0), at::full_like(r2, -1000.0));
  hu = at::where(organ, at::full_like(hu, 120.0), hu) + at::randn_like(hu) * 12.0;
  data::Volume image;
  image.type = data::VoxelType::kInt16;
  image.voxels = hu.round().to(at::kShort).contiguous();
  image.modality = "CT";
  data::Volume label;
  label.type = data::VoxelType::kUInt8;
  label.voxels = organ.to(at::kByte).contiguous();
  const StorageOptions layouts[] = {{{0, 0, 0}, 0, true}, {{64, 64, 64}, 0, true}, {{64, 64, 64}, 1, true},
                                    {{64, 64, 64}, 0, true, true}};
  for (int l = 0; l < kLayoutCount; ++l) {
    if (fs::exists(dataset_path(l))) continue;
    data::VolumeWriter writer(dataset_path(l), layouts[l]);
    writer.set_label_table({{1, "organ"}});
    for (int s = 0; s < 2; ++s) {  // two studies, so the loader has something to shard
      const std::string id = "study" + std::to_string(s);
      writer.add_series(id, "ct", image, "bench");
      writer.add_label(id, "organs", "ct", label, "bench");
    }
    writer.commit();
  }
}

void BM_Memcpy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(g_size * g_size * g_size) * 2;
  std::vector<char> source(bytes, 1), target(bytes, 0);
  double seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(target.data(), source.data(), bytes);
    benchmark::DoNotOptimize(target.data());
    benchmark::ClobberMemory();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(s);
    seconds += s;
  }
  g_memcpy_bps = static_cast<double>(bytes) * static_cast<double>(state.iterations()) / seconds;
  state.counters["MBps"] = g_memcpy_bps / 1e6;
}

void report(benchmark::State& state, double bytes, double items, double seconds) {
  state.counters["MBps"] = bytes / seconds / 1e6;
  state.counters["patches_per_s"] = items / seconds;
  if (g_memcpy_bps > 0) state.counters["of_memcpy"] = bytes / seconds / g_memcpy_bps;
}

/// A reader whose decoded-chunk cache holds `cache_mib` MiB (0: none, so every patch decodes every
/// chunk it touches, as over a dataset of many studies where patches rarely share chunks).
data::ReadOptions cache_of(std::int64_t cache_mib) {
  data::ReadOptions options;
  options.chunk_cache_bytes = cache_mib << 20;
  return options;
}

std::string cache_label(std::int64_t cache_mib) {
  return cache_mib == 0 ? "no chunk cache" : "chunk cache " + std::to_string(cache_mib) + "MiB";
}

void BM_PatchRead(benchmark::State& state) {
  const int layout = static_cast<int>(state.range(0));
  const std::int64_t edge = state.range(1);
  const VolumeStore store(dataset_path(layout), cache_of(state.range(2)));
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::int64_t> origin(0, g_size - edge);
  double seconds = 0, bytes = 0;
  for (auto _ : state) {
    const std::array<std::int64_t, 3> start{origin(rng), origin(rng), origin(rng)};
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor patch = store.read_series_region("study0", "ct", start, {edge, edge, edge});
    benchmark::DoNotOptimize(patch.data_ptr());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    seconds += s;
    bytes += static_cast<double>(edge * edge * edge) * 2;
  }
  report(state, bytes, static_cast<double>(state.iterations()), seconds);
  state.SetLabel(std::string(kLayouts[layout]) + ", " + cache_label(state.range(2)));
}

void BM_WholeVolume(benchmark::State& state) {
  const int layout = static_cast<int>(state.range(0));
  const VolumeStore store(dataset_path(layout), cache_of(0));  // every chunk once per read
  double seconds = 0, bytes = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const data::Volume v = store.read_series("study0", "ct");
    benchmark::DoNotOptimize(v.voxels.data_ptr());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s);
    seconds += s;
    bytes += static_cast<double>(v.voxels.numel()) * 2;
  }
  report(state, bytes, static_cast<double>(state.iterations()), seconds);
  state.SetLabel(kLayouts[layout]);
}

/// Batches of 2 × 96³ patches (one CT channel, flips and intensity augmentation) per second.
/// Arguments: layout, workers, chunk cache MiB, direct chunk reads (1) or H5Dread (0).
void BM_Loader(benchmark::State& state) {
  const int layout = static_cast<int>(state.range(0));
  const int workers = static_cast<int>(state.range(1));
  data::ReadOptions read = cache_of(state.range(2));
  read.direct_chunk_reads = state.range(3) != 0;
  auto store = std::make_shared<const VolumeStore>(dataset_path(layout), read);
  data::TaskSpec task;
  task.channels = {"ct"};
  task.label = "organs";
  data::LoaderOptions options;
  options.patch_size = {96, 96, 96};
  options.batch_size = 2;
  options.workers = workers;
  options.queue_depth = 2 * workers;
  options.augment = data::AugmentOptions().flip({0.5, 0.5, 0.5}).intensity_scale(0.15, 0.75, 1.25);
  data::PatchLoader loader(store, task, options);
  loader.next();  // start-up (statistics, class locations) outside the timing
  const double startup_wait = loader.wait_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(loader.next().image.data_ptr());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.counters["batches_per_s"] = static_cast<double>(state.iterations()) / seconds;
  state.counters["consumer_wait_s"] = loader.wait_seconds() - startup_wait;
  state.SetLabel(std::string(kLayouts[layout]) + ", " + cache_label(state.range(2)) +
                 (read.direct_chunk_reads ? "" : ", through H5Dread"));
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using namespace vitruvian::bench;
  std::vector<char*> rest = take_bench_options(argc, argv, {{"--dir", [](const std::string& v) { g_dir = v; }},
                                                           {"--size", [](const std::string& v) { g_size = std::stoll(v); }}});
  at::set_num_threads(1);  // one thread, as a rank runs
  // The allocator settings every Vitruvian job runs with (MpiEnvironment applies them): without
  // them each fresh patch tensor is a new mapping and page faults dominate the read.
  vitruvian::pin_malloc_thresholds();
  write_datasets();
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RegisterBenchmark("memcpy", BM_Memcpy)->UseManualTime();
  for (int layout = 0; layout < kLayoutCount; ++layout) {
    for (const std::int64_t edge : {64, 96, 128}) {
      if (edge > g_size) continue;
      for (const std::int64_t cache_mib : {0, 64}) {
        if (layout == 0 && cache_mib > 0) continue;  // contiguous data has no chunk cache
        benchmark::RegisterBenchmark("patch_read", BM_PatchRead)
            ->Args({layout, edge, cache_mib})
            ->UseManualTime();
      }
    }
    benchmark::RegisterBenchmark("whole_volume", BM_WholeVolume)->Args({layout})->UseManualTime();
  }
  // Without a chunk cache (every patch decodes its chunks: many studies, rarely revisited) and
  // with the default 1 GiB one (the dataset decoded once, then served from memory).
  for (const int layout : {0, 1, 2, 3}) {
    for (const std::int64_t cache_mib : {0, 1024}) {
      if (layout == 0 && cache_mib > 0) continue;
      for (const int workers : {1, 2, 4}) {
        benchmark::RegisterBenchmark("loader", BM_Loader)
            ->Args({layout, workers, cache_mib, 1})
            ->Iterations(30)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  // The same compressed data through H5Dread, whose decompression holds HDF5's global lock.
  for (const int layout : {2, 3}) {
    for (const int workers : {1, 2, 4}) {
      benchmark::RegisterBenchmark("loader", BM_Loader)
          ->Args({layout, workers, 0, 0})
          ->Iterations(30)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
