// A test's own empty folder under the system's temporary folder, removed with the object: on
// every way out of the test, a failed assertion included. Named after the running test and the
// process, so two builds' suites, or two ranks of one, never share one.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>

namespace vitruvian::testing {

class ScratchDir {
 public:
  /// `tag` tells apart two folders of one test.
  explicit ScratchDir(const std::string& tag = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "vitruvian_" + std::to_string(::getpid());
    if (info != nullptr) name += std::string("_") + info->test_suite_name() + "_" + info->name();
    if (!tag.empty()) name += "_" + tag;
    std::replace(name.begin(), name.end(), '/', '_');  // parameterised tests' names hold '/'
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace vitruvian::testing
