// HDF5 failures become Hdf5Error with the call, the file and HDF5's own error stack.
#include "data/hdf5.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian::data {
namespace {

TEST(Hdf5, VersionOfTheLoadedLibrary) {
  const std::string version = hdf5_version();
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  EXPECT_EQ(version, std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release));
}

TEST(Hdf5, OpeningANonHdf5FileGivesTheStack) {
  silence_hdf5_errors();
  const testing::ScratchDir scratch;
  const auto path = scratch / "not_hdf5.h5";
  std::ofstream(path) << "this is not an HDF5 file";
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  try {
    check_hdf5(file, "H5Fopen", path.string());
    FAIL() << "HDF5 opened a text file";
  } catch (const Hdf5Error& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("H5Fopen on '" + path.string() + "'"), std::string::npos) << text;
    EXPECT_NE(text.find("#0 H5Fopen"), std::string::npos) << text;  // walked HDF5 error stack
  }
  EXPECT_NO_THROW(check_hdf5(0, "H5Fclose", "x"));
}

TEST(Hdf5, TheInnermostErrorComesFirstOnOneLine) {
  silence_hdf5_errors();
  const hid_t file = H5Fopen("/nonexistent-folder/x.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
  try {
    check_hdf5(file, "H5Fopen", "/nonexistent-folder/x.h5");
    FAIL();
  } catch (const Hdf5Error& e) {
    const std::string detail = e.detail();
    EXPECT_LT(detail.find(" (HDF5 error stack: #0 H5Fopen: "), detail.find("#1 ")) << detail;
    EXPECT_NE(detail.find(" (HDF5 error stack: "), 0u) << detail;  // what is wrong comes first
    EXPECT_EQ(detail.find('\n'), std::string::npos) << detail;
  }
  EXPECT_EQ(take_hdf5_error_stack(), "");  // taken and cleared
}

// Calls whose result cannot tell failure from an answer are checked through the error stack.
TEST(Hdf5, AmbiguousResultsAreCheckedThroughTheStack) {
  silence_hdf5_errors();
  EXPECT_EQ(H5Dget_storage_size(H5I_INVALID_HID), 0u);
  EXPECT_THROW(check_hdf5_stack("H5Dget_storage_size", "x.h5:/d"), Hdf5Error);
  EXPECT_GE(H5Eget_num(H5E_DEFAULT), 0);
  EXPECT_EQ(H5Eget_num(H5E_DEFAULT), 0);  // cleared by the throw
  EXPECT_NO_THROW(check_hdf5_stack("nothing failed", "x.h5"));
}

}  // namespace
}  // namespace vitruvian::data
