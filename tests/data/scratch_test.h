// A test fixture with its own empty folder (removed afterwards) and a seeded LibTorch RNG; and a
// crash in the middle of writing, for death tests of atomic writers.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "tests/tools/scratch_dir.h"

namespace vitruvian::data {

template <std::uint64_t Seed>
class ScratchTest : public ::testing::Test {
 protected:
  void SetUp() override { at::manual_seed(Seed); }
  testing::ScratchDir scratch_;
  const std::filesystem::path& dir_ = scratch_.path();
};

/// For a death test's child: from now on a write that takes a file past `bytes` kills the process
/// (SIGXFSZ, without a core dump), as a crash in the middle of writing would.
inline void crash_when_a_file_passes(rlim_t bytes) {
  ::prctl(PR_SET_DUMPABLE, 0);
  const rlimit limit{bytes, bytes};
  ::setrlimit(RLIMIT_FSIZE, &limit);
}

}  // namespace vitruvian::data
