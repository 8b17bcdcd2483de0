// Logging: rank-tagged lines; info only from rank 0 unless asked; warnings from every rank.
#include "core/logging.h"

#include <gtest/gtest.h>

#include "core/errors.h"

namespace vitruvian {
namespace {

TEST(Logging, RankZeroLogsInfoWithRankAndHostTag) {
  init_logging({"info", false}, 0, 4, "node-a");
  ::testing::internal::CaptureStderr();
  spdlog::info("epoch {} done", 3);
  spdlog::debug("hidden");
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("[r0/4 node-a] epoch 3 done"), std::string::npos) << out;
  EXPECT_EQ(out.find("hidden"), std::string::npos) << out;
}

TEST(Logging, OtherRanksOnlyWarnUnlessAllRanks) {
  init_logging({"info", false}, 2, 4, "node-b");
  ::testing::internal::CaptureStderr();
  spdlog::info("quiet");
  spdlog::warn("disk almost full");
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("quiet"), std::string::npos) << out;
  EXPECT_NE(out.find("[r2/4 node-b] disk almost full"), std::string::npos) << out;

  init_logging({"debug", true}, 2, 4, "node-b");
  ::testing::internal::CaptureStderr();
  spdlog::debug("now visible");
  out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("now visible"), std::string::npos) << out;
}

TEST(Logging, LevelNames) {
  EXPECT_EQ(parse_log_level("warn"), spdlog::level::warn);
  EXPECT_EQ(parse_log_level("warning"), spdlog::level::warn);
  EXPECT_EQ(parse_log_level("off"), spdlog::level::off);
  EXPECT_THROW(parse_log_level("loud"), InputError);
}

}  // namespace
}  // namespace vitruvian
