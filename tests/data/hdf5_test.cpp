// HDF5 failures become Hdf5Error with the call, the file and HDF5's own error stack.
#include "data/hdf5.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"

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
  const auto path = std::filesystem::temp_directory_path() / "vitruvian_not_hdf5.h5";
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

}  // namespace
}  // namespace vitruvian::data
