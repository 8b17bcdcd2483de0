// One study as a campaign sees it, whatever its source: what it holds (series, label maps,
// metadata, label table), its series read on first use and kept while the study is processed
// (or, where the source can, a box of some frames read alone), the notes its loading left
// (series a DICOM folder held but could not use), and, for studies read from DICOM, each
// series' DICOM identity (what DICOM SEG and SR outputs reference).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/dicom_io.h"
#include "data/volume_store.h"

namespace vitruvian::data {
struct Box;
}  // namespace vitruvian::data

namespace vitruvian::campaign {

class Study {
 public:
  /// Reads one series or label map of this study by name.
  using Reader = std::function<data::Volume(const std::string& name)>;
  /// Reads frames [first_frame, first_frame + frame_count) (frame_count < 0: all from
  /// first_frame) of a box of a series, as Study::series_part gives them.
  using PartReader = std::function<data::Volume(const std::string& name, std::int64_t first_frame,
                                                std::int64_t frame_count, const data::Box& box)>;

  /// `info` lists what the study holds; `input` names where it came from (a file or folder).
  /// `read_series` / `read_label` fetch what is not in `loaded` (may be empty when everything is).
  Study(data::StudyInfo info, std::string input, data::LabelTable label_table, Reader read_series, Reader read_label);

  const std::string& id() const { return info_.id; }
  const data::StudyInfo& info() const { return info_; }
  const std::string& input() const { return input_; }
  const data::LabelTable& label_table() const { return label_table_; }
  /// The study's task: its metadata's "task", else the phantom kind ("" when neither).
  std::string task() const;

  /// A series, read once; InputError naming the study when it has none of that name.
  const data::Volume& series(const std::string& name);
  /// Frames [first_frame, first_frame + frame_count) (frame_count < 0: all from first_frame) of
  /// the box of a series, its geometry that of the box (data::crop). Read alone where the source
  /// can (set_part_reader) and the series is not loaded yet, not kept; else cut from series().
  data::Volume series_part(const std::string& name, std::int64_t first_frame, std::int64_t frame_count,
                           const data::Box& box);
  /// Sources that can read part of a series without the rest (HDF5 datasets) say how.
  void set_part_reader(PartReader read_part) { read_part_ = std::move(read_part); }
  /// Whether series_part reads parts alone (else it reads the whole series first).
  bool reads_parts() const { return static_cast<bool>(read_part_); }
  /// A label map (read each time; label maps are read once per route at most).
  data::Volume label(const std::string& name) const;
  /// Puts an already loaded series in place (sources that read a study whole).
  void add_loaded(const std::string& name, data::Volume volume);
  /// The DICOM identity of a series (UIDs, patient and study, slices' SOP instances); nullptr
  /// when the series did not come from DICOM.
  const data::DicomSeriesIdentity* dicom_identity(const std::string& series) const;
  void set_dicom_identity(const std::string& series, data::DicomSeriesIdentity identity);
  /// Seconds spent reading series and label maps so far.
  double read_seconds() const { return read_s_; }

  /// Remarks from loading, copied into the report's notes.
  std::vector<std::string> notes;

 private:
  data::StudyInfo info_;
  std::string input_;
  data::LabelTable label_table_;
  Reader read_series_, read_label_;
  PartReader read_part_;
  std::map<std::string, data::Volume> series_;
  std::map<std::string, data::DicomSeriesIdentity> dicom_;
  mutable double read_s_ = 0;
};

/// What a StudyInfo says of a volume (shape, type, geometry, modality, frame times).
data::SeriesInfo series_info(const std::string& name, const data::Volume& volume);

}  // namespace vitruvian::campaign
