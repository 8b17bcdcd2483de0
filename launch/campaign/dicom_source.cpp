// A DICOM folder as studies: one per StudyInstanceUID, listed from the files' headers and read
// whole (every series, with its DICOM identity) when opened; a series that fails its checks is
// left out with a note.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <memory>
#include <set>

#include "core/errors.h"
#include "data/dicom_io.h"
#include "data/study_import.h"
#include "launch/campaign/study_source.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The folder's own name ("patient7" for "data/patient7/").
std::string folder_name(const fs::path& folder) {
  const fs::path absolute = fs::absolute(folder).lexically_normal();
  const std::string name = absolute.filename().string();
  return name.empty() ? absolute.parent_path().filename().string() : name;
}

class DicomSource final : public StudySource {
 public:
  explicit DicomSource(fs::path folder) : folder_(std::move(folder)) {}

  std::string input() const override { return folder_.string(); }
  bool dicom() const override { return true; }

  /// Locators hold the StudyInstanceUID and the study's files relative to the folder.
  std::vector<StudyEntry> list() const override {
    const data::DicomListing listing = data::list_dicom_studies(folder_);
    if (!listing.rejected.empty()) {
      spdlog::warn("{}: {} DICOM files belong to no study and are left out, e.g. {}: {}", input(), listing.rejected.size(),
                   listing.rejected.front().path.string(), listing.rejected.front().reason);
    }
    if (listing.studies.empty()) throw InputError(input(), "holds no DICOM image; expected DICOM files or NIfTI files");
    std::vector<StudyEntry> entries;
    const std::string base = folder_name(folder_);
    for (std::size_t i = 0; i < listing.studies.size(); ++i) {
      const auto& study = listing.studies[i];
      json files = json::array();
      for (const auto& f : study.files) files.push_back(f.lexically_relative(folder_).string());
      const std::string id = i == 0 ? base : fmt::format("{}_{}", base, i + 1);
      entries.push_back({0, id, study.voxels, json{{"study_uid", study.study_uid}, {"files", files}}.dump()});
    }
    return entries;
  }

  std::unique_ptr<Study> open(const StudyEntry& entry) const override {
    const json locator = json::parse(entry.locator);
    std::vector<fs::path> files;
    for (const auto& f : locator["files"]) files.push_back(folder_ / f.get<std::string>());
    return open_dicom_study(input(), entry.id, locator["study_uid"].get<std::string>(), files);
  }

 private:
  fs::path folder_;
};

}  // namespace

std::unique_ptr<Study> open_dicom_study(const std::string& input, const std::string& id, const std::string& study_uid,
                                        const std::vector<fs::path>& files, std::vector<std::string> notes) {
  data::DicomScan scan = data::read_dicom_files(files);
  data::StudyInfo info;
  info.id = id;
  info.metadata_json = json{{"study_instance_uid", study_uid}}.dump();
  std::vector<std::pair<std::string, data::Volume>> loaded;
  std::vector<data::DicomSeriesIdentity> identities;
  std::set<std::string> names;
  for (auto& s : scan.series) {
    const std::string name = data::dicom_series_name(s, names);
    names.insert(name);
    info.series.push_back(series_info(name, s.volume));
    info.voxels = std::max(info.voxels, s.volume.voxels.numel() / s.volume.frames());
    loaded.emplace_back(name, std::move(s.volume));
    identities.push_back(std::move(s.identity));
  }
  for (const auto& r : scan.rejected) notes.push_back(fmt::format("left out {}: {}", r.path.filename().string(), r.reason));
  if (loaded.empty()) {
    throw InputError(input, fmt::format("study {} has no series that could be read ({})", id,
                                        notes.empty() ? "no images" : notes.front()));
  }
  auto study = std::make_unique<Study>(std::move(info), input, data::LabelTable{}, nullptr, nullptr);
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    study->set_dicom_identity(loaded[i].first, std::move(identities[i]));
    study->add_loaded(loaded[i].first, std::move(loaded[i].second));
  }
  study->notes = std::move(notes);
  return study;
}

std::unique_ptr<StudySource> make_dicom_source(const std::filesystem::path& folder) {
  return std::make_unique<DicomSource>(folder);
}

}  // namespace vitruvian::campaign
