// VolumeWriter, ShardedVolumeWriter, shard indexes and merges: new dataset files written under
// a temporary name (core/atomic_file.h) and put in place on commit (layout: docs/FORMAT.md).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "data/volume_format.h"
#include "data/volume_store.h"

namespace vitruvian::data {
namespace {

using h5::checked;
using h5::Handle;
using namespace format;

void check_name(const std::string& name, const char* what, const std::string& source) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw InputError(source, fmt::format("{} name '{}' is not usable; expected a non-empty name without '/'", what, name));
  }
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
  Handle dcpl = checked(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate", subject);
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
      const htri_t available = H5Zfilter_avail(h5::kLz4Filter);
      check_hdf5(available, "H5Zfilter_avail", subject);
      if (available == 0) {
        throw InputError(subject, "LZ4 compression needs HDF5's LZ4 filter plugin (Debian: hdf5-filter-plugin); "
                                  "install it or use deflate");
      }
      if (options.shuffle) check_hdf5(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle", subject);
      const unsigned block_size[1] = {0};  // the plugin's default block (the whole chunk here)
      check_hdf5(H5Pset_filter(dcpl.get(), h5::kLz4Filter, H5Z_FLAG_MANDATORY, 1, block_size), "H5Pset_filter(lz4)", subject);
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
  const Handle lcpl = intermediate_groups(subject);
  Handle dataset = checked(H5Dcreate2(file, path.c_str(), file_type(stored), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                           H5Dclose, "H5Dcreate2 " + path, subject);
  check_hdf5(H5Dwrite(dataset.get(), memory_type(stored), H5S_ALL, H5S_ALL, H5P_DEFAULT, voxels.data_ptr()),
             "H5Dwrite " + path, subject);
  const hsize_t stored_bytes = H5Dget_storage_size(dataset.get());
  check_hdf5_stack("H5Dget_storage_size " + path, subject);
  return static_cast<std::int64_t>(stored_bytes);
}

void check_uint16_range(const Volume& volume, const std::string& subject) {
  if (volume.type != VoxelType::kUInt16) return;
  const auto [low, high] = at::aminmax(volume.voxels);
  if (low.item<std::int64_t>() < 0 || high.item<std::int64_t>() > 65535) {
    throw InputError(subject, fmt::format("uint16 voxels out of range [{}, {}]; expected 0..65535", low.item<std::int64_t>(),
                                          high.item<std::int64_t>()));
  }
}

}  // namespace

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
  state_->target = std::move(path);
  state_->temporary = temporary_path_for(state_->target);
  state_->options = options;
  state_->file = create_file(state_->temporary, state_->target);
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
    const std::string path = study_path(study.id);
    Handle group = checked(H5Gopen2(file, path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2 " + path, subject);
    if (!study.metadata_json.empty()) h5::write_string(group.get(), "metadata_json", study.metadata_json, subject);
  }
  close_file(state_->file, subject);  // all of it written before the rename
  commit_atomically(state_->temporary, state_->target);
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

void write_index_file(const std::filesystem::path& index, const LabelTable& labels, const std::vector<std::string>& shard_names,
                      const std::vector<std::string>& study_ids, const std::vector<long long>& study_shards,
                      const std::vector<long long>& study_voxels) {
  const std::string subject = index.string();
  write_atomically(index, [&](const std::filesystem::path& temporary) {
    Handle file = create_file(temporary, index);
    write_root(file.get(), kIndexFormatName, labels, subject);
    h5::write_strings(file.get(), "shards", shard_names, subject);
    h5::write_strings(file.get(), "study_ids", study_ids, subject);
    h5::write_ints(file.get(), "study_shards", study_shards, subject);
    h5::write_ints(file.get(), "study_voxels", study_voxels, subject);
    close_file(file, subject);
  });
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
  write_atomically(target, [&](const std::filesystem::path& temporary) {
    Handle out = create_file(temporary, target);
    write_root(out.get(), kFormatName, labels, subject);
    const Handle lcpl = intermediate_groups(subject);
    std::set<std::string> seen;
    for (const auto& part : parts) {
      std::vector<std::string> ids;
      {
        const VolumeStore checked_part(part);  // refuses parts that are not sound datasets
        for (const StudyInfo& study : checked_part.studies()) ids.push_back(study.id);
      }
      Handle in = open_file(part);
      for (const std::string& id : ids) {
        if (!seen.insert(id).second) throw InputError(part.string(), "study '" + id + "' is already in an earlier part");
        const std::string path = study_path(id);
        check_hdf5(H5Ocopy(in.get(), path.c_str(), out.get(), path.c_str(), H5P_DEFAULT, lcpl.get()), "H5Ocopy " + path,
                   part.string());
      }
    }
    close_file(out, subject);
  });
}

}  // namespace vitruvian::data
