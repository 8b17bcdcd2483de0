// Training throughput: Trainer steps of a plain 3D U-Net on a fixed synthetic batch per rank,
// split into forward, backward, optimiser, and total and exposed gradient communication; and
// the patch loader's batches/s on phantoms against what the step consumes. Run on 1 and 2 ranks:
//
//   launch/mpirun.sh -np 2 build/bin/train_step_bench [--patch 48] [--batch 2] [--stages 4]
//       [--base 16] [--steps 10] [--dir /tmp/vitruvian_train_bench] [--device cpu|cuda] [--no-bf16]
//
// On CUDA each rank trains on GPU local_rank, gradients go through NCCL, forward passes run
// under bf16 autocast (unless --no-bf16) and cuDNN autotuning is on.
//
// Counters (rank 0; times are per step, the slowest rank's): voxels_per_s (all ranks' voxels),
// forward_s, backward_s, optimizer_s, comm_total_s, comm_exposed_s, exposed_of_comm; loader:
// batches_per_s, step_batches_per_s, loader_over_step.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "benchmarks/mpi_reporting.h"
#include "benchmarks/train_step_loader.h"
#include "core/comm/communicator.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "models/registry.h"
#include "models/trainer.h"

namespace vitruvian::bench {
namespace {

namespace fs = std::filesystem;

struct Settings {
  std::int64_t patch = 48, batch = 2, steps = 10, base = 16;
  int stages = 4;
  std::string device = "cpu";
  bool bf16 = true;
  fs::path dir = fs::temp_directory_path() / "vitruvian_train_bench";
} g;
const MpiEnvironment* g_env = nullptr;
c10::Device g_device(c10::kCPU);
Communicator* g_comm = nullptr;
double g_step_s = 0;  // the last measured step time (for the loader comparison)

models::UNet make_net(std::int64_t classes) {
  torch::manual_seed(0);
  models::ModelConfig c;
  c.stages = g.stages;
  c.base_features = g.base;
  return models::make_model(c, 1, classes);
}

/// The slowest rank's value (on the communicator's device: NCCL takes CUDA tensors only).
double slowest(double seconds) {
  at::Tensor t = at::tensor({seconds}, at::kDouble).to(g_device);
  g_comm->allreduce(t, ReduceOp::kMax);
  return t.item<double>();
}

void BM_TrainStep(benchmark::State& state) {
  const std::int64_t classes = 4;
  models::TrainerOptions options;
  options.steps = 1000000;
  options.bf16 = g.bf16;
  models::UNet net = make_net(classes);
  net->to(g_device);
  models::Trainer trainer(net, *g_comm, options);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1 + g_env->rank());
  const at::Tensor image = at::randn({g.batch, 1, g.patch, g.patch, g.patch}, gen).to(g_device);
  const at::Tensor target = at::randint(0, classes, {g.batch, g.patch, g.patch, g.patch}, gen, at::kLong).to(g_device);
  for (int warm = 0; warm < 2; ++warm) trainer.step({{image, target}});
  double forward = 0, backward = 0, optimizer = 0, comm_total = 0, exposed = 0, steps_s = 0;
  for (auto _ : state) {
    g_comm->barrier();
    const auto start = std::chrono::steady_clock::now();
    const models::StepResult r = trainer.step({{image, target}});
    const double elapsed = slowest(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    state.SetIterationTime(elapsed);
    steps_s += elapsed;
    forward += slowest(r.forward_s);
    backward += slowest(r.backward_s);
    optimizer += slowest(r.optimizer_s);
    comm_total += slowest(r.comm.total_s);
    exposed += slowest(r.comm.exposed_s);
  }
  const double n = static_cast<double>(state.iterations());
  g_step_s = steps_s / n;
  const double voxels = static_cast<double>(g.batch * g.patch * g.patch * g.patch * g_comm->size());
  state.counters["voxels_per_s"] = voxels / g_step_s;
  state.counters["forward_s"] = forward / n;
  state.counters["backward_s"] = backward / n;
  state.counters["optimizer_s"] = optimizer / n;
  state.counters["comm_total_s"] = comm_total / n;
  state.counters["comm_exposed_s"] = exposed / n;
  state.counters["exposed_of_comm"] = comm_total > 0 ? exposed / comm_total : 0.0;
  state.SetLabel(fmt::format("{} rank(s) on {}, batch {} of {}^3 per rank, unet {} stages base {}{}", g_comm->size(),
                             g_device.str(), g.batch, g.patch, g.stages, g.base,
                             g_device.is_cuda() && g.bf16 ? ", bf16 autocast" : ""));
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using namespace vitruvian;
  using namespace vitruvian::bench;
  MpiEnvironment env(&argc, &argv);
  g_env = &env;
  init_logging({"warn", false}, env.rank(), env.size(), env.host());
  at::set_num_threads(1);  // one thread per rank
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&] { return std::string(argv[++i]); };
    if (arg == "--patch" && i + 1 < argc)
      g.patch = std::stoll(next());
    else if (arg == "--batch" && i + 1 < argc)
      g.batch = std::stoll(next());
    else if (arg == "--steps" && i + 1 < argc)
      g.steps = std::stoll(next());
    else if (arg == "--stages" && i + 1 < argc)
      g.stages = std::stoi(next());
    else if (arg == "--base" && i + 1 < argc)
      g.base = std::stoll(next());
    else if (arg == "--dir" && i + 1 < argc)
      g.dir = next();
    else if (arg == "--device" && i + 1 < argc)
      g.device = next();
    else if (arg == "--no-bf16")
      g.bf16 = false;
    else if (env.rank() != 0 && arg.rfind("--benchmark_out", 0) == 0)
      continue;
    else
      rest.push_back(argv[i]);
  }
  try {
    g_device = select_device(parse_device_choice(g.device), env.local_rank());
  } catch (const vitruvian::Error& e) {
    std::fprintf(stderr, "train_step_bench: %s\n", e.what());
    return 2;
  }
  if (g_device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  auto comm = make_communicator(env.world(), g_device, CommunicatorOptions().timeout_s(600));
  g_comm = comm.get();
  int rest_count = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_count, rest.data());
  benchmark::RegisterBenchmark("train_step", BM_TrainStep)
      ->Iterations(g.steps)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
#ifdef VITRUVIAN_BENCH_LOADER  // built with the data library (VITRUVIAN_PARTS=all)
  register_loader_vs_step({g.patch, g.batch, g.dir}, env, *comm, &g_step_s);
#endif
  run_benchmarks_reporting_on_rank0(env.rank());
  benchmark::Shutdown();
  return 0;
}
