// Study import: manifest parsing (yaml-cpp, with file:line in errors), whole-study loading and
// checking, then writing.
#include "data/study_import.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/errors.h"
#include "core/yaml_keys.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

// ---- manifest ----

std::string scalar(const fs::path& file, const YAML::Node& node, const std::string& what) {
  if (!node || !node.IsScalar() || node.as<std::string>().empty()) {
    throw ConfigError(yaml_where(file, node), what + " must be a non-empty text");
  }
  return node.as<std::string>();
}

fs::path resolve(const fs::path& manifest, const std::string& path) {
  const fs::path p(path);
  return p.is_absolute() ? p : manifest.parent_path() / p;
}

nlohmann::json to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& entry : node) out[entry.first.as<std::string>()] = to_json(entry.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      // Numbers and booleans keep their type; anything else is text.
      const auto text = node.as<std::string>();
      if (node.Tag() == "!") return text;  // quoted
      try {
        std::size_t used = 0;
        const long long integer = std::stoll(text, &used);
        if (used == text.size()) return integer;
        const double real = std::stod(text, &used);
        if (used == text.size()) return real;
      } catch (const std::exception&) {
      }
      if (text == "true" || text == "false") return text == "true";
      return text;
    }
    default: return nullptr;
  }
}

/// One entry of a study's 'series' or 'labels': "name: file" or "name: {file: ..., <extra>: ...}".
struct FileEntry {
  std::string name;
  fs::path file;
  std::string extra;  ///< the value of `extra_key`, "" when absent
};

std::vector<FileEntry> file_entries(const fs::path& file, const YAML::Node& section, const char* section_name,
                                    const std::string& what, const char* extra_key) {
  std::vector<FileEntry> entries;
  if (!section) return entries;
  if (!section.IsMap()) throw ConfigError(yaml_where(file, section), fmt::format("'{}' must map names to files", section_name));
  for (const auto& entry : section) {
    FileEntry e;
    e.name = entry.first.as<std::string>();
    const std::string subject = what + " '" + e.name + "'";
    if (entry.second.IsScalar()) {
      e.file = resolve(file, scalar(file, entry.second, subject));
    } else if (entry.second.IsMap()) {
      check_yaml_keys(file, entry.second, {"file", extra_key}, ("a " + what).c_str());
      e.file = resolve(file, scalar(file, entry.second["file"], subject + " file"));
      if (entry.second[extra_key]) e.extra = scalar(file, entry.second[extra_key], extra_key);
    } else {
      throw ConfigError(yaml_where(file, entry.second), fmt::format("{} must be a file or {{file, {}}}", subject, extra_key));
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

StudySource read_study(const fs::path& file, const YAML::Node& node) {
  if (!node.IsMap()) throw ConfigError(yaml_where(file, node), "each study must be a mapping with at least 'id'");
  check_yaml_keys(file, node, {"id", "series", "labels", "dicom", "metadata"}, "a study");
  StudySource study;
  study.origin = yaml_where(file, node);
  study.id = scalar(file, node["id"], "'id'");
  for (auto& e : file_entries(file, node["series"], "series", "series", "modality")) {
    study.series.push_back({std::move(e.name), std::move(e.file), std::move(e.extra)});
  }
  for (auto& e : file_entries(file, node["labels"], "labels", "label map", "series")) {
    study.labels.push_back({std::move(e.name), std::move(e.file), std::move(e.extra)});
  }
  if (const auto dicom = node["dicom"]) {
    if (dicom.IsScalar()) {
      study.dicom.push_back(resolve(file, scalar(file, dicom, "'dicom'")));
    } else if (dicom.IsSequence()) {
      for (const auto& folder : dicom) study.dicom.push_back(resolve(file, scalar(file, folder, "a DICOM folder")));
    } else {
      throw ConfigError(yaml_where(file, dicom), "'dicom' must be a folder or a list of folders");
    }
  }
  if (const auto metadata = node["metadata"]) study.metadata_json = to_json(metadata).dump();
  if (study.series.empty() && study.dicom.empty()) {
    throw ConfigError(study.origin, "study '" + study.id + "' has neither 'series' nor 'dicom'");
  }
  return study;
}

// ---- import ----

struct Rejected {
  std::string path, reason;
};

/// Label maps hold small non-negative integers: narrowed to uint8 or uint16.
Volume to_label(Volume v, const std::string& source) {
  if (v.voxels.dim() != 3) throw InputError(source, "a label map must be 3D; this one has frames");
  if (v.type == VoxelType::kUInt8) return v;
  const at::Tensor values = v.voxels.to(at::kDouble);
  if (is_floating(v.type)) {
    if (!at::isfinite(values).all().item<bool>() || !at::equal(values, values.round())) {
      throw InputError(source, "label map holds non-integer values; expected integer label ids");
    }
  }
  const auto [low_t, high_t] = at::aminmax(values);
  const double low = low_t.item<double>(), high = high_t.item<double>();
  if (low < 0 || high > 65535) {
    throw InputError(source, fmt::format("label values span {} to {}; expected ids in 0..65535", low, high));
  }
  if (high <= 255) {
    v.type = VoxelType::kUInt8;
    v.voxels = values.to(at::kByte);
  } else {
    v.type = VoxelType::kUInt16;
    v.voxels = values.to(at::kInt);
  }
  return v;
}

std::string series_name_from(const DicomSeries& s) {
  std::string name;
  for (const char c : s.series_description) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!name.empty() && name.back() != '_') {
      name += '_';
    }
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  if (name.empty()) name = "series_" + (s.series_number.empty() ? s.series_uid.substr(s.series_uid.size() > 8 ? s.series_uid.size() - 8 : 0) : s.series_number);
  return name;
}


bool usable_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

/// One study fully loaded and checked, ready to write.
struct LoadedStudy {
  std::string id;
  std::vector<std::pair<std::string, Volume>> series;
  struct Label {
    std::string name, reference;
    Volume volume;
  };
  std::vector<Label> labels;
  std::string metadata_json;
};

}  // namespace

std::string ImportRejection::line() const { return path + ": " + reason; }

std::string dicom_series_name(const DicomSeries& series, const std::set<std::string>& taken) {
  const std::string base = series_name_from(series);
  if (taken.count(base) == 0) return base;
  for (int n = 2;; ++n) {
    const auto candidate = fmt::format("{}_{}", base, n);
    if (taken.count(candidate) == 0) return candidate;
  }
}

ImportManifest read_import_manifest(const fs::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError(path.string(), "cannot read the manifest (missing or unreadable)");
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}", path.string(), e.mark.line + 1), "not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw ConfigError(path.string(), "expected a mapping with 'studies' (and optionally 'labels')");
  check_yaml_keys(path, root, {"studies", "labels"}, "the manifest");
  ImportManifest manifest;
  if (const auto labels = root["labels"]) {
    if (!labels.IsMap()) throw ConfigError(yaml_where(path, labels), "'labels' must map ids to names: {1: liver}");
    for (const auto& entry : labels) {
      int id = -1;
      try {
        id = entry.first.as<int>();
      } catch (const YAML::Exception&) {
      }
      if (id < 0 || id > 65535) throw ConfigError(yaml_where(path, entry.first), "label ids are integers in 0..65535");
      manifest.labels[id] = scalar(path, entry.second, "a label name");
    }
  }
  const auto studies = root["studies"];
  if (!studies || !studies.IsSequence() || studies.size() == 0) {
    throw ConfigError(path.string(), "'studies' must be a non-empty list");
  }
  std::map<std::string, std::string> seen;
  for (const auto& node : studies) {
    StudySource study = read_study(path, node);
    const auto [it, fresh] = seen.emplace(study.id, study.origin);
    if (!fresh) throw ConfigError(study.origin, "study id '" + study.id + "' is already used at " + it->second);
    manifest.studies.push_back(std::move(study));
  }
  return manifest;
}

std::vector<StudySource> studies_from_paths(const std::vector<fs::path>& inputs, const std::string& series_name,
                                            const std::string& modality) {
  std::vector<StudySource> out;
  for (const auto& input : inputs) {
    std::error_code error;
    StudySource study;
    study.origin = input.string();
    if (fs::is_directory(input, error)) {
      study.id = fs::absolute(input).lexically_normal().filename().string();
      if (study.id.empty()) study.id = fs::absolute(input).lexically_normal().parent_path().filename().string();
      study.dicom.push_back(input);
      study.split_dicom_studies = true;
    } else if (fs::is_regular_file(input, error) && is_nifti_path(input)) {
      std::string stem = input.filename().string();
      stem = stem.substr(0, stem.size() - (stem.size() > 7 && stem.compare(stem.size() - 7, 7, ".nii.gz") == 0 ? 7 : 4));
      study.id = stem;
      study.series.push_back({series_name, input, modality});
    } else {
      throw InputError(input.string(), "not a NIfTI file (.nii, .nii.gz) or a folder of DICOM files");
    }
    out.push_back(std::move(study));
  }
  return out;
}

ImportReport import_studies(const std::vector<StudySource>& sources, const StudySink& sink, const LabelTable& labels,
                            const ImportOptions& options) {
  ImportReport report;
  std::set<std::string> written;
  const auto reject = [&](const std::string& study, const std::string& path, const std::string& reason) {
    report.rejected.push_back({study, path, reason});
  };

  for (const auto& source : sources) {
    // Several loaded studies can come from one source (a DICOM folder holding several studies).
    std::vector<LoadedStudy> loaded;
    std::vector<Rejected> problems;
    try {
      if (!usable_name(source.id)) throw InputError(source.origin, "study id '" + source.id + "' is not usable");
      LoadedStudy base;
      base.id = source.id;
      base.metadata_json = source.metadata_json;
      std::set<std::string> names;
      for (const auto& s : source.series) {
        if (!usable_name(s.name)) throw InputError(s.file.string(), "series name '" + s.name + "' is not usable");
        Volume v = read_nifti(s.file, options.nifti);
        if (!s.modality.empty()) v.modality = s.modality;
        names.insert(s.name);
        base.series.emplace_back(s.name, std::move(v));
      }
      // DICOM: by study UID when splitting, else everything into this study.
      std::map<std::string, LoadedStudy> by_uid;
      std::map<std::string, std::set<std::string>> names_by_uid;
      for (const auto& folder : source.dicom) {
        DicomScan scan = read_dicom_series(folder, options.dicom);
        for (const auto& r : scan.rejected) problems.push_back({r.path.string(), r.reason});
        for (auto& s : scan.series) {
          const std::string key = source.split_dicom_studies ? s.study_uid : std::string();
          LoadedStudy& target = key.empty() ? base : by_uid[key];
          std::set<std::string>& taken = key.empty() ? names : names_by_uid[key];
          const std::string name = dicom_series_name(s, taken);
          taken.insert(name);
          target.series.emplace_back(name, std::move(s.volume));
        }
      }
      if (!by_uid.empty()) {
        int n = 1;
        for (auto& [uid, study] : by_uid) {
          study.id = n == 1 ? source.id : fmt::format("{}_{}", source.id, n);
          study.metadata_json = nlohmann::json{{"study_instance_uid", uid}}.dump();
          ++n;
          loaded.push_back(std::move(study));
        }
      }
      if (!base.series.empty()) loaded.insert(loaded.begin(), std::move(base));
      if (loaded.empty()) {
        const std::string what = problems.empty() ? "no DICOM image series found" : "no series could be imported";
        throw InputError(source.dicom.empty() ? source.origin : source.dicom.front().string(), what);
      }
      // Label maps: converted, then checked against their reference series' grid.
      for (const auto& l : source.labels) {
        LoadedStudy& study = loaded.front();
        if (!usable_name(l.name)) throw InputError(l.file.string(), "label map name '" + l.name + "' is not usable");
        const std::string reference = l.series.empty() ? study.series.front().first : l.series;
        const auto match = std::find_if(study.series.begin(), study.series.end(),
                                        [&](const auto& s) { return s.first == reference; });
        if (match == study.series.end()) {
          throw InputError(l.file.string(), "label map '" + l.name + "' refers to series '" + reference +
                                                "', which study '" + study.id + "' does not have");
        }
        Volume label = to_label(read_nifti(l.file, options.nifti), l.file.string());
        check_label_grid(label, reference, match->second.shape_zyx(), match->second.geometry, l.file.string());
        if (!labels.empty()) {
          const at::Tensor present = std::get<0>(at::_unique(label.voxels.to(at::kInt)));
          std::vector<int> unknown;
          for (std::int64_t i = 0; i < present.numel(); ++i) {
            const int id = present[i].item<int>();
            if (id != 0 && labels.count(id) == 0) unknown.push_back(id);
          }
          if (!unknown.empty()) {
            throw InputError(l.file.string(), fmt::format("label values {} are not in the label table; expected ids from "
                                                          "the table ({} entries) or 0",
                                                          fmt::join(unknown, ", "), labels.size()));
          }
        }
        study.labels.push_back({l.name, reference, std::move(label)});
      }
    } catch (const Error& e) {
      // A study that cannot be loaded: report it, with the problems found on the way.
      for (const auto& p : problems) reject(source.id, p.path, p.reason);
      reject(source.id, e.call(), e.detail());
      if (options.on_study) options.on_study(source.id);
      continue;
    }
    for (const auto& p : problems) reject(source.id, p.path, p.reason);
    for (auto& study : loaded) {
      if (!written.insert(study.id).second) {
        reject(study.id, source.origin, "study id '" + study.id + "' was already imported; expected unique ids");
        continue;
      }
      VolumeWriter& writer = sink(study.id);
      for (const auto& [name, volume] : study.series) {
        writer.add_series(study.id, name, volume, source.origin);
        ++report.series;
        const auto zyx = volume.shape_zyx();
        report.voxels += volume.frames() * zyx[0] * zyx[1] * zyx[2];
      }
      for (const auto& label : study.labels) {
        writer.add_label(study.id, label.name, label.reference, label.volume, source.origin);
        ++report.labels;
      }
      if (!study.metadata_json.empty()) writer.set_study_metadata(study.id, study.metadata_json);
      report.imported.push_back(study.id);
    }
    if (options.on_study) options.on_study(source.id);
  }
  return report;
}

}  // namespace vitruvian::data
