// The pieces of the HDF5 volume format (docs/FORMAT.md) shared by its reader and its writer,
// private to data/: object paths, voxel type mapping, root and geometry attributes, and opening
// and creating its files. Every HDF5 call is checked; errors name the file and the object.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "data/hdf5_handle.h"
#include "data/volume_store.h"

namespace vitruvian::data::format {

/// "/studies/<study>", its series' groups and its label maps' datasets.
std::string study_path(const std::string& study);
std::string series_path(const std::string& study, const std::string& series);
std::string label_path(const std::string& study, const std::string& name);

/// The little-endian file type a voxel type is stored as.
hid_t file_type(VoxelType type);
/// The in-memory type matching tensor_dtype(type); uint16 data is converted by HDF5 to and
/// from int32.
hid_t memory_type(VoxelType type);
/// The voxel type of a stored type; nullopt for one the format does not hold. Hdf5Error naming
/// `subject` when HDF5 cannot describe the type.
std::optional<VoxelType> voxel_type_of(hid_t type, const std::string& subject);

void write_geometry(hid_t object, const Geometry& geometry, const std::string& subject);
/// Spacing, origin and direction attributes, validated; InputError naming `subject` otherwise.
Geometry read_geometry(hid_t object, const std::string& subject);

/// Root attributes: `format`, `format_version`, and the label table (both attributes absent when
/// the table is empty).
void write_root(hid_t file, const char* format, const LabelTable& labels, const std::string& subject);
LabelTable read_label_table(hid_t file, const std::string& subject);
/// InputError naming `subject` unless the root says `expected` in a version this build reads.
void check_format(hid_t file, const char* expected, const std::string& subject);

/// Opens a dataset file or index read-only. InputError naming the file when it is missing or
/// HDF5 cannot open it (a damaged superblock), with HDF5's error stack.
h5::Handle open_file(const std::filesystem::path& path);
/// Creates a new HDF5 file at `temporary` (which must not exist) for the writer of `target`;
/// InputError naming `target` when the folder is missing or not writable.
h5::Handle create_file(const std::filesystem::path& temporary, const std::filesystem::path& target);
/// Flushes and closes a file written to, checking both (HDF5 writes its metadata then).
void close_file(h5::Handle& file, const std::string& subject);
/// A link creation property list that creates missing intermediate groups.
h5::Handle intermediate_groups(const std::string& subject);

}  // namespace vitruvian::data::format
