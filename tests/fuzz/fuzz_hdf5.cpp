// A Vitruvian HDF5 dataset (docs/FORMAT.md): the input is one file, opened and checked by
// VolumeStore as `vitruvian inspect` does, then a patch read from each series and label map at
// both ends of its grid (as the patch sampler does) and, when small, the whole of it.
// The mutator changes only the bytes of the datasets' chunks and contiguous data (what
// Vitruvian's own decoders read: deflate, LZ4, shuffle, patch assembly), found through HDF5 in
// the corpus' valid files, and leaves HDF5's own metadata intact: libhdf5 1.10 crashes on damaged
// object headers (docs/RELIABILITY.md), which no check of ours can prevent. With
// VITRUVIAN_FUZZ_HDF5_RAW=1 in the environment, libFuzzer mutates the whole file instead.
#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "data/volume_store.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vitruvian;

namespace {

constexpr std::int64_t kMaxVoxels = std::int64_t{1} << 22;
constexpr std::int64_t kPatch = 8;

/// The patches at the first and last corner of a grid [.., z, y, x].
std::array<std::array<std::int64_t, 3>, 2> corners(const std::vector<std::int64_t>& shape,
                                                   std::array<std::int64_t, 3>& size) {
  std::array<std::int64_t, 3> last{};
  for (int a = 0; a < 3; ++a) {
    const std::int64_t extent = shape[shape.size() - 3 + a];
    size[a] = std::min(kPatch, extent);
    last[a] = extent - size[a];
  }
  return {{{0, 0, 0}, last}};
}

void read_everything(const data::VolumeStore& store) {
  for (const auto& study : store.studies()) {
    for (const auto& series : study.series) {
      std::array<std::int64_t, 3> size{};
      for (const auto& start : corners(series.shape, size)) {
        fuzz::expect_typed_errors([&] { store.read_series_region(study.id, series.name, start, size); });
      }
      std::int64_t voxels = 1;
      for (const auto n : series.shape) voxels *= n;
      if (voxels <= (1 << 16)) fuzz::expect_typed_errors([&] { store.read_series(study.id, series.name); });
    }
    for (const auto& label : study.labels) {
      std::array<std::int64_t, 3> size{};
      for (const auto& start : corners(label.shape, size)) {
        fuzz::expect_typed_errors([&] { store.read_label_region(study.id, label.name, start, size); });
      }
    }
  }
}

/// A stretch of the file holding a dataset's raw (possibly compressed) data.
struct Extent {
  haddr_t offset;
  hsize_t size;
};

herr_t collect(hid_t object, const char* name, const H5O_info_t* info, void* out) {
  if (info->type != H5O_TYPE_DATASET) return 0;
  auto& extents = *static_cast<std::vector<Extent>*>(out);
  const hid_t dataset = H5Dopen2(object, name, H5P_DEFAULT);
  if (dataset < 0) return 0;
  hsize_t chunks = 0;
  if (H5Dget_num_chunks(dataset, H5S_ALL, &chunks) >= 0 && chunks > 0) {
    for (hsize_t i = 0; i < chunks; ++i) {
      haddr_t address = HADDR_UNDEF;
      hsize_t size = 0;
      unsigned mask = 0;
      if (H5Dget_chunk_info(dataset, H5S_ALL, i, nullptr, &mask, &address, &size) >= 0 && address != HADDR_UNDEF) {
        extents.push_back({address, size});
      }
    }
  } else {
    const haddr_t address = H5Dget_offset(dataset);
    if (address != HADDR_UNDEF) extents.push_back({address, H5Dget_storage_size(dataset)});
  }
  H5Dclose(dataset);
  return 0;
}

/// The data extents of every dataset of the file at `path` (none when HDF5 cannot open it).
std::vector<Extent> data_extents(const std::string& path) {
  std::vector<Extent> extents;
  H5E_BEGIN_TRY {
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file >= 0) {
      H5Ovisit(file, H5_INDEX_NAME, H5_ITER_NATIVE, collect, &extents);
      H5Fclose(file);
    }
  }
  H5E_END_TRY;
  return extents;
}

}  // namespace

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  static const bool raw = std::getenv("VITRUVIAN_FUZZ_HDF5_RAW") != nullptr;
  if (raw) return LLVMFuzzerMutate(data, size, max_size);
  const auto file = fuzz::scratch_dir() / "mutating.h5";
  fuzz::write_input(file, data, size);
  std::vector<Extent> extents = data_extents(file.string());
  extents.erase(std::remove_if(extents.begin(), extents.end(),
                               [&](const Extent& e) { return e.size == 0 || e.offset + e.size > size; }),
                extents.end());
  if (extents.empty()) return size;  // not a file HDF5 opens: left as it is
  std::minstd_rand random(seed);
  const Extent& extent = extents[random() % extents.size()];
  std::uint8_t* bytes = data + extent.offset;
  const std::size_t length = static_cast<std::size_t>(extent.size);
  std::vector<std::uint8_t> before(bytes, bytes + length);
  const std::size_t mutated = LLVMFuzzerMutate(bytes, length, length);
  if (mutated < length) std::copy(before.begin() + static_cast<std::ptrdiff_t>(mutated), before.end(), bytes + mutated);
  return size;
}

/// No crossover between files: it would mix their metadata. (The raw mode's libFuzzer crosses
/// over with its own mutations.)
extern "C" std::size_t LLVMFuzzerCustomCrossOver(const std::uint8_t* data1, std::size_t size1, const std::uint8_t*,
                                                 std::size_t, std::uint8_t* out, std::size_t max_out_size,
                                                 unsigned int) {
  const std::size_t size = std::min(size1, max_out_size);
  std::copy(data1, data1 + size, out);
  return size;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = fuzz::scratch_dir() / "dataset.h5";
  fuzz::write_input(file, data, size);
  data::ReadOptions options;
  options.max_voxels = kMaxVoxels;
  // Half the inputs read through the chunk cache, half without one (unfiltered chunks then read
  // by spans from the file: chunk_reader.h), chosen by the input's size.
  options.chunk_cache_bytes = size % 2 == 0 ? 1 << 20 : 0;
  fuzz::expect_typed_errors([&] {
    const data::VolumeStore store(file, options);
    for (const auto& study : store.studies()) {
      for (const auto& series : study.series) {
        if (series.shape.size() < 3) fuzz::finding("a series of fewer than 3 dimensions passed the checks");
      }
    }
    read_everything(store);
  });
  return 0;
}
