// NIfTI-1 and NIfTI-2 (.nii, .nii.gz) import and export through the NIfTI C library, with
// geometry converted between NIfTI's RAS world and the store's LPS (data/geometry.h).
#pragma once

#include <cstdint>
#include <filesystem>

#include "data/volume.h"

namespace vitruvian::data {

struct NiftiReadOptions {
  std::int64_t max_voxels = std::int64_t{1} << 31;  ///< refuse larger headers before allocating
};

/// Reads a 3D or 4D NIfTI image: uint8, int16, uint16, int32, float32 or float64 voxels.
/// scl_slope/scl_inter (when slope is neither 0 nor the identity) are applied; the result stays
/// in the source type when every scaled value is an integer that fits it, else float32.
/// Geometry from the sform when its code is set, else the qform, else the voxel sizes alone
/// (nibabel's order). 4D: frame times from pixdim[4] and toffset (seconds).
/// Throws InputError naming the file: unsupported type or dimensionality, oversized or
/// truncated data, sheared affine.
Volume read_nifti(const std::filesystem::path& path, const NiftiReadOptions& options = {});

enum class NiftiVersion { kNifti1, kNifti2 };

/// Writes `volume` to `path` (.nii or .nii.gz), sform and qform both set (code 1, scanner
/// anatomical) from the geometry, atomically (temporary name, then rename). NIfTI-2 is used
/// when asked or when a dimension exceeds NIfTI-1's 32767.
void write_nifti(const std::filesystem::path& path, const Volume& volume, NiftiVersion version = NiftiVersion::kNifti1);

/// True for names ending in .nii or .nii.gz.
bool is_nifti_path(const std::filesystem::path& path);

/// Spatial voxels (x · y · z) of a NIfTI file, from its header alone; 0 when the header cannot
/// be read (read_nifti then says why), the largest int64 when the product exceeds it. For
/// ordering work by size before anything is loaded.
std::int64_t nifti_spatial_voxels(const std::filesystem::path& path);

}  // namespace vitruvian::data
