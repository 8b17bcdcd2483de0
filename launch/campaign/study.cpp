// A study's lazy series access and its task.
#include "launch/campaign/study.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "core/errors.h"
#include "data/preprocess.h"
#include "core/stopwatch.h"

namespace vitruvian::campaign {
Study::Study(data::StudyInfo info, std::string input, data::LabelTable label_table, Reader read_series, Reader read_label)
    : info_(std::move(info)),
      input_(std::move(input)),
      label_table_(std::move(label_table)),
      read_series_(std::move(read_series)),
      read_label_(std::move(read_label)) {}

std::string Study::task() const {
  if (info_.metadata_json.empty()) return "";
  try {
    const nlohmann::json m = nlohmann::json::parse(info_.metadata_json);
    if (m.contains("task") && m["task"].is_string()) return m["task"];
    const nlohmann::json& phantom = m.contains("phantom") ? m["phantom"] : m;  // {"phantom": {"generator": {"kind"}}}
    if (phantom.contains("generator") && phantom["generator"].contains("kind")) return phantom["generator"]["kind"];
  } catch (const nlohmann::json::exception&) {
  }
  return "";
}

const data::Volume& Study::series(const std::string& name) {
  auto it = series_.find(name);
  if (it != series_.end()) return it->second;
  if (info_.find_series(name) == nullptr || !read_series_) {
    throw InputError(input_, "study '" + id() + "' has no series '" + name + "'");
  }
  const auto start = std::chrono::steady_clock::now();
  it = series_.emplace(name, read_series_(name)).first;
  read_s_ += seconds_since(start);
  return it->second;
}

data::Volume Study::series_part(const std::string& name, std::int64_t first_frame, std::int64_t frame_count,
                                const data::Box& box) {
  if (read_part_ && series_.find(name) == series_.end() && info_.find_series(name) != nullptr) {
    const auto start = std::chrono::steady_clock::now();
    data::Volume part = read_part_(name, first_frame, frame_count, box);
    read_s_ += seconds_since(start);
    return part;
  }
  data::Volume whole = series(name);  // shares the voxels
  const bool four_d = whole.voxels.dim() == 4;
  const std::int64_t frames = four_d ? whole.voxels.size(0) : 0;
  const data::FrameRange range = data::resolve_frames(
      {first_frame, frame_count}, frames, fmt::format("{}: study '{}', series '{}'", input_, id(), name));
  if (four_d) {
    whole.voxels = whole.voxels.narrow(0, range.first, range.count);
    whole.frame_times_s = data::frame_times_of(whole.frame_times_s, frames, range);
  }
  return data::crop(whole, box);
}

data::Volume Study::label(const std::string& name) const {
  if (info_.find_label(name) == nullptr || !read_label_) {
    throw InputError(input_, "study '" + id() + "' has no label map '" + name + "'");
  }
  const auto start = std::chrono::steady_clock::now();
  data::Volume v = read_label_(name);
  read_s_ += seconds_since(start);
  return v;
}

void Study::add_loaded(const std::string& name, data::Volume volume) { series_[name] = std::move(volume); }

const data::DicomSeriesIdentity* Study::dicom_identity(const std::string& series) const {
  const auto it = dicom_.find(series);
  return it == dicom_.end() ? nullptr : &it->second;
}

void Study::set_dicom_identity(const std::string& series, data::DicomSeriesIdentity identity) {
  dicom_[series] = std::move(identity);
}

data::SeriesInfo series_info(const std::string& name, const data::Volume& volume) {
  data::SeriesInfo s;
  s.name = name;
  s.modality = volume.modality;
  s.type = volume.type;
  s.shape = volume.voxels.sizes().vec();
  s.geometry = volume.geometry;
  s.frame_times_s = volume.frame_times_s;
  s.compression = "none";
  return s;
}

}  // namespace vitruvian::campaign
