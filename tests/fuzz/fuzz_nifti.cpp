// NIfTI import: the input is one .nii file (a .nii.gz when it starts with gzip's magic), read
// header first and then whole through data/nifti_io.h.
#include <cstdint>

#include "data/nifti_io.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const auto file = fuzz::scratch_dir() / (gzip ? "input.nii.gz" : "input.nii");
  fuzz::write_input(file, data, size);
  data::NiftiReadOptions options;
  options.max_voxels = std::int64_t{1} << 22;  // what a header may declare here: 4 Mi voxels
  fuzz::expect_typed_errors([&] {
    data::nifti_spatial_voxels(file);
    const data::Volume volume = data::read_nifti(file, options);
    if (volume.voxels.numel() > options.max_voxels) fuzz::finding("read_nifti returned more voxels than max_voxels");
  });
  return 0;
}
