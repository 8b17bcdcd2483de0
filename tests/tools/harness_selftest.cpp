// Proves the MPI test harness: a test that fails on rank 1 only must fail the whole run, with
// rank 1's failure printed and tagged with its rank. Registered as an expected failure.
#include <gtest/gtest.h>

#include "tests/tools/mpi_test_environment.h"

TEST(Harness, FailsOnRankOneOnly) { EXPECT_NE(vitruvian::testing::mpi().rank(), 1) << "deliberate failure"; }
TEST(Harness, PassesEverywhere) { EXPECT_GE(vitruvian::testing::mpi().rank(), 0); }
