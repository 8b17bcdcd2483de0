// Collectives benchmark in the manner of nccl-tests, run under mpirun: for each message size it
// times Vitruvian's communicator and, in the same run on the same buffers, the raw MPI call, and
// reports time, algbw, busbw (nccl-tests' formulas), the wrapper/raw ratio and a result check.
//
//   launch/mpirun.sh -np 2 build/bin/collectives_bench [--min-bytes 8] [--max-bytes 256M]
//       [--ops allreduce,allgather,reduce_scatter,broadcast] [--dtype float32]
//       [--min-iters 10] [--max-iters 200] [--collective-timeout 600 (0: no watchdog)]
//       [--benchmark_out=collectives.json --benchmark_out_format=json]
//
// Every rank runs the same fixed number of iterations; each iteration times raw MPI and the
// communicator back to back (barrier, op, slowest rank's time by MPI_MAX). Rank 0 reports.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "benchmarks/mpi_reporting.h"
#include "core/comm/collective_probe.h"
#include "core/comm/communicator.h"
#include "core/errors.h"
#include "core/logging.h"
#include "core/mpi_env.h"

namespace vitruvian::bench {
namespace {

struct Settings {
  std::int64_t min_bytes = 8;
  std::int64_t max_bytes = 256LL << 20;
  std::vector<std::string> ops = {"allreduce", "allgather", "reduce_scatter", "broadcast"};
  at::ScalarType dtype = at::kFloat;
  int max_iters = 200;
  int min_iters = 10;
  double timeout_s = 600;
};

struct Result {
  double raw_us = 0, vit_us = 0, algbw = 0, busbw = 0;
  std::int64_t count = 0, wrong = 0;
};

const MpiEnvironment* g_env = nullptr;
Communicator* g_comm = nullptr;
Settings g_settings;
std::map<std::pair<std::string, std::int64_t>, Result> g_results;

std::int64_t parse_bytes(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  const std::string unit = end;
  const double scale = unit.empty() || unit == "B" ? 1 : unit == "K" ? 1024 : unit == "M" ? 1 << 20 : unit == "G" ? 1 << 30 : -1;
  if (end == text.c_str() || scale < 0 || value < 0) {
    throw InputError("--min-bytes/--max-bytes", "'" + text + "' is not a size; expected e.g. 8, 64K, 256M, 1G");
  }
  return static_cast<std::int64_t>(value * scale);
}

/// Each iteration times raw MPI and Vitruvian back to back on the same buffers (alternating
/// which goes first), so both see the same machine state; the benchmark's own time is
/// Vitruvian's, raw MPI's is in counters, and the ratio compares medians.
void bench_collective(benchmark::State& state, const std::string& op, std::int64_t bytes) {
  const int n = g_env->size();
  const std::int64_t element = static_cast<std::int64_t>(c10::elementSize(g_settings.dtype));
  const std::int64_t count = std::max<std::int64_t>(bytes / element / n, 1) * n;  // a multiple of n
  CollectiveBuffers buf = make_collective_buffers(*g_comm, op, count, g_settings.dtype);
  for (int i = 0; i < 2; ++i) time_collective_once(*g_comm, buf, true), time_collective_once(*g_comm, buf, false);

  std::vector<double> raw_times, vit_times;
  for (auto _ : state) {
    const bool raw_first = raw_times.size() % 2 == 0;
    double vit = 0;
    if (raw_first) raw_times.push_back(time_collective_once(*g_comm, buf, true));
    vit = time_collective_once(*g_comm, buf, false);
    if (!raw_first) raw_times.push_back(time_collective_once(*g_comm, buf, true));
    vit_times.push_back(vit);
    state.SetIterationTime(vit);
  }
  const double raw_s = median_of(raw_times), vit_s = median_of(vit_times);
  const double size_bytes = static_cast<double>(count * element);
  const double algbw = size_bytes / vit_s / 1e9;
  const std::int64_t wrong = collective_wrong_elements(*g_comm, op, count, g_settings.dtype, true) +
                             collective_wrong_elements(*g_comm, op, count, g_settings.dtype, false);
  state.counters["bytes"] = size_bytes;
  state.counters["algbw_GBps"] = algbw;
  state.counters["busbw_GBps"] = algbw * collective_bus_factor(op, n);
  state.counters["raw_mpi_median_us"] = raw_s * 1e6;
  state.counters["vitruvian_median_us"] = vit_s * 1e6;
  state.counters["vs_raw_mpi"] = raw_s / vit_s;
  state.counters["wrong"] = static_cast<double>(wrong);

  Result& result = g_results[{op, count * element}];
  result = Result{raw_s * 1e6, vit_s * 1e6, algbw, algbw * collective_bus_factor(op, n), count, wrong};
  if (wrong > 0) state.SkipWithError("result check failed");
}

void print_summary() {
  std::printf("\n# %d ranks, dtype %s, time = slowest rank per op, median over iterations\n", g_env->size(),
              dtype_name(g_settings.dtype));
  std::printf("# %-14s %12s %12s %12s %12s %10s %10s %9s %6s\n", "op", "size(B)", "count", "raw MPI(us)",
              "vitruvian(us)", "algbw GB/s", "busbw GB/s", "vit/raw", "wrong");
  double worst = 1e9;
  std::string worst_at;
  for (const auto& [key, r] : g_results) {
    if (r.vit_us <= 0 || r.raw_us <= 0) continue;
    const double ratio = r.raw_us / r.vit_us;
    std::printf("  %-14s %12lld %12lld %12.2f %12.2f %10.3f %10.3f %9.3f %6lld\n", key.first.c_str(),
                static_cast<long long>(key.second), static_cast<long long>(r.count), r.raw_us, r.vit_us, r.algbw,
                r.busbw, ratio, static_cast<long long>(r.wrong));
    if (key.second >= (1 << 20) && ratio < worst) worst = ratio, worst_at = key.first + " " + std::to_string(key.second) + " B";
  }
  if (!worst_at.empty()) {
    std::printf("# target: vitruvian >= 0.9 x raw MPI speed at >= 1 MiB: %s (lowest %.3f, %s)\n",
                worst >= 0.9 ? "met" : "NOT met", worst, worst_at.c_str());
  }
}

}  // namespace
}  // namespace vitruvian::bench

int main(int argc, char** argv) {
  using namespace vitruvian;
  using namespace vitruvian::bench;
  MpiEnvironment env(&argc, &argv);
  g_env = &env;
  init_logging({"warn", false}, env.rank(), env.size(), env.host());
  at::set_num_threads(1);

  // Our flags first; the rest goes to Google Benchmark. Only rank 0 writes --benchmark_out.
  std::vector<char*> rest = {argv[0]};
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw InputError(arg, "expects a value");
        return argv[++i];
      };
      if (arg == "--min-bytes") {
        g_settings.min_bytes = parse_bytes(value());
      } else if (arg == "--max-bytes") {
        g_settings.max_bytes = parse_bytes(value());
      } else if (arg == "--collective-timeout") {
        g_settings.timeout_s = std::stod(value());
      } else if (arg == "--min-iters") {
        g_settings.min_iters = std::max(1, std::stoi(value()));
        g_settings.max_iters = std::max(g_settings.max_iters, g_settings.min_iters);
      } else if (arg == "--max-iters") {
        g_settings.max_iters = std::max(1, std::stoi(value()));
        g_settings.min_iters = std::min(g_settings.min_iters, g_settings.max_iters);
      } else if (arg == "--dtype") {
        const std::string name = value();
        const std::map<std::string, at::ScalarType> types = {
            {"float32", at::kFloat}, {"float64", at::kDouble}, {"int32", at::kInt}, {"int64", at::kLong}};
        if (!types.count(name)) throw InputError("--dtype", "'" + name + "': expected float32, float64, int32 or int64");
        g_settings.dtype = types.at(name);
      } else if (arg == "--ops") {
        g_settings.ops.clear();
        std::string list = value();
        for (size_t start = 0; start <= list.size();) {
          const size_t comma = std::min(list.find(',', start), list.size());
          const std::string op = list.substr(start, comma - start);
          if (op != "allreduce" && op != "allgather" && op != "reduce_scatter" && op != "broadcast") {
            throw InputError("--ops", "'" + op + "': expected allreduce, allgather, reduce_scatter or broadcast");
          }
          g_settings.ops.push_back(op);
          start = comma + 1;
        }
      } else if (env.rank() != 0 && arg.rfind("--benchmark_out", 0) == 0) {
        if (arg.find('=') == std::string::npos) ++i;
      } else {
        rest.push_back(argv[i]);
      }
    }
  } catch (const Error& e) {
    if (env.rank() == 0) std::fprintf(stderr, "collectives_bench: %s\n", e.what());
    return 2;
  }
  int rest_count = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_count, rest.data());

  auto comm = make_communicator(env.world(), c10::Device(c10::kCPU), CommunicatorOptions().timeout_s(g_settings.timeout_s));
  g_comm = comm.get();

  for (const std::string& op : g_settings.ops) {
    for (std::int64_t bytes = g_settings.min_bytes; bytes <= g_settings.max_bytes; bytes *= 2) {
      // Same iteration count on every rank: ~64 MiB moved per measurement, within [min, max].
      const auto iterations = static_cast<benchmark::IterationCount>(
          std::clamp<std::int64_t>((64LL << 20) / std::max<std::int64_t>(bytes, 1), g_settings.min_iters, g_settings.max_iters));
      const std::string name = op + "/" + std::to_string(bytes);
      benchmark::RegisterBenchmark(name.c_str(), [op, bytes](benchmark::State& s) { bench_collective(s, op, bytes); })
          ->Iterations(iterations)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }

  run_benchmarks_reporting_on_rank0(env.rank());
  if (env.rank() == 0) print_summary();
  benchmark::Shutdown();
  g_comm = nullptr;
  return 0;
}
