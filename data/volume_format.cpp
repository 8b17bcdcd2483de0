// Shared pieces of the HDF5 volume format: paths, types, root and geometry attributes, files;
// and StudyInfo's lookups, used by both the reader and the writer.
#include "data/volume_format.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"

namespace vitruvian::data {

const SeriesInfo* StudyInfo::find_series(const std::string& name) const {
  for (const auto& s : series) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const LabelInfo* StudyInfo::find_label(const std::string& name) const {
  for (const auto& l : labels) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

namespace format {

using h5::checked;
using h5::Handle;

std::string study_path(const std::string& study) { return "/studies/" + study; }
std::string series_path(const std::string& study, const std::string& series) {
  return study_path(study) + "/series/" + series;
}
std::string label_path(const std::string& study, const std::string& name) { return study_path(study) + "/labels/" + name; }

hid_t file_type(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return H5T_STD_U8LE;
    case VoxelType::kInt16: return H5T_STD_I16LE;
    case VoxelType::kUInt16: return H5T_STD_U16LE;
    case VoxelType::kInt32: return H5T_STD_I32LE;
    case VoxelType::kFloat32: return H5T_IEEE_F32LE;
    case VoxelType::kFloat64: return H5T_IEEE_F64LE;
  }
  return H5T_IEEE_F32LE;
}

hid_t memory_type(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return H5T_NATIVE_UINT8;
    case VoxelType::kInt16: return H5T_NATIVE_INT16;
    case VoxelType::kUInt16:
    case VoxelType::kInt32: return H5T_NATIVE_INT32;
    case VoxelType::kFloat32: return H5T_NATIVE_FLOAT;
    case VoxelType::kFloat64: return H5T_NATIVE_DOUBLE;
  }
  return H5T_NATIVE_FLOAT;
}

std::optional<VoxelType> voxel_type_of(hid_t type, const std::string& subject) {
  const H5T_class_t type_class = H5Tget_class(type);
  check_hdf5(type_class, "H5Tget_class", subject);
  const std::size_t size = H5Tget_size(type);
  if (size == 0) check_hdf5(-1, "H5Tget_size", subject);
  if (type_class == H5T_INTEGER) {
    const H5T_sign_t sign = H5Tget_sign(type);
    check_hdf5(sign, "H5Tget_sign", subject);
    const bool is_signed = sign == H5T_SGN_2;
    if (size == 1 && !is_signed) return VoxelType::kUInt8;
    if (size == 2) return is_signed ? VoxelType::kInt16 : VoxelType::kUInt16;
    if (size == 4 && is_signed) return VoxelType::kInt32;
  } else if (type_class == H5T_FLOAT) {
    if (size == 4) return VoxelType::kFloat32;
    if (size == 8) return VoxelType::kFloat64;
  }
  return std::nullopt;
}

void write_geometry(hid_t object, const Geometry& g, const std::string& subject) {
  h5::write_doubles(object, "spacing", {g.spacing.begin(), g.spacing.end()}, {3}, subject);
  h5::write_doubles(object, "origin", {g.origin.begin(), g.origin.end()}, {3}, subject);
  h5::write_doubles(object, "direction", {g.direction.begin(), g.direction.end()}, {3, 3}, subject);
}

Geometry read_geometry(hid_t object, const std::string& subject) {
  Geometry g;
  auto need = [&](const char* name, std::size_t count) {
    auto values = h5::read_doubles(object, name, subject);
    if (!values || values->size() != count) {
      throw InputError(subject, fmt::format("attribute '{}' is missing or does not hold {} numbers", name, count));
    }
    return *values;
  };
  const auto spacing = need("spacing", 3), origin = need("origin", 3), direction = need("direction", 9);
  std::copy(spacing.begin(), spacing.end(), g.spacing.begin());
  std::copy(origin.begin(), origin.end(), g.origin.begin());
  std::copy(direction.begin(), direction.end(), g.direction.begin());
  g.validate(subject);
  return g;
}

void write_root(hid_t file, const char* format, const LabelTable& labels, const std::string& subject) {
  h5::write_string(file, "format", format, subject);
  h5::write_ints(file, "format_version", {kFormatVersion}, subject);
  std::vector<long long> ids;
  std::vector<std::string> names;
  for (const auto& [id, name] : labels) {
    ids.push_back(id);
    names.push_back(name);
  }
  if (ids.empty()) return;  // no label table: both attributes absent
  h5::write_ints(file, "label_ids", ids, subject);
  h5::write_strings(file, "label_names", names, subject);
}

LabelTable read_label_table(hid_t file, const std::string& subject) {
  LabelTable table;
  const auto ids = h5::read_ints(file, "label_ids", subject);
  const auto names = h5::read_strings(file, "label_names", subject);
  if (!ids || !names) return table;
  if (ids->size() != names->size()) {
    throw InputError(subject, fmt::format("{} label ids but {} label names; expected one name per id", ids->size(), names->size()));
  }
  for (std::size_t i = 0; i < ids->size(); ++i) table[static_cast<int>((*ids)[i])] = (*names)[i];
  return table;
}

void check_format(hid_t file, const char* expected, const std::string& subject) {
  const auto format = h5::read_string(file, "format", subject);
  if (!format) {
    throw InputError(subject, std::string("no 'format' attribute at the root; expected a '") + expected +
                                  "' file (convert images with `vitruvian convert`)");
  }
  if (*format != expected) {
    throw InputError(subject, "format is '" + *format + "'; expected '" + expected + "'");
  }
  const auto version = h5::read_ints(file, "format_version", subject);
  if (!version || version->size() != 1 || (*version)[0] < 1 || (*version)[0] > kFormatVersion) {
    throw InputError(subject, fmt::format("format version {}; this build reads versions 1 to {}",
                                          version && !version->empty() ? std::to_string((*version)[0]) : "missing",
                                          kFormatVersion));
  }
}

Handle open_file(const std::filesystem::path& path) {
  silence_hdf5_errors();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw InputError(path.string(), "no such file (expected an HDF5 dataset or shard index)");
  }
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    const std::string stack = take_hdf5_error_stack();
    std::string detail = "not a readable HDF5 file";
    if (H5Fis_hdf5(path.c_str()) <= 0) detail += " (no HDF5 signature)";
    H5Eclear2(H5E_DEFAULT);
    throw InputError(path.string(), detail + (stack.empty() ? "" : ": " + stack));
  }
  return Handle(id, H5Fclose);
}

Handle create_file(const std::filesystem::path& temporary, const std::filesystem::path& target) {
  silence_hdf5_errors();
  const hid_t id = H5Fcreate(temporary.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) {
    const std::string stack = take_hdf5_error_stack();
    throw InputError(target.string(), "cannot create a file in this folder (expected an existing, writable folder)" +
                                          (stack.empty() ? "" : ": " + stack));
  }
  return Handle(id, H5Fclose);
}

void close_file(Handle& file, const std::string& subject) {
  check_hdf5(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "H5Fflush", subject);
  file.close("H5Fclose", subject);
}

Handle intermediate_groups(const std::string& subject) {
  Handle lcpl = checked(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "H5Pcreate", subject);
  check_hdf5(H5Pset_create_intermediate_group(lcpl.get(), 1), "H5Pset_create_intermediate_group", subject);
  return lcpl;
}

}  // namespace format
}  // namespace vitruvian::data
