// Sharder: every study exactly once per epoch across the ranks (gathered over MPI and checked
// for 1..7 simulated ranks), loads within one study of each other, reshuffled per epoch,
// reproducible per (seed, epoch), the same plan on every rank, and bad input rejected.
#include "data/sharder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/mpi.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian::data {
namespace {

/// `count` studies "study-000", ... with voxel counts uniform in [low, high], from `seed`.
std::vector<ShardStudy> random_studies(std::size_t count, std::uint64_t seed, std::int64_t low = 100'000,
                                       std::int64_t high = 5'000'000) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> voxels(low, high);
  std::vector<ShardStudy> studies(count);
  for (std::size_t i = 0; i < count; ++i) {
    studies[i].id = "study-" + std::to_string(1000 + i).substr(1);
    studies[i].voxels = voxels(rng);
  }
  return studies;
}

std::int64_t largest(const std::vector<ShardStudy>& studies) {
  std::int64_t most = 0;
  for (const auto& s : studies) most = std::max(most, s.voxels);
  return most;
}

/// Every index in [0, studies) appears exactly once in the plan, loads are the sums of the
/// shares, and max − min load is at most the largest study.
void expect_valid_plan(const ShardPlan& plan, const std::vector<ShardStudy>& studies, int world) {
  ASSERT_EQ(plan.per_rank.size(), static_cast<std::size_t>(world));
  ASSERT_EQ(plan.loads.size(), static_cast<std::size_t>(world));
  std::vector<int> seen(studies.size(), 0);
  for (std::size_t r = 0; r < plan.per_rank.size(); ++r) {
    std::int64_t load = 0;
    for (std::size_t index : plan.per_rank[r]) {
      ASSERT_LT(index, studies.size()) << "rank " << r;
      ++seen[index];
      load += studies[index].voxels;
    }
    EXPECT_EQ(plan.loads[r], load) << "rank " << r;
  }
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "study " << i << " of " << world << " ranks";
  const auto [low, high] = std::minmax_element(plan.loads.begin(), plan.loads.end());
  EXPECT_LE(*high - *low, largest(studies)) << plan.describe();
}

/// The assignment without the visiting order: each rank's share sorted.
std::vector<std::vector<std::size_t>> assignment(const ShardPlan& plan) {
  std::vector<std::vector<std::size_t>> sorted = plan.per_rank;
  for (auto& share : sorted) std::sort(share.begin(), share.end());
  return sorted;
}

/// FNV-1a over the plan, separators included, to compare plans across ranks.
std::uint64_t plan_hash(const ShardPlan& plan) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xFF;
      h *= 0x100000001b3ULL;
    }
  };
  for (const auto& share : plan.per_rank) {
    mix(share.size());
    for (std::size_t index : share) mix(index);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Under MPI: each rank takes its own share; the gathered shares must partition the studies.

struct Gathered {
  std::vector<std::vector<std::size_t>> per_rank;
  std::vector<std::int64_t> loads;
};

Gathered gather_shares(const std::vector<std::size_t>& mine, const std::vector<ShardStudy>& studies) {
  const MpiComm& world = testing::mpi().world();
  const int size = world.size();
  const auto ranks = static_cast<std::size_t>(size);
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(ranks);
  check_mpi(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, world.get()), "MPI_Allgather");
  std::vector<int> offsets(ranks, 0);
  for (std::size_t r = 1; r < ranks; ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
  const int total = offsets.back() + counts.back();
  std::vector<long long> ids(mine.begin(), mine.end()), all(static_cast<std::size_t>(total));
  check_mpi(MPI_Allgatherv(ids.data(), count, MPI_LONG_LONG, all.data(), counts.data(), offsets.data(), MPI_LONG_LONG,
                           world.get()),
            "MPI_Allgatherv");
  long long load = 0;
  for (std::size_t index : mine) load += studies[index].voxels;
  std::vector<long long> loads(ranks);
  check_mpi(MPI_Allgather(&load, 1, MPI_LONG_LONG, loads.data(), 1, MPI_LONG_LONG, world.get()), "MPI_Allgather");

  Gathered out;
  out.per_rank.resize(ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    for (int i = 0; i < counts[r]; ++i) {
      out.per_rank[r].push_back(static_cast<std::size_t>(all[static_cast<std::size_t>(offsets[r] + i)]));
    }
  }
  out.loads.assign(loads.begin(), loads.end());
  return out;
}

/// True on every rank iff `value` is the same on every rank.
bool same_on_all_ranks(std::uint64_t value) {
  const MPI_Comm comm = testing::mpi().world().get();
  unsigned long long low = value, high = value;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm), "MPI_Allreduce");
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm), "MPI_Allreduce");
  return low == high;
}

TEST(ShardStudiesMpi, EveryStudyOncePerEpochAcrossRanks) {
  const int rank = testing::mpi().rank(), world = testing::mpi().size();
  // 2 studies: fewer than 3 ranks, so a 3-rank run also covers empty shares.
  for (std::size_t count : {std::size_t{2}, std::size_t{11}, std::size_t{50}}) {
    const std::vector<ShardStudy> studies = random_studies(count, 17 + count);
    for (std::int64_t epoch = 0; epoch < 4; ++epoch) {
      const std::vector<std::size_t> mine = shard_studies(studies, rank, world, 2024, epoch);
      const Gathered gathered = gather_shares(mine, studies);
      ShardPlan as_plan;
      as_plan.per_rank = gathered.per_rank;
      as_plan.loads = gathered.loads;
      SCOPED_TRACE(::testing::Message() << count << " studies, epoch " << epoch);
      expect_valid_plan(as_plan, studies, world);
      EXPECT_EQ(as_plan.empty_ranks(),
                count >= static_cast<std::size_t>(world) ? std::size_t{0} : static_cast<std::size_t>(world) - count);
    }
  }
}

TEST(ShardStudiesMpi, EveryRankComputesTheSamePlanAndTakesItsShare) {
  const int rank = testing::mpi().rank(), world = testing::mpi().size();
  const std::vector<ShardStudy> studies = random_studies(37, 5);
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    const ShardPlan plan = plan_shards(studies, world, 99, epoch);
    EXPECT_TRUE(same_on_all_ranks(plan_hash(plan))) << "epoch " << epoch;
    const std::vector<std::size_t> mine = shard_studies(studies, rank, world, 99, epoch);
    EXPECT_EQ(mine, plan.per_rank[static_cast<std::size_t>(rank)]) << "epoch " << epoch;
    // What the other ranks took is what this rank's plan says they take.
    const Gathered gathered = gather_shares(mine, studies);
    EXPECT_EQ(gathered.per_rank, plan.per_rank) << "epoch " << epoch;
    EXPECT_EQ(gathered.loads, plan.loads) << "epoch " << epoch;
  }
}

TEST(ShardStudiesMpi, ShareChangesBetweenEpochs) {
  const int rank = testing::mpi().rank(), world = testing::mpi().size();
  const std::vector<ShardStudy> studies = random_studies(30, 8);
  const std::vector<std::size_t> first = shard_studies(studies, rank, world, 7, 0);
  int differing = 0;
  for (std::int64_t epoch = 1; epoch < 6; ++epoch) {
    differing += shard_studies(studies, rank, world, 7, epoch) != first ? 1 : 0;
  }
  // At least the visiting order changes: 30/world >= 10 studies.
  EXPECT_EQ(differing, 5);
}

// ---------------------------------------------------------------------------------------------
// Single-process checks of the plan for simulated world sizes.

TEST(PlanShards, PartitionsAndBalancesForWorldsOneToSeven) {
  const std::vector<ShardStudy> studies = random_studies(50, 3);
  for (int world = 1; world <= 7; ++world) {
    for (std::uint64_t seed : {0ULL, 1ULL, 123456789ULL}) {
      for (std::int64_t epoch = 0; epoch < 5; ++epoch) {
        SCOPED_TRACE(::testing::Message() << "world " << world << ", seed " << seed << ", epoch " << epoch);
        const ShardPlan plan = plan_shards(studies, world, seed, epoch);
        expect_valid_plan(plan, studies, world);
        EXPECT_EQ(plan.empty_ranks(), 0U);
        for (int r = 0; r < world; ++r) {
          EXPECT_EQ(shard_studies(studies, r, world, seed, epoch), plan.per_rank[static_cast<std::size_t>(r)]);
        }
      }
    }
  }
}

TEST(PlanShards, BalancesHeavilySkewedSizes) {
  // A few huge studies among many small ones, and some of size zero.
  std::vector<ShardStudy> studies = random_studies(40, 11, 1'000, 50'000);
  studies[3].voxels = 40'000'000;
  studies[17].voxels = 25'000'000;
  studies[30].voxels = 0;
  studies[31].voxels = 0;
  for (int world = 1; world <= 7; ++world) {
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      SCOPED_TRACE(::testing::Message() << "world " << world << ", epoch " << epoch);
      expect_valid_plan(plan_shards(studies, world, 42, epoch), studies, world);
    }
  }
}

TEST(PlanShards, EqualStudiesSplitEvenly) {
  std::vector<ShardStudy> studies = random_studies(12, 1);
  for (auto& s : studies) s.voxels = 1'000'000;
  for (std::int64_t epoch = 0; epoch < 4; ++epoch) {
    const ShardPlan plan = plan_shards(studies, 3, 5, epoch);
    expect_valid_plan(plan, studies, 3);
    for (const auto& share : plan.per_rank) EXPECT_EQ(share.size(), 4U);
    for (std::int64_t load : plan.loads) EXPECT_EQ(load, 4'000'000);
  }
}

TEST(PlanShards, SameSeedAndEpochSamePlan) {
  const std::vector<ShardStudy> studies = random_studies(50, 4);
  for (int world : {1, 3, 7}) {
    for (std::int64_t epoch : {0, 1, 9}) {
      const ShardPlan a = plan_shards(studies, world, 31, epoch);
      const ShardPlan b = plan_shards(studies, world, 31, epoch);
      EXPECT_EQ(a.per_rank, b.per_rank);
      EXPECT_EQ(a.loads, b.loads);
    }
  }
}

TEST(PlanShards, PlansDifferBetweenEpochsAndSeeds) {
  const std::vector<ShardStudy> studies = random_studies(50, 6);
  for (int world : {1, 2, 3, 5}) {
    SCOPED_TRACE(::testing::Message() << "world " << world);
    std::set<std::vector<std::vector<std::size_t>>> plans, assignments;
    for (std::int64_t epoch = 0; epoch < 8; ++epoch) {
      const ShardPlan plan = plan_shards(studies, world, 77, epoch);
      plans.insert(plan.per_rank);
      assignments.insert(assignment(plan));
    }
    EXPECT_EQ(plans.size(), 8U);  // every epoch a new plan (visiting order at least)
    if (world > 1) {
      // Which rank gets which study changes too, not just the order of visits.
      EXPECT_GE(assignments.size(), 6U);
    }
    EXPECT_NE(plan_shards(studies, world, 77, 2).per_rank, plan_shards(studies, world, 78, 2).per_rank);
  }
}

TEST(PlanShards, ZeroToleranceKeepsTheLoadsOfDistinctSizes) {
  // Sizes far apart: with no tolerance the largest-first order is fixed, so only the ranks'
  // roles and the visiting order may change between epochs; the set of loads stays.
  std::vector<ShardStudy> studies = random_studies(20, 9);
  for (std::size_t i = 0; i < studies.size(); ++i) studies[i].voxels = 1000 + 37 * static_cast<std::int64_t>(i * i);
  auto sorted_loads = [](ShardPlan plan) {
    std::sort(plan.loads.begin(), plan.loads.end());
    return plan.loads;
  };
  const std::vector<std::int64_t> first = sorted_loads(plan_shards(studies, 3, 1, 0, 0.0));
  for (std::int64_t epoch = 1; epoch < 5; ++epoch) {
    const ShardPlan plan = plan_shards(studies, 3, 1, epoch, 0.0);
    expect_valid_plan(plan, studies, 3);
    EXPECT_EQ(sorted_loads(plan), first) << "epoch " << epoch;
  }
}

TEST(PlanShards, MoreRanksThanStudiesLeavesRanksEmpty) {
  const std::vector<ShardStudy> studies = random_studies(3, 2);
  for (std::int64_t epoch = 0; epoch < 6; ++epoch) {
    const ShardPlan plan = plan_shards(studies, 7, 10, epoch);
    expect_valid_plan(plan, studies, 7);
    EXPECT_EQ(plan.empty_ranks(), 4U);
    for (const auto& share : plan.per_rank) EXPECT_LE(share.size(), 1U);
  }
  const ShardPlan none = plan_shards({}, 4, 10, 0);
  EXPECT_EQ(none.empty_ranks(), 4U);
  EXPECT_EQ(none.loads, std::vector<std::int64_t>(4, 0));
  EXPECT_TRUE(shard_studies({}, 2, 4, 10, 0).empty());
}

TEST(PlanShards, DescribeSummarisesThePlan) {
  const std::vector<ShardStudy> studies = random_studies(12, 2);
  const std::string text = plan_shards(studies, 3, 1, 0).describe();
  EXPECT_EQ(text.rfind("12 studies on 3 ranks: voxels per rank min ", 0), 0U) << text;
  EXPECT_NE(text.find("0 ranks empty"), std::string::npos) << text;
  EXPECT_NE(plan_shards(studies, 15, 1, 0).describe().find("3 ranks empty"), std::string::npos);
}

TEST(PlanShards, RejectsBadInput) {
  const std::vector<ShardStudy> studies = random_studies(5, 1);
  EXPECT_THROW(plan_shards(studies, 0, 1, 0), InputError);
  EXPECT_THROW(plan_shards(studies, -2, 1, 0), InputError);
  EXPECT_THROW(plan_shards(studies, 2, 1, -1), InputError);
  EXPECT_THROW(plan_shards(studies, 2, 1, 0, -0.1), InputError);
  EXPECT_THROW(plan_shards(studies, 2, 1, 0, std::numeric_limits<double>::quiet_NaN()), InputError);
  EXPECT_THROW(plan_shards(studies, 2, 1, 0, std::numeric_limits<double>::infinity()), InputError);

  std::vector<ShardStudy> duplicate = studies;
  duplicate[4].id = duplicate[1].id;
  try {
    plan_shards(duplicate, 2, 1, 0);
    ADD_FAILURE() << "duplicate id accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(studies[1].id), std::string::npos) << e.what();
  }
  std::vector<ShardStudy> negative = studies;
  negative[2].voxels = -1;
  EXPECT_THROW(plan_shards(negative, 2, 1, 0), InputError);
  EXPECT_THROW(shard_studies(negative, 0, 2, 1, 0), InputError);
  EXPECT_THROW(shard_studies(duplicate, 0, 2, 1, 0), InputError);

  EXPECT_THROW(shard_studies(studies, -1, 2, 1, 0), InputError);
  EXPECT_THROW(shard_studies(studies, 2, 2, 1, 0), InputError);
  EXPECT_THROW(shard_studies(studies, 0, 0, 1, 0), InputError);
  EXPECT_NO_THROW(shard_studies(studies, 1, 2, 1, 0));
}

}  // namespace
}  // namespace vitruvian::data
