// Volume checks and voxel type names.
#include "data/volume.h"

#include <fmt/format.h>

#include "core/errors.h"

namespace vitruvian::data {

std::array<std::int64_t, 3> Volume::shape_zyx() const {
  const auto d = voxels.dim();
  return {voxels.size(d - 3), voxels.size(d - 2), voxels.size(d - 1)};
}

std::string voxel_type_name(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return "uint8";
    case VoxelType::kInt16: return "int16";
    case VoxelType::kUInt16: return "uint16";
    case VoxelType::kInt32: return "int32";
    case VoxelType::kFloat32: return "float32";
    case VoxelType::kFloat64: return "float64";
  }
  return "unknown";
}

at::ScalarType tensor_dtype(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return at::kByte;
    case VoxelType::kInt16: return at::kShort;
    case VoxelType::kUInt16:
    case VoxelType::kInt32: return at::kInt;
    case VoxelType::kFloat32: return at::kFloat;
    case VoxelType::kFloat64: return at::kDouble;
  }
  return at::kFloat;
}

std::size_t voxel_bytes(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return 1;
    case VoxelType::kInt16:
    case VoxelType::kUInt16: return 2;
    case VoxelType::kInt32:
    case VoxelType::kFloat32: return 4;
    case VoxelType::kFloat64: return 8;
  }
  return 0;
}

VoxelType voxel_type_from_name(const std::string& name, const std::string& source) {
  for (auto type : {VoxelType::kUInt8, VoxelType::kInt16, VoxelType::kUInt16, VoxelType::kInt32, VoxelType::kFloat32,
                    VoxelType::kFloat64}) {
    if (voxel_type_name(type) == name) return type;
  }
  throw InputError(source, "voxel type '" + name + "' is not one of uint8, int16, uint16, int32, float32, float64");
}

bool same_grid(const Volume& a, const Volume& b) { return a.shape_zyx() == b.shape_zyx() && a.geometry.matches(b.geometry); }

void Volume::validate(const std::string& source) const {
  if (!voxels.defined() || (voxels.dim() != 3 && voxels.dim() != 4)) {
    throw InputError(source, "expected a 3D [z,y,x] or 4D [t,z,y,x] volume, got " +
                                 (voxels.defined() ? std::to_string(voxels.dim()) + " dimensions" : "no voxels"));
  }
  if (!voxels.device().is_cpu() || !voxels.is_contiguous()) {
    throw InputError(source, "volume voxels must be a contiguous CPU tensor");
  }
  for (std::int64_t d = 0; d < voxels.dim(); ++d) {
    if (voxels.size(d) < 1) throw InputError(source, fmt::format("dimension {} is empty", d));
  }
  if (voxels.scalar_type() != tensor_dtype(type)) {
    throw InputError(source, fmt::format("a {} volume must be held in a {} tensor, not {}", voxel_type_name(type),
                                         c10::toString(tensor_dtype(type)), c10::toString(voxels.scalar_type())));
  }
  geometry.validate(source);
  if (voxels.dim() == 4 && !frame_times_s.empty() && static_cast<std::int64_t>(frame_times_s.size()) != voxels.size(0)) {
    throw InputError(source, fmt::format("{} frame times for {} frames", frame_times_s.size(), voxels.size(0)));
  }
}

FrameRange resolve_frames(FrameRange range, std::int64_t frames, const std::string& where) {
  if (frames == 0) {
    if (range.first != 0 || range.count > 1) {
      throw InputError(where, fmt::format("frames from {} of a 3D volume; expected frame 0 alone", range.first));
    }
    return {0, 1};
  }
  const std::int64_t n = range.count < 0 ? frames - range.first : range.count;
  if (range.first < 0 || n < 1 || range.first + n > frames) {
    throw InputError(where, fmt::format("frames {} to {} leave the series' {} frames", range.first, range.first + n - 1,
                                        frames));
  }
  return {range.first, n};
}

std::vector<double> frame_times_of(const std::vector<double>& times, std::int64_t frames, FrameRange range) {
  if (static_cast<std::int64_t>(times.size()) != frames) return times;
  return {times.begin() + range.first, times.begin() + range.first + range.count};
}

}  // namespace vitruvian::data
