// A Vitruvian HDF5 dataset (docs/FORMAT.md): the input is one file, opened and checked by
// VolumeStore as `vitruvian inspect` does, then a patch read from each series and label map at
// both ends of its grid (as the patch sampler does) and, when small, the whole of it.
#include <algorithm>
#include <array>
#include <cstdint>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = fuzz::scratch_dir() / "dataset.h5";
  fuzz::write_input(file, data, size);
  data::ReadOptions options;
  options.max_voxels = kMaxVoxels;
  options.chunk_cache_bytes = 1 << 20;
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
