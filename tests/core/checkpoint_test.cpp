// Checkpoint folders: complete ones verify, the newest complete one is chosen, truncated or
// altered files and unfinished folders are passed over with the reason, old ones are pruned.
#include "core/checkpoint.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  testing::ScratchDir scratch_;
  // write_checkpoint makes the root itself.
  fs::path root_ = scratch_ / "checkpoints";
  void write(const std::string& name, const std::string& payload) {
    write_checkpoint(root_, name, [&](const fs::path& dir) {
      write_file_atomic(dir / "weights.bin", payload);
      write_file_atomic(dir / "state.json", "{\"step\": 1}");
    }, "step_", 3);
  }
};

TEST_F(CheckpointTest, NewestCompleteOneWinsAndBrokenOnesAreSkippedWithAReason) {
  write("step_000010", std::string(1000, 'a'));
  write("step_000020", std::string(1000, 'b'));
  write("step_000030", std::string(1000, 'c'));
  EXPECT_EQ(verify_checkpoint(root_ / "step_000030"), "");
  // Truncate the newest, alter a byte of the second newest.
  fs::resize_file(root_ / "step_000030" / "weights.bin", 500);
  {
    std::fstream f(root_ / "step_000020" / "weights.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put('x');
  }
  std::vector<std::string> reasons;
  const auto found = latest_checkpoint(root_, "step_", [&](const fs::path& dir, const std::string& why) {
    reasons.push_back(dir.filename().string() + ": " + why);
  });
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->filename(), "step_000010");
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0], "step_000030: weights.bin has 500 bytes; the manifest says 1000");
  EXPECT_EQ(reasons[1], "step_000020: weights.bin does not match its checksum");
  // A manifest that parses but lacks its file list is passed over with the reason, not a crash.
  write_file_atomic(root_ / "step_000030" / "manifest.json", "{\"complete\": true}");
  EXPECT_NE(verify_checkpoint(root_ / "step_000030").find("manifest.json is malformed"), std::string::npos);
  // An unfinished write (no manifest) is never taken, and a failed fill leaves nothing.
  fs::create_directories(root_ / "step_000040");
  EXPECT_NE(verify_checkpoint(root_ / "step_000040"), "");
  EXPECT_THROW(write_checkpoint(root_, "step_000050", [](const fs::path&) { throw InputError("fill", "disk full"); }),
               InputError);
  EXPECT_FALSE(fs::exists(root_ / "step_000050"));
  for (const auto& entry : fs::directory_iterator(root_)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

// A write killed in the middle leaves a temporary folder that is never taken for a checkpoint,
// even once complete, and that remove_leftover_temporaries removes (and nothing else).
TEST_F(CheckpointTest, KilledWritesLeaveOnlyRecognisedLeftovers) {
  GTEST_FLAG_SET(death_test_style, "fast");
  write("step_000010", "w10");
  EXPECT_EXIT(write_checkpoint(root_, "step_000020",
                               [](const fs::path& dir) {
                                 write_file_atomic(dir / "weights.bin", "half");
                                 std::_Exit(0);
                               }),
              ::testing::ExitedWithCode(0), "");
  // A complete copy under a temporary name (a kill between the manifest and the rename).
  const fs::path complete = temporary_path_for(root_ / "step_000030");
  fs::copy(root_ / "step_000010", complete, fs::copy_options::recursive);
  EXPECT_EQ(verify_checkpoint(complete), "");
  std::vector<std::string> skipped;
  const auto found = latest_checkpoint(root_, "", [&](const fs::path& dir, const std::string&) {
    skipped.push_back(dir.filename().string());
  });
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->filename(), "step_000010");
  EXPECT_TRUE(skipped.empty()) << skipped.front();
  const auto removed = remove_leftover_temporaries(root_);
  ASSERT_EQ(removed.size(), 2u);
  EXPECT_EQ(removed[0].filename().string().rfind(".step_000020.tmp.", 0), 0u) << removed[0];
  EXPECT_EQ(removed[1], complete);
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(root_)) left.push_back(entry.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"step_000010"});
  EXPECT_EQ(verify_checkpoint(root_ / "step_000010"), "");
}

TEST_F(CheckpointTest, RewritingACheckpointReplacesItWhole) {
  write("step_000010", "first");
  write_checkpoint(root_, "step_000010", [](const fs::path& dir) { write_file_atomic(dir / "other.bin", "second"); });
  EXPECT_EQ(verify_checkpoint(root_ / "step_000010"), "");
  EXPECT_FALSE(fs::exists(root_ / "step_000010" / "weights.bin"));
  EXPECT_TRUE(fs::exists(root_ / "step_000010" / "other.bin"));
}

TEST_F(CheckpointTest, OnlyTheNewestKeepAreKept) {
  for (int step = 1; step <= 5; ++step) write("step_00000" + std::to_string(step), "w");
  EXPECT_FALSE(fs::exists(root_ / "step_000001"));
  EXPECT_FALSE(fs::exists(root_ / "step_000002"));
  EXPECT_TRUE(fs::exists(root_ / "step_000003"));
  EXPECT_TRUE(fs::exists(root_ / "step_000005"));
}

}  // namespace
}  // namespace vitruvian
