// Per-epoch assignment of studies to ranks: seeded near-tie shuffle, greedy largest-first onto
// the least-loaded rank, then a per-rank shuffle of the visiting order.
#include "data/sharder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <unordered_set>
#include <utility>

#include "core/errors.h"
#include "data/random.h"

namespace vitruvian::data {
namespace {

constexpr const char* kWhere = "shard_studies";

// Stream tags, so the three shuffles of one epoch draw independent numbers.
constexpr std::uint64_t kStudyOrderStream = 1;
constexpr std::uint64_t kRankOrderStream = 2;
constexpr std::uint64_t kVisitOrderStream = 3;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::mt19937_64 make_rng(std::uint64_t seed, std::int64_t epoch, std::uint64_t stream, std::uint64_t rank = 0) {
  std::uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ static_cast<std::uint64_t>(epoch));
  h = splitmix64(h ^ stream);
  h = splitmix64(h ^ rank);
  return std::mt19937_64(h);
}

template <typename T>
void shuffle(std::vector<T>& values, std::mt19937_64& rng) {
  for (std::size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[static_cast<std::size_t>(uniform_below(rng, i))]);
  }
}

void check_arguments(const std::vector<ShardStudy>& studies, int world, std::int64_t epoch, double size_tolerance) {
  if (world < 1) throw InputError(kWhere, fmt::format("world size {} is not positive", world));
  if (epoch < 0) throw InputError(kWhere, fmt::format("epoch {} is negative", epoch));
  if (!std::isfinite(size_tolerance) || size_tolerance < 0) {
    throw InputError(kWhere, fmt::format("size_tolerance {} is not a finite number >= 0", size_tolerance));
  }
  std::unordered_set<std::string> seen;
  seen.reserve(studies.size());
  for (std::size_t i = 0; i < studies.size(); ++i) {
    const ShardStudy& study = studies[i];
    if (study.voxels < 0) {
      throw InputError(kWhere, fmt::format("study {} ('{}') has {} voxels", i, study.id, study.voxels));
    }
    if (!seen.insert(study.id).second) {
      throw InputError(kWhere, fmt::format("study id '{}' appears more than once (again at index {})", study.id, i));
    }
  }
}

}  // namespace

std::size_t ShardPlan::empty_ranks() const {
  return static_cast<std::size_t>(
      std::count_if(per_rank.begin(), per_rank.end(), [](const auto& shard) { return shard.empty(); }));
}

std::string ShardPlan::describe() const {
  std::size_t studies = 0;
  for (const auto& shard : per_rank) studies += shard.size();
  if (loads.empty()) return "no ranks";
  const auto [low, high] = std::minmax_element(loads.begin(), loads.end());
  const double mean = static_cast<double>(std::accumulate(loads.begin(), loads.end(), std::int64_t{0})) /
                      static_cast<double>(loads.size());
  return fmt::format("{} studies on {} ranks: voxels per rank min {:.3g}, max {:.3g} (max/mean {:.3f}), {} ranks empty",
                     studies, loads.size(), static_cast<double>(*low), static_cast<double>(*high),
                     mean > 0 ? static_cast<double>(*high) / mean : 1.0, empty_ranks());
}

ShardPlan plan_shards(const std::vector<ShardStudy>& studies, int world, std::uint64_t seed, std::int64_t epoch,
                      double size_tolerance) {
  check_arguments(studies, world, epoch, size_tolerance);
  const auto ranks = static_cast<std::size_t>(world);

  // Largest first; near-ties (within size_tolerance) and exact ties in a seeded random order.
  std::mt19937_64 order_rng = make_rng(seed, epoch, kStudyOrderStream);
  std::vector<std::size_t> order(studies.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  shuffle(order, order_rng);
  std::vector<double> key(studies.size());
  for (std::size_t i : order) {
    key[i] = static_cast<double>(studies[i].voxels) * (1.0 + size_tolerance * uniform01(order_rng));
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });

  // Which rank gets a study when several are equally loaded varies per epoch too.
  std::mt19937_64 rank_rng = make_rng(seed, epoch, kRankOrderStream);
  std::vector<int> slot_rank(ranks);
  std::iota(slot_rank.begin(), slot_rank.end(), 0);
  shuffle(slot_rank, rank_rng);

  ShardPlan plan;
  plan.per_rank.resize(ranks);
  plan.loads.assign(ranks, 0);
  using Entry = std::pair<std::int64_t, std::size_t>;  // (load, slot): least load, then lowest slot
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> least_loaded;
  for (std::size_t slot = 0; slot < ranks; ++slot) least_loaded.emplace(0, slot);
  for (std::size_t study : order) {
    const auto [load, slot] = least_loaded.top();
    least_loaded.pop();
    const auto rank = static_cast<std::size_t>(slot_rank[slot]);
    plan.per_rank[rank].push_back(study);
    plan.loads[rank] = load + studies[study].voxels;
    least_loaded.emplace(plan.loads[rank], slot);
  }

  for (std::size_t rank = 0; rank < ranks; ++rank) {
    std::mt19937_64 visit_rng = make_rng(seed, epoch, kVisitOrderStream, rank);
    shuffle(plan.per_rank[rank], visit_rng);
  }
  return plan;
}

std::vector<std::size_t> shard_studies(const std::vector<ShardStudy>& studies, int rank, int world,
                                       std::uint64_t seed, std::int64_t epoch, double size_tolerance) {
  if (world >= 1 && (rank < 0 || rank >= world)) {
    throw InputError(kWhere, fmt::format("rank {} is not in [0, {})", rank, world));
  }
  ShardPlan plan = plan_shards(studies, world, seed, epoch, size_tolerance);
  return std::move(plan.per_rank[static_cast<std::size_t>(rank)]);
}

}  // namespace vitruvian::data
