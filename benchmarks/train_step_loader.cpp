// The loader against the training step (see train_step_loader.h).
#include "benchmarks/train_step_loader.h"

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <chrono>
#include <memory>

#include "data/loader.h"
#include "data/phantom.h"
#include "data/phantom_write.h"
#include "data/volume_store.h"

namespace vitruvian::bench {
namespace {

namespace fs = std::filesystem;

LoaderBenchShape g_shape;
const MpiEnvironment* g_env = nullptr;
const double* g_step_s = nullptr;

void write_phantoms(const fs::path& dataset) {
  fs::create_directories(dataset.parent_path());
  if (fs::exists(dataset)) return;
  data::PhantomOptions p;
  p.shape_zyx = {96, 96, 96};
  p.framing = data::PhantomFraming::kCentred;
  p.threads = 1;
  data::VolumeWriter writer(dataset);
  writer.set_label_table(data::phantom_label_table(p.kind));
  for (std::int64_t i = 0; i < 6; ++i) {
    data::write_phantom_study(writer, data::make_phantom_study(p, i));
  }
  writer.commit();
}

/// The loader alone (rank 0's share, one worker, nnU-Net augmentation without mirroring) on
/// chest phantoms, against the batches/s the measured step consumes.
void BM_LoaderVsStep(benchmark::State& state) {
  auto store = std::make_shared<const data::VolumeStore>(g_shape.dir / "chest.h5");
  data::TaskSpec task;
  task.channels = {"cta"};
  task.label = "anatomy";
  data::LoaderOptions o;
  o.patch_size = {g_shape.patch, g_shape.patch, g_shape.patch};
  o.batch_size = g_shape.batch;
  o.workers = static_cast<int>(state.range(0));
  o.rank = g_env->rank();
  o.world = g_env->size();
  o.augment = data::AugmentOptions::nnunet_like();
  o.augment.flip({0, 0, 0});
  data::PatchLoader loader(store, task, o);
  for (int warm = 0; warm < 3; ++warm) loader.next();
  std::int64_t batches = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    loader.next();
    ++batches;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rate = static_cast<double>(batches) / seconds;
  const double step_s = *g_step_s;
  state.counters["batches_per_s"] = rate;
  state.counters["step_batches_per_s"] = step_s > 0 ? 1.0 / step_s : 0.0;
  state.counters["loader_over_step"] = step_s > 0 ? rate * step_s : 0.0;
  state.SetLabel(fmt::format("{} worker(s), batch {} of {}^3", o.workers, g_shape.batch, g_shape.patch));
}

}  // namespace

void register_loader_vs_step(const LoaderBenchShape& shape, const MpiEnvironment& env, Communicator& comm,
                             const double* step_s) {
  g_shape = shape;
  g_env = &env;
  g_step_s = step_s;
  if (env.rank() == 0) write_phantoms(shape.dir / "chest.h5");
  comm.barrier();
  for (const int workers : {1, 2}) {
    benchmark::RegisterBenchmark("loader_vs_step", BM_LoaderVsStep)
        ->Arg(workers)
        ->Iterations(20)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace vitruvian::bench
