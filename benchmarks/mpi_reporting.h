// Google Benchmark under mpirun: every rank runs the benchmarks (they are collective), only rank
// 0 reports; the others run them into a reporter that prints nothing.
#pragma once

#include <benchmark/benchmark.h>

#include <vector>

namespace vitruvian::bench {

class NullReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

/// Runs the registered benchmarks on every rank, reporting from rank 0 only.
inline void run_benchmarks_reporting_on_rank0(int rank) {
  if (rank == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    NullReporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
}

}  // namespace vitruvian::bench
