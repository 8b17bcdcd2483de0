// VolumeStore: opens a dataset file or shard index, checks its whole structure before anything
// is allocated, and reads series, label maps and boxes of them (layout: docs/FORMAT.md).
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "core/errors.h"
#include "data/chunk_reader.h"
#include "data/volume_format.h"
#include "data/volume_store.h"

namespace vitruvian::data {

using h5::checked;
using h5::Handle;
using namespace format;

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
  /// The study's index and its series or label map; InputError naming the dataset when absent.
  std::pair<std::size_t, const SeriesInfo&> find_series(const std::string& study, const std::string& series) const {
    const std::size_t index = find(study);
    const SeriesInfo* info = studies[index].find_series(series);
    if (info == nullptr) throw InputError(path.string(), "study '" + study + "' has no series '" + series + "'");
    return {index, *info};
  }
  std::pair<std::size_t, const LabelInfo&> find_label(const std::string& study, const std::string& name) const {
    const std::size_t index = find(study);
    const LabelInfo* info = studies[index].find_label(name);
    if (info == nullptr) throw InputError(path.string(), "study '" + study + "' has no label map '" + name + "'");
    return {index, *info};
  }

  /// An open dataset, with its chunk layout when its chunks can be read directly.
  struct Open {
    hid_t id;
    const h5::ChunkLayout* layout;  ///< null: read through H5Dread
    std::size_t number;             ///< names it in chunk_cache
  };

  /// Reads the box [start, start+size) of `object` in file `file`: frames [frames[0], frames[0]
  /// + frames[1]) of a 4D dataset (frames[1] < 0: all from frames[0]).
  at::Tensor read_box(std::size_t file, const std::string& object, VoxelType type, const std::vector<std::int64_t>& shape,
                      std::array<std::int64_t, 3> start, std::array<std::int64_t, 3> size,
                      std::array<std::int64_t, 2> frames = {0, -1}) const;

  Open dataset(std::size_t file, const std::string& object, VoxelType type) const {
    std::lock_guard<std::mutex> lock(mutex);
    const std::string key = std::to_string(file) + ":" + object;
    auto it = datasets.find(key);
    if (it == datasets.end()) {
      const std::string subject = file_names[file] + ":" + object;
      Handle dapl = checked(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose, "H5Pcreate", subject);
      // HDF5's own chunk cache serves only datasets the direct path cannot decode.
      if (options.chunk_cache_bytes > 0) {
        // Slots: a prime well above the number of chunks the cache can hold (HDF5's advice).
        // HDF5's cache is per dataset: at most 64 MiB of the budget each.
        const auto bytes = std::min<std::int64_t>(options.chunk_cache_bytes, std::int64_t{64} << 20);
        check_hdf5(H5Pset_chunk_cache(dapl.get(), 12421, static_cast<std::size_t>(bytes), 0.75), "H5Pset_chunk_cache",
                   subject);
      }
      Handle handle = checked(H5Dopen2(files[file].get(), object.c_str(), dapl.get()), H5Dclose, "H5Dopen2", subject);
      // Direct chunk reads hand back file bytes: only when they are already the memory layout.
      std::optional<h5::ChunkLayout> layout;
      if (options.direct_chunk_reads) {
        Handle stored_type = checked(H5Dget_type(handle.get()), H5Tclose, "H5Dget_type", subject);
        const htri_t same = H5Tequal(stored_type.get(), file_type(type));
        check_hdf5(same, "H5Tequal", subject);
        if (same > 0) layout = h5::decodable_layout(handle.get(), voxel_bytes(type), subject);
      }
      const std::size_t number = datasets.size();
      it = datasets.emplace(key, OpenDataset{std::move(handle), std::move(layout), number}).first;
    }
    const OpenDataset& open = it->second;
    return {open.handle.get(), open.layout ? &*open.layout : nullptr, open.number};
  }
};

namespace {

/// The most frames a 4D series may declare (each within ReadOptions::max_voxels).
constexpr double kMaxFrames = 4096;

/// Shape, type, chunking, compression of one dataset, with the safety checks.
struct DatasetFacts {
  VoxelType type = VoxelType::kUInt8;
  std::vector<std::int64_t> shape, chunk;
  std::string compression = "none";
  std::int64_t stored_bytes = 0;
};

/// The filters as "shuffle+deflate-6" ("none" without any); InputError naming `where` for one
/// this build cannot decode.
std::string describe_filters(hid_t dcpl, const std::string& where) {
  std::vector<std::string> names;
  for (const h5::Filter& filter : h5::filters(dcpl, where)) {
    const htri_t available = H5Zfilter_avail(filter.id);
    check_hdf5(available, "H5Zfilter_avail", where);
    if (available == 0) {
      throw InputError(where, fmt::format("is compressed with HDF5 filter {} ('{}'), which this build cannot decode; "
                                          "expected deflate/shuffle or an installed filter plugin", filter.id, filter.name));
    }
    if (filter.id == H5Z_FILTER_DEFLATE) names.push_back(fmt::format("deflate-{}", filter.values.empty() ? 0 : filter.values[0]));
    else if (filter.id == H5Z_FILTER_SHUFFLE) names.push_back("shuffle");
    else if (filter.id == h5::kLz4Filter) names.push_back("lz4");
    else names.push_back(!filter.name.empty() ? filter.name : fmt::format("filter-{}", filter.id));
  }
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, "+"));
}

/// Shape, type, chunking and compression of the dataset `object` of `file` (named `subject`),
/// refused before anything is allocated when it is virtual, external, oversized or truncated.
DatasetFacts inspect_dataset(hid_t file, const std::string& object, const std::string& subject, std::int64_t max_voxels,
                             std::uintmax_t file_size) {
  const std::string where = subject + ":" + object;
  Handle dataset = checked(H5Dopen2(file, object.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", where);
  DatasetFacts facts;
  Handle type = checked(H5Dget_type(dataset.get()), H5Tclose, "H5Dget_type", where);
  const auto voxel_type = voxel_type_of(type.get(), where);
  if (!voxel_type) throw InputError(where, "element type is not one of uint8, int16, uint16, int32, float32, float64");
  facts.type = *voxel_type;
  Handle space = checked(H5Dget_space(dataset.get()), H5Sclose, "H5Dget_space", where);
  const std::vector<hsize_t> dims = h5::extent(space.get(), where);
  const int rank = static_cast<int>(dims.size());
  if (rank != 3 && rank != 4) throw InputError(where, fmt::format("{} dimensions; expected [z,y,x] or [t,z,y,x]", rank));
  double voxels = 1, frame = 1;
  for (int d = 0; d < rank; ++d) {
    facts.shape.push_back(static_cast<std::int64_t>(dims[d]));
    voxels *= static_cast<double>(dims[d]);
    if (d >= rank - 3) frame *= static_cast<double>(dims[d]);
  }
  // A 4D series may hold more than one read may take (a clinical CT perfusion series of 512 × 512
  // × 320 × 30 has 2.5 G voxels, of which its analysis reads a part): each frame must be within
  // max_voxels, the whole within kMaxFrames of them; every read is held to max_voxels (read_box).
  if (voxels < 1 || frame > static_cast<double>(max_voxels) ||
      voxels > static_cast<double>(max_voxels) * (rank == 4 ? kMaxFrames : 1)) {
    throw InputError(where, rank == 4 ? fmt::format("declares {:.0f} voxels ({}); expected 1 to {} a frame and {} "
                                                    "frames at most (ReadOptions::max_voxels)",
                                                    voxels, fmt::join(facts.shape, "x"), max_voxels, kMaxFrames)
                                      : fmt::format("declares {:.0f} voxels ({}); expected 1 to {} "
                                                    "(ReadOptions::max_voxels)",
                                                    voxels, fmt::join(facts.shape, "x"), max_voxels));
  }
  Handle dcpl = checked(H5Dget_create_plist(dataset.get()), H5Pclose, "H5Dget_create_plist", where);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  check_hdf5(layout, "H5Pget_layout", where);
  if (layout == H5D_VIRTUAL) throw InputError(where, "is a virtual dataset; expected its data inside this file");
  const int external = H5Pget_external_count(dcpl.get());
  check_hdf5(external, "H5Pget_external_count", where);
  if (external > 0) throw InputError(where, "stores its data in external files; expected it inside this file");
  facts.stored_bytes = static_cast<std::int64_t>(H5Dget_storage_size(dataset.get()));
  check_hdf5_stack("H5Dget_storage_size", where);
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(dims.size());
    check_hdf5(H5Pget_chunk(dcpl.get(), rank, chunk.data()), "H5Pget_chunk", where);
    facts.chunk.assign(chunk.begin(), chunk.end());
    facts.compression = describe_filters(dcpl.get(), where);
  } else if (layout == H5D_CONTIGUOUS) {
    const haddr_t offset = H5Dget_offset(dataset.get());
    check_hdf5_stack("H5Dget_offset", where);
    const double declared = voxels * static_cast<double>(voxel_bytes(facts.type));
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

/// The names under the group `name` of `group` ("file:/path" in `where`); none when it is absent.
std::vector<std::string> members(hid_t group, const char* name, const std::string& where) {
  if (!h5::link_exists(group, name, where)) return {};
  const std::string path = where + (where.back() == '/' ? "" : "/") + name;
  Handle members = checked(H5Gopen2(group, name, H5P_DEFAULT), H5Gclose, "H5Gopen2", path);
  return h5::list_links(members.get(), path);
}

/// What the file says of one study: its series and label maps, each checked.
StudyInfo read_study(hid_t file, const std::string& id, const std::string& subject, const ReadOptions& options,
                     std::uintmax_t file_size) {
  StudyInfo study;
  study.id = id;
  const std::string where = subject + ":" + study_path(id);
  Handle group = checked(H5Gopen2(file, study_path(id).c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2", where);
  study.metadata_json = h5::read_string(group.get(), "metadata_json", where).value_or("");
  for (const auto& name : members(group.get(), "series", where)) {
    const std::string path = series_path(id, name), series_where = subject + ":" + path;
    Handle series = checked(H5Gopen2(file, path.c_str(), H5P_DEFAULT), H5Gclose, "H5Gopen2", series_where);
    h5::list_links(series.get(), series_where);
    SeriesInfo info;
    info.name = name;
    fill(info, inspect_dataset(file, path + "/image", subject, options.max_voxels, file_size));
    info.geometry = read_geometry(series.get(), series_where);
    info.modality = h5::read_string(series.get(), "modality", series_where).value_or("");
    info.frame_times_s = h5::read_doubles(series.get(), "frame_times_s", series_where).value_or(std::vector<double>{});
    const auto zyx = std::vector<std::int64_t>(info.shape.end() - 3, info.shape.end());
    study.voxels = std::max(study.voxels, zyx[0] * zyx[1] * zyx[2]);
    study.series.push_back(std::move(info));
  }
  for (const auto& name : members(group.get(), "labels", where)) {
    const std::string path = label_path(id, name), label_where = subject + ":" + path;
    LabelInfo info;
    info.name = name;
    fill(info, inspect_dataset(file, path, subject, options.max_voxels, file_size));
    Handle dataset = checked(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, "H5Dopen2", label_where);
    info.reference_series = h5::read_string(dataset.get(), "reference_series", label_where).value_or("");
    const SeriesInfo* reference = study.find_series(info.reference_series);
    if (reference == nullptr || info.shape.size() != 3 ||
        !std::equal(info.shape.begin(), info.shape.end(), reference->shape.end() - 3)) {
      throw InputError(label_where, "label map is not bound to a series of its study with the same [z,y,x] "
                                    "shape (attribute 'reference_series' = '" + info.reference_series + "')");
    }
    study.labels.push_back(std::move(info));
  }
  return study;
}

/// Reads the structure of every study in one data file.
std::vector<StudyInfo> read_studies(hid_t file, const std::string& subject, const ReadOptions& options) {
  std::error_code error;
  const auto file_size = std::filesystem::file_size(subject, error);
  if (error) throw InputError(subject, "cannot tell the file's size: " + error.message());
  std::vector<StudyInfo> studies;
  for (const auto& id : members(file, "studies", subject + ":/")) studies.push_back(read_study(file, id, subject, options, file_size));
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
    h5::list_links(first.get(), subject + ":/");
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
                                        std::array<std::int64_t, 3> size, std::array<std::int64_t, 2> frames) const {
  const std::string subject = file_names[file] + ":" + object;
  const Open dataset = this->dataset(file, object, type);
  const std::size_t rank = shape.size();
  std::vector<hsize_t> offset(rank, 0), count(shape.begin(), shape.end());
  const FrameRange range = resolve_frames({frames[0], frames[1]}, rank == 4 ? shape[0] : 0, subject);
  if (rank == 4) {
    offset[0] = static_cast<hsize_t>(range.first);
    count[0] = static_cast<hsize_t>(range.count);
  }
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
  double voxels = 1;
  for (const hsize_t c : count) voxels *= static_cast<double>(c);
  if (voxels > static_cast<double>(options.max_voxels)) {
    throw InputError(subject,
                     fmt::format("a read of {:.0f} voxels ({}); expected at most {} (ReadOptions::max_voxels): "
                                 "read it in parts (frames, or a box)",
                                 voxels, fmt::join(out_shape, "x"), options.max_voxels));
  }
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
  const auto [index, info] = state_->find_series(study, series);
  Volume volume;
  volume.type = info.type;
  volume.geometry = info.geometry;
  volume.frame_times_s = info.frame_times_s;
  volume.modality = info.modality;
  volume.voxels = state_->read_box(state_->study_file[index], series_path(study, series) + "/image", info.type, info.shape,
                                   {0, 0, 0}, whole(info.shape));
  return volume;
}

Volume VolumeStore::read_label(const std::string& study, const std::string& name) const {
  const auto [index, info] = state_->find_label(study, name);
  Volume volume;
  volume.type = info.type;
  volume.geometry = state_->studies[index].find_series(info.reference_series)->geometry;
  volume.voxels = state_->read_box(state_->study_file[index], label_path(study, name), info.type, info.shape, {0, 0, 0},
                                   whole(info.shape));
  return volume;
}

at::Tensor VolumeStore::read_series_region(const std::string& study, const std::string& series,
                                           std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const {
  const auto [index, info] = state_->find_series(study, series);
  return state_->read_box(state_->study_file[index], series_path(study, series) + "/image", info.type, info.shape,
                          start_zyx, size_zyx);
}

Volume VolumeStore::read_series_part(const std::string& study, const std::string& series,
                                     std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx,
                                     std::int64_t first_frame, std::int64_t frame_count) const {
  const auto [index, info] = state_->find_series(study, series);
  Volume volume;
  volume.type = info.type;
  volume.geometry = box_geometry(info.geometry, start_zyx);
  volume.modality = info.modality;
  volume.voxels = state_->read_box(state_->study_file[index], series_path(study, series) + "/image", info.type, info.shape,
                                   start_zyx, size_zyx, {first_frame, frame_count});
  if (volume.voxels.dim() == 4) {
    volume.frame_times_s = frame_times_of(info.frame_times_s, info.shape[0], {first_frame, volume.voxels.size(0)});
  }
  return volume;
}

at::Tensor VolumeStore::read_label_region(const std::string& study, const std::string& name,
                                          std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const {
  const auto [index, info] = state_->find_label(study, name);
  return state_->read_box(state_->study_file[index], label_path(study, name), info.type, info.shape, start_zyx, size_zyx);
}

}  // namespace vitruvian::data
