// DICOM series import: the input is a folder of files, one after another separated by the line
// "--next-file--" (at most 8 files), imported by read_dicom_series and listed by
// list_dicom_studies as `vitruvian convert DICOM_DIR` and the campaign's DICOM source do.
#include <dcmtk/config/osconfig.h>  // first: DCMTK's configuration
#include <dcmtk/oflog/oflog.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "data/dicom_io.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

namespace {

constexpr const char* kSeparator = "\n--next-file--\n";
constexpr int kMaxFiles = 8;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // a broken file is a rejection, not a log line
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto folder = fuzz::scratch_dir() / "series";
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t separator = std::strlen(kSeparator);
  std::size_t start = 0;
  for (int n = 0; n < kMaxFiles && start <= bytes.size(); ++n) {
    std::size_t end = bytes.find(kSeparator, start);
    if (end == std::string::npos || n == kMaxFiles - 1) end = bytes.size();
    fuzz::write_input(folder / ("slice" + std::to_string(n) + ".dcm"), data + start, end - start);
    start = end + separator;
  }
  data::DicomReadOptions options;
  options.max_voxels = std::int64_t{1} << 22;
  fuzz::expect_typed_errors([&] {
    const data::DicomScan scan = data::read_dicom_series(folder, options);
    for (const auto& rejection : scan.rejected) fuzz::check_one_line(rejection.reason);
    for (const auto& series : scan.series) {
      if (series.volume.voxels.numel() > options.max_voxels) fuzz::finding("a series with more voxels than max_voxels");
      if (series.files.size() != series.identity.sop_instance_uids.size()) {
        fuzz::finding("a series whose files and SOP instance UIDs differ in number");
      }
    }
  });
  fuzz::expect_typed_errors([&] {
    const data::DicomListing listing = data::list_dicom_studies(folder);
    for (const auto& rejection : listing.rejected) fuzz::check_one_line(rejection.reason);
  });
  return 0;
}
