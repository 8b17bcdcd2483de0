// NIfTI files as studies: each file one study, named after the file, with one series.
#include <memory>

#include "data/nifti_io.h"
#include "launch/campaign/study_source.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;

/// "case_a.nii.gz" → "case_a".
std::string study_id_of(const fs::path& file) {
  const std::string name = file.filename().string();
  const bool gz = name.size() > 7 && name.compare(name.size() - 7, 7, ".nii.gz") == 0;
  return name.substr(0, name.size() - (gz ? 7 : 4));
}

class NiftiSource final : public StudySource {
 public:
  NiftiSource(fs::path input, std::vector<fs::path> files, std::string series_name, std::string modality)
      : input_(std::move(input)), files_(std::move(files)), series_name_(std::move(series_name)), modality_(std::move(modality)) {}

  std::string input() const override { return input_.string(); }

  std::vector<StudyEntry> list() const override {
    std::vector<StudyEntry> entries;
    for (const auto& file : files_) entries.push_back({0, study_id_of(file), data::nifti_spatial_voxels(file), file.string()});
    return entries;
  }

  /// The file is read whole here: a truncated or corrupt one fails this study alone.
  std::unique_ptr<Study> open(const StudyEntry& entry) const override {
    data::Volume volume = data::read_nifti(entry.locator);
    if (!modality_.empty()) volume.modality = modality_;
    data::StudyInfo info;
    info.id = entry.id;
    info.series.push_back(series_info(series_name_, volume));
    info.voxels = volume.voxels.numel() / volume.frames();
    auto study = std::make_unique<Study>(std::move(info), entry.locator, data::LabelTable{}, nullptr, nullptr);
    study->add_loaded(series_name_, std::move(volume));
    return study;
  }

 private:
  fs::path input_;
  std::vector<fs::path> files_;
  std::string series_name_, modality_;
};

}  // namespace

std::unique_ptr<StudySource> make_nifti_source(std::filesystem::path input, std::vector<std::filesystem::path> files,
                                               std::string series_name, std::string modality) {
  return std::make_unique<NiftiSource>(std::move(input), std::move(files), std::move(series_name), std::move(modality));
}

}  // namespace vitruvian::campaign
