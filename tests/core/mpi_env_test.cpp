// MPI environment: thread level, world and node-local ranks, identity used by errors and logs.
#include "core/mpi_env.h"

#include <gtest/gtest.h>

#include <set>

#include "core/errors.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

TEST(MpiEnvironment, RanksSizesAndThreadLevel) {
  const MpiEnvironment& env = testing::mpi();
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(env.rank(), rank);
  EXPECT_EQ(env.size(), size);
  EXPECT_EQ(env.thread_level_requested(), MPI_THREAD_MULTIPLE);
  EXPECT_TRUE(env.thread_multiple()) << "got " << thread_level_name(env.thread_level_provided());
  EXPECT_FALSE(env.host().empty());
  EXPECT_EQ(process_identity().rank, rank);
  EXPECT_EQ(process_identity().world_size, size);
  EXPECT_EQ(describe_process(), "rank " + std::to_string(rank) + "/" + std::to_string(size) + " on " + env.host());
  EXPECT_NE(env.library_version().find("MPI"), std::string::npos);
}

TEST(MpiEnvironment, NodeLocalRanksArePermutationOnOneHost) {
  const MpiEnvironment& env = testing::mpi();
  EXPECT_EQ(env.local_size(), env.size());  // CTest runs every rank on this host
  std::vector<int> locals(static_cast<size_t>(env.size()));
  int mine = env.local_rank();
  MPI_Allgather(&mine, 1, MPI_INT, locals.data(), 1, MPI_INT, MPI_COMM_WORLD);
  const std::set<int> distinct(locals.begin(), locals.end());
  EXPECT_EQ(distinct.size(), locals.size());
  EXPECT_EQ(*distinct.begin(), 0);
  EXPECT_EQ(*distinct.rbegin(), env.size() - 1);
}

TEST(MpiComm, SplitDupAndMove) {
  const MpiEnvironment& env = testing::mpi();
  MpiComm half = env.world().split(env.rank() < (env.size() + 1) / 2 ? 0 : 1, env.rank());
  EXPECT_TRUE(half.valid());
  const int expected = env.rank() < (env.size() + 1) / 2 ? (env.size() + 1) / 2 : env.size() / 2;
  EXPECT_EQ(half.size(), expected);
  MpiComm moved = std::move(half);
  EXPECT_FALSE(half.valid());
  EXPECT_EQ(moved.size(), expected);
  MpiComm copy = moved.dup();
  EXPECT_EQ(copy.rank(), moved.rank());
}

}  // namespace
}  // namespace vitruvian
