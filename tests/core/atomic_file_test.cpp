// Atomic output: complete file or the old one, never a half-written one or a stray temporary.
#include "core/atomic_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/errors.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian {
namespace {

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t entries(const std::filesystem::path& dir) {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()));
}

std::vector<std::string> names(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TEST(AtomicFile, TheTemporaryNameSchemeRoundTrips) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  const std::string pid = std::to_string(::getpid());
  // target name → the extension its temporary ends with
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"report.json", ".json"},     {"labels.nii.gz", ".nii.gz"}, {"scan.nii", ".nii"},
      {"d.shard-00001.h5", ".h5"},  {"step_00000100", ""},        {"1.2.840.10008", ""},
      {"archive.tar.gz", ".tar.gz"}, {"a.gz", ".gz"},             {".hidden", ""},
      {"odd.tmp.1.2", ""},          {"x.tmp.5.6.json", ".json"},  {"trailing.", ""}};
  for (const auto& [name, extension] : cases) {
    const auto temporary = temporary_path_for(dir / name);
    const std::string file = temporary.filename().string();
    EXPECT_EQ(temporary.parent_path(), dir) << name;
    EXPECT_EQ(file.rfind("." + name + ".tmp." + pid + ".", 0), 0u) << file;
    EXPECT_TRUE(ends_with(file, extension)) << file << " should end with " << extension;
    EXPECT_TRUE(is_temporary_name(file)) << file;
    EXPECT_FALSE(is_temporary_name(name)) << name;
  }
  EXPECT_NE(temporary_path_for(dir / "a.json"), temporary_path_for(dir / "a.json"));
  EXPECT_EQ(temporary_path_for(dir / "model/").parent_path(), dir);  // a trailing '/' names the folder
  // Names in use are passed over: a killed process with the same id left them.
  const auto taken = temporary_path_for(dir / "b.json");
  std::ofstream(taken) << "leftover";
  EXPECT_NE(temporary_path_for(dir / "b.json"), taken);
  // Only the scheme is recognised: not older schemes, not look-alikes.
  for (const std::string other : {"report.json.tmp.12.3", ".step_1.tmp.999", ".a.json.tmp.12.3", ".a.json.tmp.x.3.json",
                                  ".a.json.tmp.12.json", ".a.nii.gz.tmp.1.2.gz", ".a.tmp.1.2.json", "..tmp.1.2",
                                  ".tmp.1.2", ".a.tmp.1.2.", ".a.part-00001.tmp", ".a.tmp.-1.2", ""}) {
    EXPECT_FALSE(is_temporary_name(other)) << other;
  }
  EXPECT_THROW(temporary_path_for("/"), InputError);
}

TEST(AtomicFile, AFailingFillLeavesTheTargetAndNoTemporary) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  const auto target = dir / "state.json";
  write_file_atomic(target, "old");
  std::filesystem::path seen;
  EXPECT_THROW(write_atomically(target, [&](const std::filesystem::path& temporary) {
                 seen = temporary;
                 std::ofstream(temporary) << "half of the n";
                 throw InputError("fill", "disk full");
               }),
               InputError);
  EXPECT_EQ(read(target), "old");
  EXPECT_FALSE(std::filesystem::exists(seen));
  EXPECT_EQ(names(dir), std::vector<std::string>{"state.json"});
  // A folder target: the same, whatever the fill left inside.
  const auto folder = dir / "model";
  EXPECT_THROW(write_atomically(folder, [&](const std::filesystem::path& temporary) {
                 std::filesystem::create_directories(temporary / "deep");
                 std::ofstream(temporary / "deep" / "w.bin") << "x";
                 throw std::runtime_error("crash");
               }),
               std::runtime_error);
  EXPECT_EQ(names(dir), std::vector<std::string>{"state.json"});
  // A fill that writes nothing: an InputError naming the target, nothing written.
  try {
    write_atomically(dir / "empty.json", [](const std::filesystem::path&) {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("empty.json"), std::string::npos) << e.what();
  }
  EXPECT_EQ(names(dir), std::vector<std::string>{"state.json"});
}

TEST(AtomicFile, FoldersReplaceFoldersWhole) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  const auto target = dir / "model";
  auto write_folder = [&](const std::string& file, const std::string& text) {
    write_atomically(target, [&](const std::filesystem::path& temporary) {
      std::filesystem::create_directories(temporary / "sub");
      std::ofstream(temporary / file) << text;
      std::ofstream(temporary / "sub" / file) << text;
    });
  };
  write_folder("a.txt", "one");
  EXPECT_EQ(read(target / "a.txt"), "one");
  write_folder("b.txt", "two");
  EXPECT_EQ(names(target), (std::vector<std::string>{"b.txt", "sub"}));
  EXPECT_EQ(names(target / "sub"), std::vector<std::string>{"b.txt"});
  EXPECT_EQ(read(target / "b.txt"), "two");
  EXPECT_EQ(names(dir), std::vector<std::string>{"model"});  // the old folder is gone too
  // A file does not replace a folder (nor silently delete it).
  EXPECT_THROW(write_file_atomic(target, "x"), InputError);
  EXPECT_EQ(read(target / "b.txt"), "two");
  EXPECT_EQ(names(dir), std::vector<std::string>{"model"});
}

TEST(AtomicFile, CommitNamesTheTargetWhenItFails) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  try {
    commit_atomically(dir / ".x.json.tmp.1.1.json", dir / "x.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "x.json").string() + ": the temporary"), std::string::npos) << e.what();
  }
  const auto temporary = temporary_path_for(dir / "y.json");
  std::ofstream(temporary) << "y";
  EXPECT_THROW(commit_atomically(temporary, dir / "missing" / "y.json"), InputError);
  commit_atomically(temporary, dir / "y.json");
  EXPECT_EQ(read(dir / "y.json"), "y");
}

// Killed writers (the child process ends in the middle of a write) leave temporaries that
// remove_leftover_temporaries recognises and removes, and nothing else.
TEST(AtomicFileDeathTest, LeftoversOfKilledWritersAreRemovedAndNothingElse) {
  GTEST_FLAG_SET(death_test_style, "fast");
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  write_file_atomic(dir / "report.json", "kept");
  EXPECT_EXIT(
      {
        AtomicFileWriter writer(dir / "report.json");
        writer.stream() << "half of the new rep";
        writer.stream().flush();
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(write_atomically(dir / "model",
                               [](const std::filesystem::path& temporary) {
                                 std::filesystem::create_directories(temporary);
                                 std::ofstream(temporary / "model.pt") << "weights";
                                 std::_Exit(0);
                               }),
              ::testing::ExitedWithCode(0), "");
  // Things that are not leftovers of the scheme, including one inside a subfolder.
  for (const std::string other : {".hidden", "notes.tmp", "report.json.tmp.1.2", ".step_1.tmp.999"}) {
    std::ofstream(dir / other) << "mine";
  }
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(temporary_path_for(dir / "sub" / "inner.json")) << "not looked at";
  const auto before = names(dir);
  ASSERT_EQ(before.size(), 8u) << ::testing::PrintToString(before);
  const auto removed = remove_leftover_temporaries(dir);
  ASSERT_EQ(removed.size(), 2u);
  for (const auto& path : removed) {
    EXPECT_EQ(path.parent_path(), dir);
    EXPECT_TRUE(is_temporary_name(path.filename().string())) << path;
  }
  EXPECT_EQ(names(dir), (std::vector<std::string>{".hidden", ".step_1.tmp.999", "notes.tmp", "report.json",
                                                  "report.json.tmp.1.2", "sub"}));
  EXPECT_EQ(entries(dir / "sub"), 1u);
  EXPECT_EQ(read(dir / "report.json"), "kept");
  EXPECT_TRUE(remove_leftover_temporaries(dir).empty());
  EXPECT_TRUE(remove_leftover_temporaries(dir / "missing").empty());
}

TEST(AtomicFile, WritesAndReplacesWithoutLeftovers) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
  const auto target = dir / "report.json";
  write_file_atomic(target, "{\"a\": 1}\n");
  EXPECT_EQ(read(target), "{\"a\": 1}\n");
  write_file_atomic(target, "{\"a\": 2}\n");
  EXPECT_EQ(read(target), "{\"a\": 2}\n");
  EXPECT_EQ(entries(dir), 1u);
}

TEST(AtomicFile, AbandonedWriteLeavesTheOldFileAlone) {
  const testing::ScratchDir scratch;
  const auto& dir = scratch.path();
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
