// The HDF5 volume store (docs/FORMAT.md): a dataset of studies, each with several series
// (sequences) and label maps bound to a reference series, in one file or in shards under an
// index file. Writers go through a temporary file renamed on commit; readers refuse external
// links, external and virtual datasets, check declared sizes before allocating, and turn a
// damaged file into an error naming the file and the object, never into missing studies.
// (Reader: volume_reader.cpp; writers: volume_writer.cpp; shared: volume_format.h.)
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/volume.h"

namespace vitruvian::data {

inline constexpr const char* kFormatName = "vitruvian-volumes";
inline constexpr const char* kIndexFormatName = "vitruvian-volumes-index";
inline constexpr int kFormatVersion = 1;

/// Label id → structure name ("0" is background by convention).
using LabelTable = std::map<int, std::string>;

/// How images and label maps are laid out on disk.
struct StorageOptions {
  /// Chunk shape [z, y, x] (4D series get [1, z, y, x]); clipped to the volume. {0,0,0}:
  /// contiguous (no chunking, no compression).
  std::array<std::int64_t, 3> chunk_zyx{64, 64, 64};
  int deflate_level = 0;  ///< 0: uncompressed; 1–9: deflate (zlib) level, with the shuffle filter
  bool shuffle = true;    ///< byte shuffle before deflate or LZ4 (ignored when uncompressed)
  /// LZ4 (HDF5 filter 32004, from Debian's hdf5-filter-plugin) instead of deflate: several
  /// times faster to decode, somewhat larger. InputError when the plugin is not installed.
  bool lz4 = false;
};

/// What a study's series holds, as written in the file.
struct SeriesInfo {
  std::string name;                 ///< series (sequence) name, unique in its study: "cta", "t1_pre"
  std::string modality;             ///< "CT", "MR" or ""
  VoxelType type = VoxelType::kInt16;
  std::vector<std::int64_t> shape;  ///< [z,y,x] or [t,z,y,x]
  std::vector<std::int64_t> chunk;  ///< chunk shape, empty when contiguous
  std::string compression;          ///< "none", "deflate-6+shuffle", ...
  Geometry geometry;
  std::vector<double> frame_times_s;
  std::int64_t stored_bytes = 0;  ///< bytes in the file (after compression)
};

/// A label map of a study, on the grid of `reference_series`.
struct LabelInfo {
  std::string name;  ///< "organs", "vessels", ...
  std::string reference_series;
  VoxelType type = VoxelType::kUInt8;
  std::vector<std::int64_t> shape;  ///< [z,y,x]
  std::vector<std::int64_t> chunk;
  std::string compression;
  std::int64_t stored_bytes = 0;
};

struct StudyInfo {
  std::string id;
  std::vector<SeriesInfo> series;
  std::vector<LabelInfo> labels;
  std::string metadata_json;  ///< free-form JSON (e.g. phantom ground truth), "" when none
  std::int64_t voxels = 0;    ///< spatial voxels of the largest series (the sharder's weight)

  const SeriesInfo* find_series(const std::string& name) const;
  const LabelInfo* find_label(const std::string& name) const;
};

/// Throws InputError naming `source` unless `label` lies on the grid of the series
/// `reference_name`: the same [z, y, x] shape and matching geometry (Geometry::matches). What
/// VolumeWriter::add_label checks, for importers that check a whole study before writing it.
void check_label_grid(const Volume& label, const std::string& reference_name,
                      const std::array<std::int64_t, 3>& reference_zyx, const Geometry& reference_geometry,
                      const std::string& source);

/// Writes one dataset file. Everything goes to temporary_path_for(path) (core/atomic_file.h);
/// commit() closes it and puts it in place with commit_atomically. Without commit() (an
/// exception, an early return) the temporary is removed and `path` is untouched.
class VolumeWriter {
 public:
  explicit VolumeWriter(std::filesystem::path path, StorageOptions options = {});
  ~VolumeWriter();
  VolumeWriter(const VolumeWriter&) = delete;
  VolumeWriter& operator=(const VolumeWriter&) = delete;

  void set_label_table(const LabelTable& table);
  /// Adds `series` to `study` (created on first use). Images are usually int16, uint16 or
  /// float32; uint8, int32 and float64 are kept as given, so an import is lossless. Throws
  /// InputError naming `source` on bad input.
  void add_series(const std::string& study, const std::string& series, const Volume& volume,
                  const std::string& source);
  /// Adds a label map bound to `reference_series` of `study` (added before): same [z,y,x] shape
  /// and matching geometry, uint8 or uint16, else InputError naming `source`.
  void add_label(const std::string& study, const std::string& name, const std::string& reference_series,
                 const Volume& label, const std::string& source);
  void set_study_metadata(const std::string& study, const std::string& json);
  /// Studies written so far (for an index over shards).
  const std::vector<StudyInfo>& studies() const;
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Writes a sharded dataset: `index_path` plus shard files "<stem>.shard-NNNNN.h5" next to it,
/// a new shard started whenever the current one holds `studies_per_shard` studies. Shards are
/// committed as they fill; the index last, so a reader never sees a partial dataset.
class ShardedVolumeWriter {
 public:
  ShardedVolumeWriter(std::filesystem::path index_path, std::int64_t studies_per_shard, StorageOptions options = {});
  ~ShardedVolumeWriter();
  ShardedVolumeWriter(const ShardedVolumeWriter&) = delete;
  ShardedVolumeWriter& operator=(const ShardedVolumeWriter&) = delete;

  void set_label_table(const LabelTable& table);
  /// Starts a study (closing the previous one); then add its series and labels through writer().
  VolumeWriter& begin_study(const std::string& study);
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Writes a shard index at `index_path` over shard files already written (by any process) in
/// its folder, in the order given: reads each shard's studies to list them. Temporary name, then
/// rename. InputError when a shard is missing or not a dataset, or a study id repeats.
void write_shard_index(const std::filesystem::path& index_path, const std::vector<std::string>& shard_names,
                       const LabelTable& labels);

/// Copies every study of `parts` (dataset files, in order) into one new dataset file at
/// `target` (temporary name, then rename), chunks and filters as stored, with `labels` as its
/// label table. InputError when a part is unreadable or a study id repeats.
void merge_volume_files(const std::vector<std::filesystem::path>& parts, const std::filesystem::path& target,
                        const LabelTable& labels);

/// Limits a reader enforces before allocating anything.
struct ReadOptions {
  /// The most voxels one read may take (a series, a part of one, a label map), and a dataset may
  /// declare: a 3D one in all, a 4D series in each frame (and at most 4 096 frames), since a
  /// series too large to read whole may still be read in parts.
  std::int64_t max_voxels = std::int64_t{1} << 31;
  /// Decoded chunks kept by the store, shared by all its datasets (bytes); 0: none, every read
  /// decodes the chunks it touches. It fills only as data is read, so the default suits a
  /// training rank: a dataset up to 1 GiB is decoded once and then served from memory.
  std::int64_t chunk_cache_bytes = std::int64_t{1} << 30;
  /// Read chunked datasets chunk by chunk, decoding outside HDF5's global lock (see
  /// docs/ARCHITECTURE.md); false reads everything through H5Dread (for comparison).
  bool direct_chunk_reads = true;
};

/// Reads a dataset file or a shard index, the same way. Safe to share between threads: calls
/// are serialised by HDF5's global lock (the library is built thread-safe), open datasets are
/// cached per (study, object) under the store's own mutex.
class VolumeStore {
 public:
  /// Opens and validates the whole structure: format name and version, one group per study,
  /// attributes, no external links / external storage / virtual datasets, declared sizes within
  /// ReadOptions::max_voxels. Throws InputError naming the file and what is wrong; Hdf5Error
  /// (with HDF5's error stack) naming the file and the object HDF5 cannot read (a damaged file).
  explicit VolumeStore(const std::filesystem::path& path, ReadOptions options = {});
  ~VolumeStore();
  VolumeStore(const VolumeStore&) = delete;
  VolumeStore& operator=(const VolumeStore&) = delete;

  const std::filesystem::path& path() const;
  bool sharded() const;
  const std::vector<StudyInfo>& studies() const;
  const StudyInfo& study(const std::string& id) const;  ///< InputError when absent
  const LabelTable& label_table() const;

  /// Reads fail with InputError or Hdf5Error naming the file, study and series (or label map)
  /// when a chunk of it cannot be read or decoded; the other chunks and series still read.
  Volume read_series(const std::string& study, const std::string& series) const;
  Volume read_label(const std::string& study, const std::string& name) const;
  /// Reads the box [start, start+size) of a series (all frames for 4D: [t, z, y, x]) or label
  /// map, touching only the chunks it covers. The box must lie inside the volume.
  at::Tensor read_series_region(const std::string& study, const std::string& series,
                                std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const;
  /// Frames [first_frame, first_frame + frame_count) of the box of a series (a 3D series: frame
  /// 0, count 1) as a Volume: its geometry that of the box (origin at its first voxel), its
  /// frame times those of the frames read. A box or frames outside the series: InputError.
  Volume read_series_part(const std::string& study, const std::string& series, std::array<std::int64_t, 3> start_zyx,
                          std::array<std::int64_t, 3> size_zyx, std::int64_t first_frame,
                          std::int64_t frame_count) const;
  at::Tensor read_label_region(const std::string& study, const std::string& name,
                               std::array<std::int64_t, 3> start_zyx, std::array<std::int64_t, 3> size_zyx) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitruvian::data
