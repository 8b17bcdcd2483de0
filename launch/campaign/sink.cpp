// The label-map, thumbnail and report sinks, and the one label table they share.
#include "launch/campaign/sink.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/stopwatch.h"
#include "data/nifti_io.h"
#include "data/preview.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// `labels` (class indices) with class c written as ids[c]: uint8 when every id fits, else uint16.
data::Volume relabel(const data::Volume& labels, const std::vector<int>& ids) {
  const bool narrow = *std::max_element(ids.begin(), ids.end()) <= 255;
  data::Volume out;
  out.geometry = labels.geometry;
  out.type = narrow ? data::VoxelType::kUInt8 : data::VoxelType::kUInt16;
  out.voxels = at::empty(labels.voxels.sizes(), narrow ? at::kByte : at::kInt);
  const at::Tensor in = labels.voxels.scalar_type() == at::kByte ? labels.voxels.contiguous() : labels.voxels.to(at::kInt).contiguous();
  const auto map = [&](const auto* from, auto* to) {
    for (std::int64_t i = 0; i < in.numel(); ++i) to[i] = static_cast<std::remove_pointer_t<decltype(to)>>(ids[static_cast<std::size_t>(from[i])]);
  };
  if (in.scalar_type() == at::kByte) {
    narrow ? map(in.data_ptr<std::uint8_t>(), out.voxels.data_ptr<std::uint8_t>()) : map(in.data_ptr<std::uint8_t>(), out.voxels.data_ptr<std::int32_t>());
  } else {
    narrow ? map(in.data_ptr<std::int32_t>(), out.voxels.data_ptr<std::uint8_t>()) : map(in.data_ptr<std::int32_t>(), out.voxels.data_ptr<std::int32_t>());
  }
  return out;
}

}  // namespace

FinishedStudy::FinishedStudy(Study& s, std::vector<RouteResult> r, nlohmann::json report_json)
    : study(s), results(std::move(r)), report(std::move(report_json)), table(s.label_table()) {
  started = writing = Clock::now();
  std::map<std::string, int> id_of;
  for (const auto& [id, name] : table) id_of.emplace(name, id);
  int next = table.empty() ? 1 : table.rbegin()->first + 1;
  for (const auto& result : results) {
    if (!result.from_model) continue;
    for (std::size_t c = 1; c < result.classes.names.size(); ++c) {
      if (id_of.emplace(result.classes.names[c], next).second) table[next++] = result.classes.names[c];
    }
  }
  for (const auto& result : results) {
    if (!result.from_model) {
      written.push_back(result.labels);
      continue;
    }
    std::vector<int> ids{0};
    for (std::size_t c = 1; c < result.classes.names.size(); ++c) ids.push_back(id_of.at(result.classes.names[c]));
    written.push_back(relabel(result.labels, ids));
  }
}

void Hdf5LabelsSink::write(FinishedStudy& f, const fs::path& dir) const {
  if (f.results.empty()) return;
  data::StorageOptions storage;
  storage.lz4 = true;  // several times faster to write than deflate; setup.sh installs the plugin
  data::VolumeWriter writer(dir / "labels.h5", storage);
  writer.set_label_table(f.table);
  std::set<std::string> added;
  for (std::size_t i = 0; i < f.results.size(); ++i) {
    const RouteResult& r = f.results[i];
    if (!r.maps.empty()) {
      for (const RouteMap& m : r.maps) writer.add_series(f.study.id(), m.name, m.volume, f.study.input());
      writer.add_label(f.study.id(), r.route->name, r.maps.front().name, f.written[i], r.route->name);
      continue;
    }
    if (added.insert(r.reference).second) writer.add_series(f.study.id(), r.reference, f.study.series(r.reference), f.study.input());
    writer.add_label(f.study.id(), r.route->name, r.reference, f.written[i], r.route->name);
  }
  writer.commit();
}

void NiftiLabelsSink::write(FinishedStudy& f, const fs::path& dir) const {
  for (std::size_t i = 0; i < f.results.size(); ++i) {
    data::write_nifti(dir / (f.results[i].route->name + ".nii.gz"), f.written[i]);
    for (const RouteMap& m : f.results[i].maps) data::write_nifti(dir / (m.name + ".nii.gz"), m.volume);
  }
}

void ThumbnailSink::write(FinishedStudy& f, const fs::path& dir) const {
  if (f.results.empty()) return;
  const RouteResult& first = f.results.front();
  const at::Tensor& labels = first.labels.voxels;
  // A route with maps (perfusion) shows its labels on its first map: its reference is 4D.
  std::vector<std::pair<std::string, data::Volume>> shown;
  if (first.maps.empty()) {
    shown.emplace_back(first.reference, f.study.series(first.reference));
  } else {
    shown.emplace_back(first.maps.front().name, first.maps.front().volume);
  }
  write_png(dir / "thumbnail.png", data::study_picture(shown, labels, data::label_centre(labels)));
}

void ReportSink::write(FinishedStudy& f, const fs::path& dir) const {
  const auto now = Clock::now();
  nlohmann::json& timing = f.report["timing"];
  timing["read_s"] = f.study.read_seconds();
  timing["write_s"] = seconds_between(f.writing, now);
  timing["outputs_s"] = f.output_s;
  timing["total_s"] = seconds_between(f.started, now);
  timing["rank"] = rank_;
  write_file_atomic(dir / "report.json", f.report.dump(2));
}

std::vector<std::unique_ptr<Sink>> make_sinks(const std::vector<std::string>& outputs, int rank) {
  std::vector<std::unique_ptr<Sink>> sinks;
  for (const auto& name : outputs) {
    if (name == "hdf5") {
      sinks.push_back(std::make_unique<Hdf5LabelsSink>());
    } else if (name == "nifti") {
      sinks.push_back(std::make_unique<NiftiLabelsSink>());
    } else if (name == "thumbnail") {
      sinks.push_back(std::make_unique<ThumbnailSink>());
      sinks.push_back(std::make_unique<PerfusionPageSink>());
    } else if (name == "dicom_seg") {
      sinks.push_back(std::make_unique<DicomSegSink>());
    } else if (name == "dicom_pmap") {
      sinks.push_back(std::make_unique<DicomParametricMapSink>());
    } else if (name == "dicom_sr") {
      const bool with_seg = std::find(outputs.begin(), outputs.end(), "dicom_seg") != outputs.end();
      sinks.push_back(std::make_unique<DicomSrSink>(with_seg));
    } else {
      throw ConfigError("outputs", "'" + name + "' is not an output");
    }
  }
  sinks.push_back(std::make_unique<ReportSink>(rank));
  return sinks;
}

}  // namespace vitruvian::campaign
