// The dynamic work queue: every item handed out exactly once over all ranks, in increasing order
// on each rank, a slow rank taking fewer items, the round-robin fallback, and liveness: items far
// longer than the timeout pass while ranks send heartbeats, a silent rank holding an item is
// reported by name with its item.
#include "core/comm/work_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

/// Every rank's items, gathered on all ranks (a count per rank, then the items).
std::vector<std::vector<std::int64_t>> gather(const std::vector<std::int64_t>& mine) {
  const MpiComm& world = testing::mpi().world();
  const int size = world.size();
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(size));
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, world.get());
  std::vector<int> offsets(static_cast<std::size_t>(size), 0);
  std::partial_sum(counts.begin(), counts.end() - 1, offsets.begin() + 1);
  std::vector<std::int64_t> all(static_cast<std::size_t>(offsets.back() + counts.back()));
  MPI_Allgatherv(mine.data(), count, MPI_INT64_T, all.data(), counts.data(), offsets.data(), MPI_INT64_T, world.get());
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) {
    out[static_cast<std::size_t>(r)].assign(all.begin() + offsets[static_cast<std::size_t>(r)],
                                            all.begin() + offsets[static_cast<std::size_t>(r)] + counts[static_cast<std::size_t>(r)]);
  }
  return out;
}

void expect_each_once(const std::vector<std::vector<std::int64_t>>& per_rank, std::int64_t total) {
  std::vector<int> seen(static_cast<std::size_t>(total), 0);
  for (const auto& items : per_rank) {
    for (std::size_t i = 0; i < items.size(); ++i) {
      ASSERT_GE(items[i], 0);
      ASSERT_LT(items[i], total);
      ++seen[static_cast<std::size_t>(items[i])];
      if (i > 0) {
        EXPECT_LT(items[i - 1], items[i]);
      }
    }
  }
  for (std::int64_t i = 0; i < total; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], 1) << "item " << i;
}

TEST(WorkQueue, HandsOutEveryItemOnceAndSlowRanksTakeFewer) {
  const MpiComm& world = testing::mpi().world();
  constexpr std::int64_t kTotal = 60;
  std::vector<std::int64_t> mine;
  {
    WorkQueue queue(world, kTotal, testing::mpi().thread_multiple());
    while (const auto item = queue.next()) {
      mine.push_back(*item);
      // The last rank is slow: the others should take most of the work.
      std::this_thread::sleep_for(std::chrono::milliseconds(world.rank() == world.size() - 1 && world.size() > 1 ? 20 : 1));
    }
    EXPECT_FALSE(queue.next().has_value());
    queue.finish();
    if (world.rank() == 0) {
      EXPECT_EQ(queue.handed_out(), kTotal);
    }
  }
  const auto per_rank = gather(mine);
  expect_each_once(per_rank, kTotal);
  if (world.size() > 1 && testing::mpi().thread_multiple()) {
    EXPECT_LT(per_rank.back().size(), per_rank.front().size());
  }
}

TEST(WorkQueue, RoundRobinWithoutThreadsAndEmptyQueues) {
  const MpiComm& world = testing::mpi().world();
  std::vector<std::int64_t> mine;
  {
    WorkQueue queue(world, 7, false);
    while (const auto item = queue.next()) mine.push_back(*item);
  }
  for (std::size_t i = 0; i < mine.size(); ++i) EXPECT_EQ(mine[i], world.rank() + static_cast<std::int64_t>(i) * world.size());
  expect_each_once(gather(mine), 7);
  WorkQueue empty(world, 0, testing::mpi().thread_multiple());
  EXPECT_FALSE(empty.next().has_value());
}

/// A timeout handler for tests: keeps the messages (called from the queue's thread).
struct Reports {
  std::mutex mutex;
  std::vector<std::string> messages;
  TimeoutHandler handler() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex);
      messages.push_back(m);
    };
  }
};

bool liveness_available() {
  return testing::mpi().world().size() > 1 && testing::mpi().thread_multiple();
}

TEST(WorkQueueLiveness, ItemsMuchLongerThanTheTimeoutPassWhileRanksSendHeartbeats) {
  if (!liveness_available()) GTEST_SKIP() << "needs two ranks and MPI_THREAD_MULTIPLE";
  const MpiComm& world = testing::mpi().world();
  const int last = world.size() - 1;
  Reports reports;
  std::vector<std::int64_t> mine;
  {
    WorkQueue queue(world, 3 * world.size(), true, WorkQueueOptions().timeout_s(1.5).on_timeout(reports.handler()));
    while (const auto item = queue.next()) {
      mine.push_back(*item);
      // The last rank's first item takes 3x the timeout; the others then wait in finish().
      const bool long_one = world.rank() == last && mine.size() == 1;
      std::this_thread::sleep_for(long_one ? std::chrono::milliseconds(4500) : std::chrono::milliseconds(50));
    }
    queue.finish();
  }
  EXPECT_TRUE(reports.messages.empty()) << reports.messages.front();
  const auto per_rank = gather(mine);
  expect_each_once(per_rank, 3 * world.size());
  EXPECT_FALSE(per_rank.back().empty()) << "the last rank got no item to hold";
}

TEST(WorkQueueLiveness, ASilentRankHoldingAnItemIsReportedWithItsItem) {
  if (!liveness_available()) GTEST_SKIP() << "needs two ranks and MPI_THREAD_MULTIPLE";
  const MpiComm& world = testing::mpi().world();
  Reports reports;
  std::vector<std::int64_t> mine;
  std::vector<std::string> hosts;
  {
    // Rank 1 sends no heartbeats and sits on its first item for 3x the timeout.
    WorkQueue queue(world, 8, true,
                    WorkQueueOptions().timeout_s(1.0).on_timeout(reports.handler()).heartbeats(world.rank() != 1));
    while (const auto item = queue.next()) {
      mine.push_back(*item);
      const bool long_one = world.rank() == 1 && mine.size() == 1;
      std::this_thread::sleep_for(long_one ? std::chrono::milliseconds(3000) : std::chrono::milliseconds(50));
    }
    queue.finish();
  }
  const auto per_rank = gather(mine);
  expect_each_once(per_rank, 8);
  if (world.rank() != 0) {
    EXPECT_TRUE(reports.messages.empty()) << reports.messages.front();
    return;
  }
  ASSERT_EQ(reports.messages.size(), 1u);  // once per queue, though rank 1 stays silent for 3 s
  const std::string& text = reports.messages.front();
  ASSERT_FALSE(per_rank[1].empty());
  EXPECT_EQ(text.rfind(describe_process() + ", on the work queue: rank 1 (", 0), 0u) << text;
  EXPECT_NE(text.find(") has been silent for "), std::string::npos) << text;
  EXPECT_NE(text.find(" while holding item " + std::to_string(per_rank[1].front()) + " (limit 1.0 s"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace vitruvian
