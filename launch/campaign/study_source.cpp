// Choosing a source per input, the combined listing and its travel between ranks.
#include "launch/campaign/study_source.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>

#include "core/errors.h"
#include "data/nifti_io.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;

bool is_hdf5_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::string(magic, 8) == std::string("\x89HDF\r\n\x1a\n", 8);
}

std::vector<fs::path> nifti_files_in(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (e.is_regular_file() && data::is_nifti_path(e.path())) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

std::vector<std::unique_ptr<StudySource>> make_sources(const CampaignConfig& config) {
  std::vector<std::unique_ptr<StudySource>> sources;
  for (const auto& input : config.inputs) {
    std::error_code error;
    if (!fs::exists(input, error)) throw InputError(input.string(), "no such file or folder");
    if (fs::is_regular_file(input) && is_hdf5_file(input)) {
      sources.push_back(make_hdf5_source(input));
    } else if (fs::is_regular_file(input) && data::is_nifti_path(input)) {
      sources.push_back(make_nifti_source(input, {input}, config.series_name, config.modality));
    } else if (fs::is_directory(input)) {
      auto nifti = nifti_files_in(input);
      sources.push_back(nifti.empty() ? make_dicom_source(input)
                                      : make_nifti_source(input, std::move(nifti), config.series_name, config.modality));
    } else {
      throw InputError(input.string(), "not an HDF5 dataset, a NIfTI file (.nii, .nii.gz) or a folder of NIfTI or DICOM files");
    }
  }
  if (config.source.pacs.enabled()) sources.push_back(make_pacs_source(config.source.pacs, config.output / ".cache"));
  for (const char* output : {"dicom_seg", "dicom_pmap", "dicom_sr"}) {
    if (std::find(config.outputs.begin(), config.outputs.end(), output) == config.outputs.end()) continue;
    for (const auto& source : sources) {
      if (!source->dicom()) {
        throw ConfigError("outputs", fmt::format("'{}' needs DICOM input (it references the source images' UIDs); {} is not a "
                                                 "DICOM folder", output, source->input()));
      }
    }
  }
  return sources;
}

std::vector<StudyEntry> list_studies(const std::vector<std::unique_ptr<StudySource>>& sources) {
  std::vector<StudyEntry> all;
  std::map<std::string, std::size_t> first_source;  // id -> source that listed it
  for (std::size_t s = 0; s < sources.size(); ++s) {
    for (auto& entry : sources[s]->list()) {
      const auto [it, fresh] = first_source.emplace(entry.id, s);
      if (!fresh) {
        throw InputError(sources[s]->input(), fmt::format("study '{}' is also in {}; study ids must be unique", entry.id,
                                                          sources[it->second]->input()));
      }
      entry.source = s;
      all.push_back(std::move(entry));
    }
  }
  return all;
}

std::string entries_to_text(const std::vector<StudyEntry>& entries) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries) list.push_back({e.source, e.id, e.voxels, e.locator});
  return list.dump();
}

std::vector<StudyEntry> entries_from_text(const std::string& text) {
  std::vector<StudyEntry> entries;
  for (const auto& item : nlohmann::json::parse(text)) {
    entries.push_back({item[0].get<std::size_t>(), item[1].get<std::string>(), item[2].get<std::int64_t>(),
                       item[3].get<std::string>()});
  }
  return entries;
}

}  // namespace vitruvian::campaign
