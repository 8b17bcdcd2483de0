// GoogleTest main for every suite: initializes MPI (a lone process is a 1-rank world), runs the
// tests on every rank, prints rank 0's report plus any other rank's failures tagged with the
// rank, and fails every rank's exit code if any rank failed.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "core/logging.h"
#include "core/mpi_env.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian::testing {
namespace {
MpiEnvironment* g_mpi = nullptr;

/// On ranks other than 0: print failures only, tagged with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(std::string tag) : tag_(std::move(tag)) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[%s] %s:%d: Failure\n%s\n", tag_.c_str(), result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[%s] FAILED %s.%s\n", tag_.c_str(), info.test_suite_name(), info.name());
    }
  }

 private:
  std::string tag_;
};
}  // namespace

const MpiEnvironment& mpi() { return *g_mpi; }

}  // namespace vitruvian::testing

int main(int argc, char** argv) {
  vitruvian::MpiEnvironment env(&argc, &argv);
  vitruvian::testing::g_mpi = &env;
  vitruvian::init_logging({"warn", false}, env.rank(), env.size(), env.host());
  at::set_num_threads(1);
  ::testing::InitGoogleTest(&argc, argv);

  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (env.rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new vitruvian::testing::RankFailurePrinter("rank " + std::to_string(env.rank()) + "/" +
                                                                std::to_string(env.size()) + " " + env.host()));
  }
  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_anywhere = failed_here;
  MPI_Allreduce(&failed_here, &failed_anywhere, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (env.rank() == 0 && failed_anywhere && !failed_here) {
    std::fprintf(stderr, "FAILED on another rank (see the lines tagged with its rank)\n");
  }
  return failed_anywhere;
}
