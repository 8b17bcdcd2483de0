// Studies of a Vitruvian HDF5 dataset or shard index, read in place.
#include <memory>

#include "data/volume_store.h"
#include "launch/campaign/study_source.h"

namespace vitruvian::campaign {
namespace {

class Hdf5Source final : public StudySource {
 public:
  explicit Hdf5Source(const std::filesystem::path& path) : store_(std::make_shared<data::VolumeStore>(path, read_options())) {}

  std::string input() const override { return store_->path().string(); }

  std::vector<StudyEntry> list() const override {
    std::vector<StudyEntry> entries;
    for (const auto& info : store_->studies()) entries.push_back({0, info.id, info.voxels, ""});
    return entries;
  }

  std::unique_ptr<Study> open(const StudyEntry& entry) const override {
    const data::StudyInfo& info = store_->study(entry.id);
    auto store = store_;
    const std::string id = entry.id;
    auto study = std::make_unique<Study>(
        info, input(), store_->label_table(), [store, id](const std::string& name) { return store->read_series(id, name); },
        [store, id](const std::string& name) { return store->read_label(id, name); });
    study->set_part_reader([store, id](const std::string& name, std::int64_t first_frame, std::int64_t frame_count,
                                       const data::Box& box) {
      return store->read_series_part(id, name, box.start_zyx, box.size_zyx, first_frame, frame_count);
    });
    return study;
  }

 private:
  static data::ReadOptions read_options() {
    data::ReadOptions read;
    read.chunk_cache_bytes = 0;  // each study is read once
    return read;
  }

  std::shared_ptr<const data::VolumeStore> store_;
};

}  // namespace

std::unique_ptr<StudySource> make_hdf5_source(const std::filesystem::path& dataset) {
  return std::make_unique<Hdf5Source>(dataset);
}

}  // namespace vitruvian::campaign
