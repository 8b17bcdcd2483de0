// The control plane: agreement (the lowest failing rank's text on every rank), broadcasts of
// empty, short and multi-megabyte strings from every root, maxima and minima, calls that differ
// between ranks, and timeouts whose messages name the rank that did not take part.
#include "core/comm/control_plane.h"

#include <gtest/gtest.h>

#include <memory>

#include "core/errors.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

class ControlPlaneTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    plane_ = new ControlPlane(testing::mpi().world(), ControlPlaneOptions().timeout_s(60));
  }
  static void TearDownTestSuite() {
    delete plane_;
    plane_ = nullptr;
  }
  static ControlPlane& plane() { return *plane_; }
  static int rank() { return plane_->rank(); }
  static int n() { return plane_->size(); }

 private:
  static ControlPlane* plane_;
};
ControlPlane* ControlPlaneTest::plane_ = nullptr;

/// `length` bytes that differ with the root and the position (not one repeated character).
std::string pattern(std::size_t length, int root) {
  std::string text(length, '\0');
  for (std::size_t i = 0; i < length; ++i)
    text[i] = static_cast<char>('a' + (i * 7 + static_cast<std::size_t>(root) * 3) % 26);
  return text;
}

TEST_F(ControlPlaneTest, AgreesWhenEveryRankIsOk) {
  const Agreement agreement = plane().agree("", "all fine");
  EXPECT_TRUE(agreement.ok);
  EXPECT_EQ(agreement.rank, -1);
  EXPECT_EQ(agreement.message, "");
}

TEST_F(ControlPlaneTest, LowestFailingRankWinsOnEveryRank) {
  // Every rank but 0 fails: rank 1's text everywhere.
  const std::string mine = rank() == 0 ? "" : "rank " + std::to_string(rank()) + " cannot read its shard";
  Agreement agreement = plane().agree(mine, "several failures");
  EXPECT_EQ(agreement.ok, n() == 1);
  if (n() > 1) {
    EXPECT_EQ(agreement.rank, 1);
    EXPECT_EQ(agreement.message, "rank 1 cannot read its shard");
  }
  // Only the last rank fails.
  agreement = plane().agree(rank() == n() - 1 ? "last one" : "", "one failure");
  EXPECT_FALSE(agreement.ok);
  EXPECT_EQ(agreement.rank, n() - 1);
  EXPECT_EQ(agreement.message, "last one");
}

TEST_F(ControlPlaneTest, BroadcastsStringsOfEverySizeFromEveryRoot) {
  for (const std::size_t length : {std::size_t{0}, std::size_t{1}, std::size_t{37}, std::size_t{5u << 20}}) {
    for (int root = 0; root < n(); ++root) {
      // Other ranks pass text of their own, which must be ignored.
      const std::string sent = rank() == root ? pattern(length, root) : "not the root's";
      const std::string received = plane().broadcast(sent, root, "broadcast test");
      ASSERT_EQ(received.size(), length) << "root " << root;
      EXPECT_TRUE(received == pattern(length, root)) << "root " << root << ", " << length << " bytes";
    }
  }
  EXPECT_THROW(plane().broadcast("x", n(), "bad root"), InputError);
}

TEST_F(ControlPlaneTest, AllMaxAndAllMin) {
  const std::int64_t r = rank();
  const std::vector<std::int64_t> values = {r, -r, 7, r * 1'000'000'000'000LL, n() - 1 - r};
  const std::int64_t top = n() - 1;
  EXPECT_EQ(plane().all_max(values, "maxima"), (std::vector<std::int64_t>{top, 0, 7, top * 1'000'000'000'000LL, top}));
  EXPECT_EQ(plane().all_min(values, "minima"), (std::vector<std::int64_t>{0, -top, 7, 0, 0}));
  EXPECT_TRUE(plane().all_max({}, "nothing").empty());
  plane().barrier("after the maxima");
}

TEST_F(ControlPlaneTest, CallsThatDifferBetweenRanksAreRefusedEverywhere) {
  if (n() < 2) GTEST_SKIP() << "needs two ranks";
  const std::vector<std::int64_t> values(rank() == 1 ? 2 : 3, 1);
  try {
    plane().all_max(values, "mismatched counts");
    ADD_FAILURE() << "no error";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("every rank must make the same calls"), std::string::npos) << e.what();
  }
  // Every rank made that call, so the ranks are still in step.
  EXPECT_TRUE(plane().agree("", "after a refused call").ok);
}

TEST(ControlPlaneTimeout, NamesTheRankThatSkipsACall) {
  const MpiComm& world = testing::mpi().world();
  if (world.size() < 2) GTEST_SKIP() << "needs two ranks";
  std::string seen;
  {
    ControlPlane plane(world, ControlPlaneOptions().timeout_s(1.0).on_timeout([&](const std::string& m) { seen = m; }));
    plane.barrier("warm-up");
    if (world.rank() != 1) {  // rank 1 skips the agreement
      EXPECT_THROW(plane.agree("", "test phase"), TimeoutError);
      const std::string host1 = plane.hosts()[1];
      EXPECT_NE(seen.find("in agree #2 (test phase) on the control plane: "), std::string::npos) << seen;
      EXPECT_NE(seen.find("no word from rank 1 (" + host1 + ")"), std::string::npos) << seen;
      EXPECT_NE(seen.find("(limit 1.0 s, runtime.collective_timeout_s)"), std::string::npos) << seen;
      if (world.rank() == 0) {
        EXPECT_EQ(seen.rfind(describe_process() + " waited ", 0), 0u) << seen;
      } else {
        EXPECT_NE(seen.find("rank 0 (" + plane.hosts()[0] + ") ended the call"), std::string::npos) << seen;
      }
      // The ranks are out of step now: the plane refuses further calls at once.
      EXPECT_THROW(plane.barrier("after the timeout"), TimeoutError);
    }
  }
  EXPECT_EQ(world.rank() == 1, seen.empty()) << seen;
  MPI_Barrier(world.get());
}

}  // namespace
}  // namespace vitruvian
