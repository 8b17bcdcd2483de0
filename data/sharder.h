// Splits a data set's studies among the ranks for one epoch: every study exactly once, loads
// balanced by voxel count, reshuffled each epoch, computed identically on every rank without
// communication.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vitruvian::data {

/// One study as the sharder sees it: a unique id and its size in voxels (the cost of visiting it).
struct ShardStudy {
  std::string id;
  std::int64_t voxels = 0;
};

/// Every rank's share of one epoch. Identical on every rank for the same arguments.
struct ShardPlan {
  /// per_rank[r]: indices into the studies, in the order rank r visits them this epoch.
  std::vector<std::vector<std::size_t>> per_rank;
  /// loads[r]: sum of the voxels of rank r's studies.
  std::vector<std::int64_t> loads;

  /// Ranks that received no study (possible only when world > number of studies).
  std::size_t empty_ranks() const;
  /// One line for logs: "12 studies on 3 ranks: voxels per rank min 1.2e+07, max 1.3e+07
  /// (max/mean 1.03), 0 ranks empty".
  std::string describe() const;
};

/// Studies whose voxel counts differ by less than this fraction count as ties: they are placed
/// in a seeded random order before the greedy assignment, so a data set without exact ties is
/// still reshuffled among the ranks each epoch. Any order keeps max − min load ≤ the largest study.
inline constexpr double kDefaultSizeTolerance = 0.1;

/// The whole epoch's assignment. Studies are ordered by voxel count, largest first, after a
/// shuffle seeded from (seed, epoch) that reorders studies within `size_tolerance` of each other
/// (exact ties always); each is then given to the least-loaded rank (ties between ranks broken
/// by a per-epoch random rank order). Each rank's visit order is then shuffled from
/// (seed, epoch, rank). Deterministic from the arguments only (own integer arithmetic, no
/// implementation-defined std:: distributions), so every rank computes the same plan.
///
/// When world > studies.size(), world − studies.size() ranks get no study. Code that just
/// iterates its shard (validation, inference) can go on, as long as the empty ranks still join
/// every collective (e.g. reduce their zero counts). A training loader, whose ranks each need a
/// batch every step, should check `studies.size() >= world` at start-up and stop with a
/// ConfigError naming both numbers.
///
/// Throws InputError when world < 1, epoch < 0, a study has negative voxels, two studies share an
/// id, or size_tolerance is negative or not finite.
ShardPlan plan_shards(const std::vector<ShardStudy>& studies, int world, std::uint64_t seed, std::int64_t epoch,
                      double size_tolerance = kDefaultSizeTolerance);

/// Indices into `studies` of rank `rank`'s share of epoch `epoch`, in visiting order:
/// plan_shards(...).per_rank[rank]. Empty for some ranks when world > studies.size() (see
/// plan_shards). Throws InputError also when rank is not in [0, world).
std::vector<std::size_t> shard_studies(const std::vector<ShardStudy>& studies, int rank, int world,
                                       std::uint64_t seed, std::int64_t epoch,
                                       double size_tolerance = kDefaultSizeTolerance);

}  // namespace vitruvian::data
