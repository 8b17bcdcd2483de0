// Atomic output: complete file or the old one, never a half-written one or a stray temporary.
#include "core/atomic_file.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/errors.h"

namespace vitruvian {
namespace {

std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("vitruvian_atomic_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t entries(const std::filesystem::path& dir) {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()));
}

TEST(AtomicFile, WritesAndReplacesWithoutLeftovers) {
  const auto dir = fresh_dir("replace");
  const auto target = dir / "report.json";
  write_file_atomic(target, "{\"a\": 1}\n");
  EXPECT_EQ(read(target), "{\"a\": 1}\n");
  write_file_atomic(target, "{\"a\": 2}\n");
  EXPECT_EQ(read(target), "{\"a\": 2}\n");
  EXPECT_EQ(entries(dir), 1u);
}

TEST(AtomicFile, AbandonedWriteLeavesTheOldFileAlone) {
  const auto dir = fresh_dir("abandon");
  const auto target = dir / "labels.txt";
  write_file_atomic(target, "old");
  try {
    AtomicFileWriter writer(target);
    writer.stream() << "half of the new cont";
    EXPECT_TRUE(std::filesystem::exists(writer.temporary_path()));
    throw std::runtime_error("crash in the middle");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read(target), "old");
  EXPECT_EQ(entries(dir), 1u);
}

TEST(AtomicFile, MissingFolderIsAnInputErrorNamingThePath) {
  try {
    write_file_atomic("/nonexistent-folder/out.json", "x");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-folder/out.json: cannot create a file"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace vitruvian
