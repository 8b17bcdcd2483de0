// The in-memory volume every importer produces and the store reads and writes: voxels in a
// CPU tensor plus the geometry that places them in the patient.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/geometry.h"

namespace vitruvian::data {

/// Element type of a volume in files. LibTorch 1.13 has no uint16 tensors, so uint16 voxels
/// live in int32 tensors in memory and are written back as uint16.
enum class VoxelType { kUInt8, kInt16, kUInt16, kInt32, kFloat32, kFloat64 };

/// "uint8", "int16", "uint16", "int32", "float32", "float64": the names FORMAT.md and
/// `inspect` use.
std::string voxel_type_name(VoxelType type);
/// The tensor dtype that holds it in memory (uint16 → int32).
at::ScalarType tensor_dtype(VoxelType type);
/// Bytes per voxel in files.
std::size_t voxel_bytes(VoxelType type);
/// Whether voxels of `type` are stored as floating point (float32, float64), not as whole numbers.
inline bool is_floating(VoxelType type) { return type == VoxelType::kFloat32 || type == VoxelType::kFloat64; }
/// Inverse of voxel_type_name; throws InputError naming `source` for anything else.
VoxelType voxel_type_from_name(const std::string& name, const std::string& source);

/// Voxels as a contiguous CPU tensor, [z, y, x] (3D) or [t, z, y, x] (4D: perfusion, dynamic
/// MR), of dtype tensor_dtype(type). Images may be any VoxelType (usually int16, uint16 or
/// float32); label maps are uint8 or uint16.
struct Volume {
  at::Tensor voxels;
  VoxelType type = VoxelType::kInt16;
  Geometry geometry;
  std::vector<double> frame_times_s;  ///< 4D only: acquisition time of each frame, seconds
  std::string modality;               ///< "CT", "MR", or "" when the source does not say

  std::int64_t frames() const { return voxels.dim() == 4 ? voxels.size(0) : 1; }
  /// Spatial size [z, y, x].
  std::array<std::int64_t, 3> shape_zyx() const;
  /// Throws InputError naming `source` when the tensor is not a 3D/4D contiguous CPU tensor of
  /// dtype tensor_dtype(type), the geometry is invalid, or frame times do not match the frames.
  void validate(const std::string& source) const;
};

/// True when `a` and `b` lie on one grid: the same [z, y, x] shape and matching geometry
/// (Geometry::matches).
bool same_grid(const Volume& a, const Volume& b);

/// Frames [first, first + count) of a series: count < 0 means all from first.
struct FrameRange {
  std::int64_t first = 0, count = -1;
};
/// `range` resolved against a volume of `frames` frames (0: a 3D volume, which has frame 0
/// alone); InputError at `where` when it leaves them.
FrameRange resolve_frames(FrameRange range, std::int64_t frames, const std::string& where);
/// The times of the resolved `range` out of one per frame; a list that is not one per frame is
/// returned whole, for the analysis's own check to name.
std::vector<double> frame_times_of(const std::vector<double>& times, std::int64_t frames, FrameRange range);

}  // namespace vitruvian::data
