// VolumeWriter, ShardedVolumeWriter and VolumeStore over the HDF5 C API (layout: docs/FORMAT.md).
#include "data/volume_store.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>

#include "core/errors.h"
#include "data/chunk_reader.h"
#include "data/hdf5_handle.h"

namespace vitruvian::data {
namespace {

using h5::checked;
using h5::Handle;

/// HDF5's registered id of the LZ4 filter (Debian's hdf5-filter-plugin).
constexpr H5Z_filter_t kLz4Filter = 32004;

std::filesystem::path temporary_name(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  std::filesystem::path name = target;
  name += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  return name;
}

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

/// The in-memory type matching tensor_dtype(type); uint16 data is converted by HDF5 to and
/// from int32.
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

std::optional<VoxelType> voxel_type_of(hid_t type) {
  const H5T_class_t type_class = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  if (type_class == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (size == 1 && !is_signed) return VoxelType::kUInt8;
    if (size == 2) return is_signed ? VoxelType::kInt16 : VoxelType::kUInt16;
    if (size == 4 && is_signed) return VoxelType::kInt32;
  } else if (type_class == H5T_FLOAT) {
    if (size == 4) return VoxelType::kFloat32;
    if (size == 8) return VoxelType::kFloat64;
  }
  return std::nullopt;
}

std::string series_path(const std::string& study, const std::string& series) {
  return "/studies/" + study + "/series/" + series;
}
std::string label_path(const std::string& study, const std::string& name) { return "/studies/" + study + "/labels/" + name; }

void check_name(const std::string& name, const char* what, const std::string& source) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw InputError(source, fmt::format("{} name '{}' is not usable; expected a non-empty name without '/'", what, name));
  }
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

std::string describe_compression(int deflate, bool shuffle) {
  if (deflate <= 0) return "none";
  return fmt::format("{}deflate-{}", shuffle ? "shuffle+" : "", deflate);
}

/// Creates and writes one dataset of `volume` at `path` (parents created).
std::int64_t write_volume(hid_t file, const std::string& path, const Volume& volume, VoxelType stored,
                          const StorageOptions& options, const std::string& subject, std::vector<std::int64_t>& chunk,
                          std::string& compression) {
  const auto& voxels = volume.voxels;
  std::vector<hsize_t> dims(voxels.sizes().begin(), voxels.sizes().end());
  Handle space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                         "H5Screate_simple", subject);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  chunk.clear();
  compression = "none";
  const bool chunked = options.chunk_zyx[0] > 0 && options.chunk_zyx[1] > 0 && options.chunk_zyx[2] > 0;
  if (chunked) {
    std::vector<hsize_t> chunk_dims(dims.size(), 1);
    for (int axis = 0; axis < 3; ++axis) {
      const std::size_t d = dims.size() - 3 + axis;
      chunk_dims[d] = std::min<hsize_t>(dims[d], static_cast<hsize_t>(options.chunk_zyx[axis]));
    }
    check_hdf5(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk_dims.size()), chunk_dims.data()), "H5Pset_chunk", subject);
    chunk.assign(chunk_dims.begin(), chunk_dims.end());
    if (options.lz4) {
      if (H5Zfilter_avail(kLz4Filter) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        throw InputError(subject, "LZ4 compression needs HDF5's LZ4 filter plugin (Debian: hdf5-filter-plugin); "
                                  "install it or use deflate");
      }
      if (options.shuffle) check_hdf5(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle", subject);
      const unsigned block_size[1] = {0};  // the plugin's default block (the whole chunk here)
      check_hdf5(H5Pset_filter(dcpl.get(), kLz4Filter, H5Z_FLAG_MANDATORY, 1, block_size), "H5Pset_filter(lz4)", subject);
      compression = options.shuffle ? "shuffle+lz4" : "lz4";
    } else if (options.deflate_level > 0) {
      if (options.shuffle) check_hdf5(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle", subject);
      check_hdf5(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(std::min(options.deflate_level, 9))), "H5Pset_deflate",
                 subject);
      compression = describe_compression(options.deflate_level, options.shuffle);
    }
  } else if (options.deflate_level > 0 || options.lz4) {
    throw InputError(subject, "compression needs chunked storage; set a chunk shape or deflate level 0");
  }
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle dataset = checked(H5Dcreate2(file, path.c_str(), file_type(stored), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                           H5Dclose, "H5Dcreate2 " + path, subject);
  check_hdf5(H5Dwrite(dataset.get(), memory_type(stored), H5S_ALL, H5S_ALL, H5P_DEFAULT, voxels.data_ptr()),
             "H5Dwrite " + path, subject);
  return static_cast<std::int64_t>(H5Dget_storage_size(dataset.get()));
}

void check_uint16_range(const Volume& volume, const std::string& subject) {
  if (volume.type != VoxelType::kUInt16) return;
  const auto [low, high] = at::aminmax(volume.voxels);
  if (low.item<std::int64_t>() < 0 || high.item<std::int64_t>() > 65535) {
    throw InputError(subject, fmt::format("uint16 voxels out of range [{}, {}]; expected 0..65535", low.item<std::int64_t>(),
                                          high.item<std::int64_t>()));
  }
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

void rename_into_place(const std::filesystem::path& temporary, const std::filesystem::path& target) {
  std::error_code error;
  std::filesystem::rename(temporary, target, error);
  if (error) throw InputError(target.string(), "cannot rename the finished temporary file into place: " + error.message());
}

}  // namespace

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

// ---------------------------------------------------------------------------------------------
// VolumeWriter

struct VolumeWriter::State {
  std::filesystem::path target, temporary;
  StorageOptions options;
  Handle file;
  LabelTable labels;
  std::vector<StudyInfo> studies;
  bool committed = false;

  StudyInfo& study(const std::string& id, const std::string& source) {
    for (auto& s : studies) {
      if (s.id == id) return s;
    }
    check_name(id, "study", source);
    studies.push_back(StudyInfo{id, {}, {}, "", 0});
    return studies.back();
  }
};

VolumeWriter::VolumeWriter(std::filesystem::path path, StorageOptions options) : state_(std::make_unique<State>()) {
  silence_hdf5_errors();
  state_->target = std::move(path);
  state_->temporary = temporary_name(state_->target);
  state_->options = options;
  const hid_t file = H5Fcreate(state_->temporary.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(state_->target.string(), "cannot create a file in this folder (expected an existing, writable folder)");
  }
  state_->file = Handle(file, H5Fclose);
}

void check_label_grid(const Volume& label, const std::string& reference_name,
                      const std::array<std::int64_t, 3>& reference_zyx, const Geometry& reference_geometry,
                      const std::string& source) {
  const auto zyx = label.shape_zyx();
  if (zyx != reference_zyx) {
    throw InputError(source, fmt::format("label map shape {} differs from series '{}' shape {}; expected the same grid",
                                         fmt::join(zyx, "x"), reference_name, fmt::join(reference_zyx, "x")));
  }
  if (!label.geometry.matches(reference_geometry)) {
    throw InputError(source, "label map geometry (" + label.geometry.describe() + ") differs from series '" +
                                 reference_name + "' (" + reference_geometry.describe() + "); expected the same grid");
  }
}

VolumeWriter::~VolumeWriter() {
  if (state_ && !state_->committed) {
    state_->file.reset();
    std::error_code ignored;
    std::filesystem::remove(state_->temporary, ignored);
  }
}

void VolumeWriter::set_label_table(const LabelTable& table) { state_->labels = table; }

void VolumeWriter::add_series(const std::string& study, const std::string& series, const Volume& volume,
                              const std::string& source) {
  volume.validate(source);
  check_name(series, "series", source);
  check_uint16_range(volume, source);
  StudyInfo& info = state_->study(study, source);
  if (info.find_series(series) != nullptr) {
    throw InputError(source, "study '" + study + "' already has a series '" + series + "'");
  }
  const std::string path = series_path(study, series);
  SeriesInfo s;
  s.name = series;
  s.modality = volume.modality;
  s.type = volume.type;
  s.shape.assign(volume.voxels.sizes().begin(), volume.voxels.sizes().end());
  s.geometry = volume.geometry;
  s.frame_times_s = volume.frame_times_s;
  s.stored_bytes = write_volume(state_->file.get(), path + "/image", volume, volume.type, state_->options, source, s.chunk,
                                s.compression);
  Handle group = checked(H5Gopen2(state_->file.get(), path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2 " + path, source);
  write_geometry(group.get(), volume.geometry, source);
  h5::write_string(group.get(), "modality", volume.modality, source);
  if (!volume.frame_times_s.empty()) {
    h5::write_doubles(group.get(), "frame_times_s", volume.frame_times_s, {volume.frame_times_s.size()}, source);
  }
  const auto zyx = volume.shape_zyx();
  info.voxels = std::max(info.voxels, zyx[0] * zyx[1] * zyx[2]);
  info.series.push_back(std::move(s));
}

void VolumeWriter::add_label(const std::string& study, const std::string& name, const std::string& reference_series,
                             const Volume& label, const std::string& source) {
  label.validate(source);
  check_name(name, "label map", source);
  if (label.type != VoxelType::kUInt8 && label.type != VoxelType::kUInt16) {
    throw InputError(source, "label voxels are " + voxel_type_name(label.type) + "; expected uint8 or uint16");
  }
  if (label.voxels.dim() != 3) throw InputError(source, "a label map must be 3D [z,y,x]");
  check_uint16_range(label, source);
  StudyInfo& info = state_->study(study, source);
  const SeriesInfo* reference = info.find_series(reference_series);
  if (reference == nullptr) {
    throw InputError(source, "label map '" + name + "' refers to series '" + reference_series + "', which study '" + study +
                                 "' does not have (add the series first)");
  }
  const std::vector<std::int64_t> ref_zyx(reference->shape.end() - 3, reference->shape.end());
  check_label_grid(label, reference_series, {ref_zyx[0], ref_zyx[1], ref_zyx[2]}, reference->geometry, source);
  if (info.find_label(name) != nullptr) throw InputError(source, "study '" + study + "' already has a label map '" + name + "'");
  LabelInfo l;
  l.name = name;
  l.reference_series = reference_series;
  l.type = label.type;
  l.shape = ref_zyx;
  const std::string path = label_path(study, name);
  l.stored_bytes = write_volume(state_->file.get(), path, label, label.type, state_->options, source, l.chunk, l.compression);
  Handle dataset = checked(H5Dopen2(state_->file.get(), path.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2 " + path, source);
  h5::write_string(dataset.get(), "reference_series", reference_series, source);
  write_geometry(dataset.get(), reference->geometry, source);
  info.labels.push_back(std::move(l));
}

void VolumeWriter::set_study_metadata(const std::string& study, const std::string& json) {
  StudyInfo& info = state_->study(study, state_->target.string());
  info.metadata_json = json;
}

const std::vector<StudyInfo>& VolumeWriter::studies() const { return state_->studies; }

void VolumeWriter::commit() {
  const std::string subject = state_->target.string();
  const hid_t file = state_->file.get();
  write_root(file, kFormatName, state_->labels, subject);
  for (const auto& study : state_->studies) {
    const std::string path = "/studies/" + study.id;
    Handle group = checked(H5Gopen2(file, path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2 " + path, subject);
    if (!study.metadata_json.empty()) h5::write_string(group.get(), "metadata_json", study.metadata_json, subject);
  }
  check_hdf5(H5Fflush(file, H5F_SCOPE_GLOBAL), "H5Fflush", subject);
  state_->file.reset();  // closes the file; its data is on disk before the rename
  rename_into_place(state_->temporary, state_->target);
  state_->committed = true;
}

// ---------------------------------------------------------------------------------------------
// ShardedVolumeWriter

struct ShardedVolumeWriter::State {
  std::filesystem::path index;
  std::int64_t per_shard = 1;
  StorageOptions options;
  LabelTable labels;
  std::unique_ptr<VolumeWriter> current;
  std::vector<std::string> shard_names;
  std::vector<std::string> study_ids;
  std::vector<long long> study_shards, study_voxels;
  std::int64_t in_current = 0;
  std::vector<std::filesystem::path> written;
  bool committed = false;

  void close_shard() {
    if (!current) return;
    for (const auto& s : current->studies()) {
      study_ids.push_back(s.id);
      study_shards.push_back(static_cast<long long>(shard_names.size()) - 1);
      study_voxels.push_back(s.voxels);
    }
    current->set_label_table(labels);
    current->commit();
    written.push_back(index.parent_path() / shard_names.back());
    current.reset();
    in_current = 0;
  }
};

ShardedVolumeWriter::ShardedVolumeWriter(std::filesystem::path index_path, std::int64_t studies_per_shard,
                                         StorageOptions options)
    : state_(std::make_unique<State>()) {
  if (studies_per_shard < 1) {
    throw InputError(index_path.string(), fmt::format("{} studies per shard; expected at least 1", studies_per_shard));
  }
  state_->index = std::move(index_path);
  state_->per_shard = studies_per_shard;
  state_->options = options;
}

ShardedVolumeWriter::~ShardedVolumeWriter() {
  if (state_ && !state_->committed) {
    state_->current.reset();
    std::error_code ignored;
    for (const auto& path : state_->written) std::filesystem::remove(path, ignored);
  }
}

void ShardedVolumeWriter::set_label_table(const LabelTable& table) { state_->labels = table; }

VolumeWriter& ShardedVolumeWriter::begin_study(const std::string& study) {
  State& s = *state_;
  if (std::find(s.study_ids.begin(), s.study_ids.end(), study) != s.study_ids.end()) {
    throw InputError(s.index.string(), "study '" + study + "' is already in the dataset");
  }
  if (s.current && s.in_current >= s.per_shard) s.close_shard();
  if (!s.current) {
    const std::string name = fmt::format("{}.shard-{:05d}.h5", s.index.stem().string(), s.shard_names.size());
    s.shard_names.push_back(name);
    s.current = std::make_unique<VolumeWriter>(s.index.parent_path() / name, s.options);
  }
  ++s.in_current;
  return *s.current;
}

namespace {

/// Creates a new HDF5 file at a temporary name next to `target`.
Handle create_temporary(const std::filesystem::path& target, const std::filesystem::path& temporary) {
  silence_hdf5_errors();
  const hid_t id = H5Fcreate(temporary.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) {
    H5Eclear2(H5E_DEFAULT);
    throw InputError(target.string(), "cannot create a file in this folder (expected an existing, writable folder)");
  }
  return Handle(id, H5Fclose);
}

void write_index_file(const std::filesystem::path& index, const LabelTable& labels, const std::vector<std::string>& shard_names,
                      const std::vector<std::string>& study_ids, const std::vector<long long>& study_shards,
                      const std::vector<long long>& study_voxels) {
  const std::string subject = index.string();
  const auto temporary = temporary_name(index);
  try {
    Handle file = create_temporary(index, temporary);
    write_root(file.get(), kIndexFormatName, labels, subject);
    h5::write_strings(file.get(), "shards", shard_names, subject);
    h5::write_strings(file.get(), "study_ids", study_ids, subject);
    h5::write_ints(file.get(), "study_shards", study_shards, subject);
    h5::write_ints(file.get(), "study_voxels", study_voxels, subject);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  rename_into_place(temporary, index);
}

}  // namespace

void ShardedVolumeWriter::commit() {
  State& s = *state_;
  s.close_shard();
  write_index_file(s.index, s.labels, s.shard_names, s.study_ids, s.study_shards, s.study_voxels);
  s.committed = true;
}

void write_shard_index(const std::filesystem::path& index_path, const std::vector<std::string>& shard_names,
                       const LabelTable& labels) {
  std::vector<std::string> ids;
  std::set<std::string> seen;
  std::vector<long long> shards, voxels;
  for (std::size_t n = 0; n < shard_names.size(); ++n) {
    const VolumeStore shard(index_path.parent_path() / shard_names[n]);
    for (const StudyInfo& study : shard.studies()) {
      if (!seen.insert(study.id).second) {
        throw InputError(shard.path().string(), "study '" + study.id + "' is already in another shard");
      }
      ids.push_back(study.id);
      shards.push_back(static_cast<long long>(n));
      voxels.push_back(study.voxels);
    }
  }
  write_index_file(index_path, labels, shard_names, ids, shards, voxels);
}

void merge_volume_files(const std::vector<std::filesystem::path>& parts, const std::filesystem::path& target,
                        const LabelTable& labels) {
  const std::string subject = target.string();
  const auto temporary = temporary_name(target);
  try {
    Handle out = create_temporary(target, temporary);
    write_root(out.get(), kFormatName, labels, subject);
    Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    H5Pset_create_intermediate_group(lcpl.get(), 1);
    std::set<std::string> seen;
    for (const auto& part : parts) {
      std::vector<std::string> ids;
      {
        const VolumeStore checked_part(part);  // refuses parts that are not sound datasets
        for (const StudyInfo& study : checked_part.studies()) ids.push_back(study.id);
      }
      Handle in = checked(H5Fopen(part.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "H5Fopen", part.string());
      for (const std::string& id : ids) {
        if (!seen.insert(id).second) throw InputError(part.string(), "study '" + id + "' is already in an earlier part");
        const std::string path = "/studies/" + id;
        check_hdf5(H5Ocopy(in.get(), path.c_str(), out.get(), path.c_str(), H5P_DEFAULT, lcpl.get()), "H5Ocopy " + path,
                   part.string());
      }
    }
    check_hdf5(H5Fflush(out.get(), H5F_SCOPE_GLOBAL), "H5Fflush", subject);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  rename_into_place(temporary, target);
}

// ---------------------------------------------------------------------------------------------
// VolumeStore

struct VolumeStore::State {
  std::filesystem::path path;
  ReadOptions options;
  bool sharded = false;
  std::vector<Handle> files;  // one per shard (one in all for a plain dataset)
  std::vector<std::string> file_names;
  std::vector<StudyInfo> studies;
  std::vector<std::size_t> study_file;  // index into files, per study
  std::map<std::string, std::size_t> by_id;
  LabelTable labels;
  mutable std::mutex mutex;
  /// An open dataset: its handle, its chunk layout when its chunks can be read directly (see
  /// chunk_reader.h), and the number naming it in chunk_cache (its order of opening).
  struct OpenDataset {
    Handle handle;
    std::optional<h5::ChunkLayout> layout;
    std::size_t number = 0;
  };
  mutable std::map<std::string, OpenDataset> datasets;  // "<file>:<path>" → open dataset
  /// Decoded chunks of every dataset of the store (ReadOptions::chunk_cache_bytes in all).
  std::unique_ptr<h5::ChunkCache> chunk_cache;

  std::size_t find(const std::string& id) const {
    auto it = by_id.find(id);
    if (it == by_id.end()) throw InputError(path.string(), "no study '" + id + "' in this dataset");
    return it->second;
  }

  /// An open dataset, with its chunk layout when its chunks can be read directly.
  struct Open {
    hid_t id;
    const h5::ChunkLayout* layout;  ///< null: read through H5Dread
    std::size_t number;             ///< names it in chunk_cache
  };

  /// Reads the box [start, start+size) (all frames of a 4D dataset) of `object` in file `file`.
  at::Tensor read_box(std::size_t file, const std::string& object, VoxelType type, const std::vector<std::int64_t>& shape,
                      std::array<std::int64_t, 3> start, std::array<std::int64_t, 3> size) const;

  Open dataset(std::size_t file, const std::string& object, VoxelType type) const {
    std::lock_guard<std::mutex> lock(mutex);
    const std::string key = std::to_string(file) + ":" + object;
    auto it = datasets.find(key);
    if (it == datasets.end()) {
      Handle dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
      // HDF5's own chunk cache serves only datasets the direct path cannot decode.
      if (options.chunk_cache_bytes > 0) {
        // Slots: a prime well above the number of chunks the cache can hold (HDF5's advice).
        // HDF5's cache is per dataset: at most 64 MiB of the budget each.
        const auto bytes = std::min<std::int64_t>(options.chunk_cache_bytes, std::int64_t{64} << 20);
        H5Pset_chunk_cache(dapl.get(), 12421, static_cast<std::size_t>(bytes), 0.75);
      }
      Handle handle = checked(H5Dopen2(files[file].get(), object.c_str(), dapl.get()), H5Dclose, "H5Dopen2 " + object,
                              file_names[file]);
      // Direct chunk reads hand back file bytes: only when they are already the memory layout.
      std::optional<h5::ChunkLayout> layout;
      Handle stored_type(H5Dget_type(handle.get()), H5Tclose);
      if (options.direct_chunk_reads && H5Tequal(stored_type.get(), file_type(type)) > 0) {
        layout = h5::decodable_layout(handle.get(), voxel_bytes(type));
      }
      const std::size_t number = datasets.size();
      it = datasets.emplace(key, OpenDataset{std::move(handle), std::move(layout), number}).first;
    }
    const OpenDataset& open = it->second;
    return {open.handle.get(), open.layout ? &*open.layout : nullptr, open.number};
  }
};

namespace {

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
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0) {
    std::string detail = "not a readable HDF5 file";
    if (H5Fis_hdf5(path.c_str()) <= 0) detail += " (no HDF5 signature)";
    H5Eclear2(H5E_DEFAULT);
    throw InputError(path.string(), detail);
  }
  return Handle(id, H5Fclose);
}

/// Shape, type, chunking, compression of one dataset, with the safety checks.
struct DatasetFacts {
  VoxelType type = VoxelType::kUInt8;
  std::vector<std::int64_t> shape, chunk;
  std::string compression = "none";
  std::int64_t stored_bytes = 0;
};

DatasetFacts inspect_dataset(hid_t file, const std::string& object, const std::string& subject, std::int64_t max_voxels,
                             std::uintmax_t file_size) {
  const std::string where = subject + ":" + object;
  Handle dataset = checked(H5Dopen2(file, object.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2 " + object, subject);
  DatasetFacts facts;
  Handle type = checked(H5Dget_type(dataset.get()), H5Tclose, "H5Dget_type", where);
  const auto voxel_type = voxel_type_of(type.get());
  if (!voxel_type) throw InputError(where, "element type is not one of uint8, int16, uint16, int32, float32, float64");
  facts.type = *voxel_type;
  Handle space = checked(H5Dget_space(dataset.get()), H5Sclose, "H5Dget_space", where);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank != 3 && rank != 4) throw InputError(where, fmt::format("{} dimensions; expected [z,y,x] or [t,z,y,x]", rank));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  double voxels = 1;
  for (hsize_t d : dims) {
    facts.shape.push_back(static_cast<std::int64_t>(d));
    voxels *= static_cast<double>(d);
  }
  if (voxels < 1 || voxels > static_cast<double>(max_voxels)) {
    throw InputError(where, fmt::format("declares {:.0f} voxels ({}); expected 1 to {} (ReadOptions::max_voxels)", voxels,
                                        fmt::join(facts.shape, "x"), max_voxels));
  }
  Handle dcpl = checked(H5Dget_create_plist(dataset.get()), H5Pclose, "H5Dget_create_plist", where);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_VIRTUAL) throw InputError(where, "is a virtual dataset; expected its data inside this file");
  if (H5Pget_external_count(dcpl.get()) > 0) throw InputError(where, "stores its data in external files; expected it inside this file");
  facts.stored_bytes = static_cast<std::int64_t>(H5Dget_storage_size(dataset.get()));
  const double declared = voxels * static_cast<double>(voxel_bytes(facts.type));
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(static_cast<std::size_t>(rank));
    H5Pget_chunk(dcpl.get(), rank, chunk.data());
    facts.chunk.assign(chunk.begin(), chunk.end());
    const int filters = H5Pget_nfilters(dcpl.get());
    std::vector<std::string> names;
    for (int i = 0; i < filters; ++i) {
      unsigned flags = 0;
      std::size_t count = 8;
      unsigned values[8] = {};
      char name[64] = {};
      unsigned config = 0;
      const H5Z_filter_t id =
          H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &count, values, sizeof(name), name, &config);
      if (H5Zfilter_avail(id) <= 0) {
        throw InputError(where, fmt::format("is compressed with HDF5 filter {} ('{}'), which this build cannot decode; "
                                            "expected deflate/shuffle or an installed filter plugin", id, name));
      }
      if (id == H5Z_FILTER_DEFLATE) names.push_back(fmt::format("deflate-{}", count > 0 ? values[0] : 0));
      else if (id == H5Z_FILTER_SHUFFLE) names.push_back("shuffle");
      else if (id == kLz4Filter) names.push_back("lz4");
      else names.push_back(name[0] != '\0' ? std::string(name) : fmt::format("filter-{}", id));
    }
    if (!names.empty()) facts.compression = fmt::format("{}", fmt::join(names, "+"));
  } else if (layout == H5D_CONTIGUOUS) {
    const haddr_t offset = H5Dget_offset(dataset.get());
    if (offset != HADDR_UNDEF && static_cast<double>(offset) + declared > static_cast<double>(file_size)) {
      throw InputError(where, fmt::format("is truncated: {} bytes declared at offset {} but the file has {} bytes", declared,
                                          offset, file_size));
    }
  }
  return facts;
}

template <typename Info>
void fill(Info& info, const DatasetFacts& facts) {
  info.type = facts.type;
  info.shape = facts.shape;
  info.chunk = facts.chunk;
  info.compression = facts.compression;
  info.stored_bytes = facts.stored_bytes;
}

/// Reads the structure of every study in one data file.
std::vector<StudyInfo> read_studies(hid_t file, const std::string& subject, const ReadOptions& options) {
  std::vector<StudyInfo> studies;
  std::error_code error;
  const auto file_size = std::filesystem::file_size(subject, error);
  if (H5Lexists(file, "/studies", H5P_DEFAULT) <= 0) return studies;
  Handle root = checked(H5Gopen2(file, "/studies", H5P_DEFAULT), H5Gclose, "H5Gopen2 /studies", subject);
  for (const auto& id : h5::list_links(root.get(), subject)) {
    StudyInfo study;
    study.id = id;
    const std::string study_path = "/studies/" + id;
    Handle group = checked(H5Gopen2(file, study_path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2 " + study_path, subject);
    study.metadata_json = h5::read_string(group.get(), "metadata_json", subject + ":" + study_path).value_or("");
    if (H5Lexists(group.get(), "series", H5P_DEFAULT) > 0) {
      Handle series_root = checked(H5Gopen2(group.get(), "series", H5P_DEFAULT), H5Gclose, "H5Gopen2 series", subject);
      for (const auto& name : h5::list_links(series_root.get(), subject + ":" + study_path + "/series")) {
        const std::string path = series_path(id, name);
        Handle series = checked(H5Gopen2(file, path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2 " + path, subject);
        h5::list_links(series.get(), subject + ":" + path);
        SeriesInfo info;
        info.name = name;
        fill(info, inspect_dataset(file, path + "/image", subject, options.max_voxels, file_size));
        info.geometry = read_geometry(series.get(), subject + ":" + path);
        info.modality = h5::read_string(series.get(), "modality", subject + ":" + path).value_or("");
        info.frame_times_s = h5::read_doubles(series.get(), "frame_times_s", subject + ":" + path).value_or(std::vector<double>{});
        const auto zyx = std::vector<std::int64_t>(info.shape.end() - 3, info.shape.end());
        study.voxels = std::max(study.voxels, zyx[0] * zyx[1] * zyx[2]);
        study.series.push_back(std::move(info));
      }
    }
    if (H5Lexists(group.get(), "labels", H5P_DEFAULT) > 0) {
      Handle labels = checked(H5Gopen2(group.get(), "labels", H5P_DEFAULT), H5Gclose, "H5Gopen2 labels", subject);
      for (const auto& name : h5::list_links(labels.get(), subject + ":" + study_path + "/labels")) {
        const std::string path = label_path(id, name);
        LabelInfo info;
        info.name = name;
        fill(info, inspect_dataset(file, path, subject, options.max_voxels, file_size));
        Handle dataset = checked(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2 " + path, subject);
        info.reference_series = h5::read_string(dataset.get(), "reference_series", subject + ":" + path).value_or("");
        const SeriesInfo* reference = study.find_series(info.reference_series);
        if (reference == nullptr || info.shape.size() != 3 ||
            !std::equal(info.shape.begin(), info.shape.end(), reference->shape.end() - 3)) {
          throw InputError(subject + ":" + path, "label map is not bound to a series of its study with the same [z,y,x] "
                                                 "shape (attribute 'reference_series' = '" + info.reference_series + "')");
        }
        study.labels.push_back(std::move(info));
      }
    }
    studies.push_back(std::move(study));
  }
  return studies;
}

}  // namespace

VolumeStore::VolumeStore(const std::filesystem::path& path, ReadOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = path;
  s.options = options;
  if (options.chunk_cache_bytes > 0) {
    s.chunk_cache = std::make_unique<h5::ChunkCache>(static_cast<std::size_t>(options.chunk_cache_bytes));
  }
  Handle first = open_file(path);
  const std::string subject = path.string();
  const auto format = h5::read_string(first.get(), "format", subject);
  s.sharded = format && *format == kIndexFormatName;
  if (!s.sharded) {
    check_format(first.get(), kFormatName, subject);
    s.labels = read_label_table(first.get(), subject);
    h5::list_links(first.get(), subject);
    for (auto& study : read_studies(first.get(), subject, options)) {
      s.studies.push_back(std::move(study));
      s.study_file.push_back(0);
    }
    s.files.push_back(std::move(first));
    s.file_names.push_back(subject);
  } else {
    check_format(first.get(), kIndexFormatName, subject);
    s.labels = read_label_table(first.get(), subject);
    const auto shards = h5::read_strings(first.get(), "shards", subject).value_or(std::vector<std::string>{});
    const auto ids = h5::read_strings(first.get(), "study_ids", subject).value_or(std::vector<std::string>{});
    const auto owners = h5::read_ints(first.get(), "study_shards", subject).value_or(std::vector<long long>{});
    if (ids.size() != owners.size()) {
      throw InputError(subject, fmt::format("{} study ids but {} shard numbers; expected one per study", ids.size(), owners.size()));
    }
    for (std::size_t shard = 0; shard < shards.size(); ++shard) {
      const std::filesystem::path relative(shards[shard]);
      if (relative.is_absolute() || relative.has_parent_path()) {
        throw InputError(subject, "shard '" + shards[shard] + "' is not a file name next to the index");
      }
      const auto shard_path = path.parent_path() / relative;
      Handle file = open_file(shard_path);
      check_format(file.get(), kFormatName, shard_path.string());
      for (auto& study : read_studies(file.get(), shard_path.string(), options)) {
        const auto listed = std::find(ids.begin(), ids.end(), study.id);
        if (listed == ids.end() || owners[static_cast<std::size_t>(listed - ids.begin())] != static_cast<long long>(shard)) {
          throw InputError(shard_path.string(), "study '" + study.id + "' is not listed for this shard in the index " + subject);
        }
        s.studies.push_back(std::move(study));
        s.study_file.push_back(shard);
      }
      s.files.push_back(std::move(file));
      s.file_names.push_back(shard_path.string());
    }
    if (s.studies.size() != ids.size()) {
      throw InputError(subject, fmt::format("the index lists {} studies but its shards hold {}", ids.size(), s.studies.size()));
    }
  }
  for (std::size_t i = 0; i < s.studies.size(); ++i) {
    if (!s.by_id.emplace(s.studies[i].id, i).second) throw InputError(subject, "study '" + s.studies[i].id + "' appears twice");
  }
}

VolumeStore::~VolumeStore() = default;

const std::filesystem::path& VolumeStore::path() const { return state_->path; }
bool VolumeStore::sharded() const { return state_->sharded; }
const std::vector<StudyInfo>& VolumeStore::studies() const { return state_->studies; }
const StudyInfo& VolumeStore::study(const std::string& id) const { return state_->studies[state_->find(id)]; }
const LabelTable& VolumeStore::label_table() const { return state_->labels; }

at::Tensor VolumeStore::State::read_box(std::size_t file, const std::string& object, VoxelType type,
                                        const std::vector<std::int64_t>& shape, std::array<std::int64_t, 3> start,
                                        std::array<std::int64_t, 3> size) const {
  const std::string subject = file_names[file] + ":" + object;
  const Open dataset = this->dataset(file, object, type);
  const std::size_t rank = shape.size();
  std::vector<hsize_t> offset(rank, 0), count(shape.begin(), shape.end());
  for (std::size_t axis = 0; axis < 3; ++axis) {
    const std::size_t d = rank - 3 + axis;
    if (start[axis] < 0 || size[axis] < 1 || start[axis] + size[axis] > shape[d]) {
      throw InputError(subject, fmt::format("box start {} size {} leaves the volume {}", fmt::join(start, ","),
                                            fmt::join(size, ","), fmt::join(shape, "x")));
    }
    offset[d] = static_cast<hsize_t>(start[axis]);
    count[d] = static_cast<hsize_t>(size[axis]);
  }
  std::vector<std::int64_t> out_shape(count.begin(), count.end());
  if (dataset.layout != nullptr) {
    // Chunks fetched raw and decoded here, outside HDF5's global lock. uint16 arrives as its
    // file bytes (in an int16 tensor) and is widened like everywhere else.
    const bool widen = type == VoxelType::kUInt16;
    at::Tensor raw = at::empty(out_shape, at::TensorOptions().dtype(widen ? at::kShort : tensor_dtype(type)));
    h5::read_box_by_chunks(dataset.id, *dataset.layout, chunk_cache.get(), dataset.number, offset, count,
                           raw.data_ptr(), subject);
    return widen ? raw.to(at::kInt).bitwise_and(0xFFFF) : raw;
  }
  at::Tensor out = at::empty(out_shape, at::TensorOptions().dtype(tensor_dtype(type)));
  Handle file_space = checked(H5Dget_space(dataset.id), H5Sclose, "H5Dget_space", subject);
  check_hdf5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr, count.data(), nullptr),
             "H5Sselect_hyperslab", subject);
  Handle memory_space = checked(H5Screate_simple(static_cast<int>(rank), count.data(), nullptr), H5Sclose,
                                "H5Screate_simple", subject);
  check_hdf5(H5Dread(dataset.id, memory_type(type), memory_space.get(), file_space.get(), H5P_DEFAULT, out.data_ptr()),
             "H5Dread", subject);
  return out;
}

namespace {
std::array<std::int64_t, 3> whole(const std::vector<std::int64_t>& shape) {
  return {shape[shape.size() - 3], shape[shape.size() - 2], shape[shape.size() - 1]};
}
}  // namespace

Volume VolumeStore::read_series(const std::string& study, const std::string& series) const {
  const std::size_t index = state_->find(study);
  const SeriesInfo* info = state_->studies[index].find_series(series);
  if (info == nullptr) throw InputError(state_->path.string(), "study '" + study + "' has no series '" + series + "'");
  Volume volume;
  volume.type = info->type;
  volume.geometry = info->geometry;
  volume.frame_times_s = info->frame_times_s;
  volume.modality = info->modality;
  volume.voxels = read_series_region(study, series, {0, 0, 0}, whole(info->shape));
  return volume;
}

Volume VolumeStore::read_label(const std::string& study, const std::string& name) const {
  const std::size_t index = state_->find(study);
  const LabelInfo* info = state_->studies[index].find_label(name);
  if (info == nullptr) throw InputError(state_->path.string(), "study '" + study + "' has no label map '" + name + "'");
  Volume volume;
  volume.type = info->type;
  volume.geometry = state_->studies[index].find_series(info->reference_series)->geometry;
  volume.voxels = read_label_region(study, name, {0, 0, 0}, whole(info->shape));
  return volume;
}

at::Tensor VolumeStore::read_series_region(const std::string& study, const std::string& series,
                                           std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const {
  const std::size_t index = state_->find(study);
  const SeriesInfo* info = state_->studies[index].find_series(series);
  if (info == nullptr) throw InputError(state_->path.string(), "study '" + study + "' has no series '" + series + "'");
  return state_->read_box(state_->study_file[index], series_path(study, series) + "/image", info->type, info->shape,
                          start_zyx, size_zyx);
}

at::Tensor VolumeStore::read_label_region(const std::string& study, const std::string& name,
                                          std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const {
  const std::size_t index = state_->find(study);
  const LabelInfo* info = state_->studies[index].find_label(name);
  if (info == nullptr) throw InputError(state_->path.string(), "study '" + study + "' has no label map '" + name + "'");
  return state_->read_box(state_->study_file[index], label_path(study, name), info->type, info->shape, start_zyx,
                          size_zyx);
}

}  // namespace vitruvian::data
