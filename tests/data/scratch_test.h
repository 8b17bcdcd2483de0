// A test fixture with its own empty folder (removed afterwards) and a seeded LibTorch RNG; and a
// crash in the middle of writing, for death tests of atomic writers.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace vitruvian::data {

template <std::uint64_t Seed>
class ScratchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("vitruvian_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    at::manual_seed(Seed);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

/// For a death test's child: from now on a write that takes a file past `bytes` kills the process
/// (SIGXFSZ, without a core dump), as a crash in the middle of writing would.
inline void crash_when_a_file_passes(rlim_t bytes) {
  ::prctl(PR_SET_DUMPABLE, 0);
  const rlimit limit{bytes, bytes};
  ::setrlimit(RLIMIT_FSIZE, &limit);
}

}  // namespace vitruvian::data
