// Where a finished study goes. Each Sink writes its files into the study's temporary folder
// (the Ledger renames the folder into place once every sink is done): label maps as a Vitruvian
// HDF5 dataset or as NIfTI, a thumbnail, DICOM SEG, parametric maps and SR, the report. A new output format or
// destination is one new class here.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/volume_store.h"
#include "launch/campaign/route.h"
#include "launch/campaign/study.h"

namespace vitruvian::campaign {

/// A study with its results and report, ready to be written.
struct FinishedStudy {
  FinishedStudy(Study& study, std::vector<RouteResult> results, nlohmann::json report);

  Study& study;
  std::vector<RouteResult> results;  ///< the routes that ran, in route order
  nlohmann::json report;             ///< the report sink completes its timing
  /// One label table for every map written: the study's, plus an id for each model class name
  /// it lacks; `written[i]` is results[i]'s map in those ids (label routes' maps as they are).
  data::LabelTable table;
  std::vector<data::Volume> written;
  std::chrono::steady_clock::time_point started;  ///< when the study's processing began
  std::chrono::steady_clock::time_point writing;  ///< when writing began
  /// Seconds each output took, by its name in `outputs` (the report sink adds them to its timing).
  std::map<std::string, double> output_s;
};

class Sink {
 public:
  virtual ~Sink() = default;
  /// Writes this sink's files for `study` into `dir` (the study's temporary folder). Throws on
  /// failure; the folder is then dropped whole.
  virtual void write(FinishedStudy& study, const std::filesystem::path& dir) const = 0;
  /// Its name in the campaign's `outputs` ("report" for the report).
  virtual std::string name() const = 0;
};

/// labels.h5: the routes' reference series and one label map per route, named after it.
class Hdf5LabelsSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "hdf5"; }
};

/// <route>.nii.gz per route.
class NiftiLabelsSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "nifti"; }
};

/// thumbnail.png: slices through the first route's structures on its reference series.
class ThumbnailSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "thumbnail"; }
};

/// perfusion.png, perfusion_maps.png and perfusion.html (the study page of CT perfusion: maps,
/// core and hypoperfused tissue, volumes, DEFUSE-3, arterial and venous curves) for the study's
/// first perfusion route; nothing for studies without one. Written with the thumbnails.
class PerfusionPageSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "perfusion_page"; }
};

/// <route>.seg.dcm per route with a segmented structure: a BINARY DICOM SEG on the route's DICOM
/// reference series (launch/campaign/dicom_seg_sink.cpp). InputError when the study has no DICOM
/// identity.
class DicomSegSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "dicom_seg"; }
};

/// <map>.pm.dcm per map a route computed (perfusion): a DICOM Parametric Map of float frames on the
/// route's DICOM reference series (launch/campaign/dicom_pmap_sink.cpp), naming the quantity and
/// its units. InputError when the study has no DICOM identity.
class DicomParametricMapSink final : public Sink {
 public:
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "dicom_pmap"; }
};

/// report.sr.dcm: the report's measurements as a DICOM SR TID 1500 Measurement Report; its groups
/// reference the SEG segments when `with_seg` (the SEGs are written too).
class DicomSrSink final : public Sink {
 public:
  explicit DicomSrSink(bool with_seg) : with_seg_(with_seg) {}
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "dicom_sr"; }

 private:
  bool with_seg_;
};

/// report.json, with the read, write (and per output) and total times; runs last.
class ReportSink final : public Sink {
 public:
  explicit ReportSink(int rank) : rank_(rank) {}
  void write(FinishedStudy& study, const std::filesystem::path& dir) const override;
  std::string name() const override { return "report"; }

 private:
  int rank_;
};

/// The sinks `outputs` names (campaign/campaign_config.h: output_names()), in that order, then
/// the report.
std::vector<std::unique_ptr<Sink>> make_sinks(const std::vector<std::string>& outputs, int rank);

}  // namespace vitruvian::campaign
