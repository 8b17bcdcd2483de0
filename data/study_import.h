// Studies from NIfTI files and DICOM folders into the volume store: what to import (a manifest
// or plain paths), and the import itself, which loads and checks a whole study before writing
// any of it, so one bad study is reported and skipped while the others land.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "data/dicom_io.h"
#include "data/nifti_io.h"
#include "data/volume_store.h"

namespace vitruvian::data {

/// A series read from one NIfTI file.
struct SeriesSource {
  std::string name;  ///< series name in the study ("ct", "t1_pre", "arterial")
  std::filesystem::path file;
  std::string modality;  ///< "CT", "MR" or "" (NIfTI does not say)
};

/// A label map read from one NIfTI file, bound to one series of the same study.
struct LabelSource {
  std::string name;    ///< "organs", "lesions"
  std::filesystem::path file;
  std::string series;  ///< the reference series; "" = the study's first series
};

/// One study to import: NIfTI series and labels, and/or DICOM folders whose series are added
/// (named from SeriesDescription, else "series_<SeriesNumber>").
struct StudySource {
  std::string id;
  std::vector<SeriesSource> series;
  std::vector<LabelSource> labels;
  std::vector<std::filesystem::path> dicom;
  std::string metadata_json;  ///< stored with the study; "" for none
  std::string origin;         ///< where it was declared ("manifest.yaml:7"), for messages
  /// DICOM folders holding several studies (StudyInstanceUID) become several studies: `id`,
  /// `id`_2, ... Otherwise every series found joins this one study.
  bool split_dicom_studies = false;
};

/// What `vitruvian convert --manifest` reads:
///
///   labels: {1: liver, 2: spleen}          # optional label table
///   studies:
///     - id: case_001
///       series:
///         t1_pre: {file: case_001/t1.nii.gz, modality: MR}
///         portal: case_001/portal.nii.gz   # just a file
///       labels:
///         organs: {file: case_001/seg.nii.gz, series: t1_pre}
///     - id: case_002
///       dicom: [dicom/case_002]            # every series found there
///
/// Relative paths are taken from the manifest's folder.
struct ImportManifest {
  std::vector<StudySource> studies;
  LabelTable labels;
};

/// Throws ConfigError naming the file and line of the first problem (unknown key, missing id or
/// file, duplicate study id).
ImportManifest read_import_manifest(const std::filesystem::path& path);

/// Plain inputs: each NIfTI file becomes a study named after the file (series `series_name`,
/// modality `modality`); each folder becomes one DICOM import whose studies are split by
/// StudyInstanceUID (named after the folder, suffixed _2, _3, ... when it holds several).
/// Throws InputError for a path that is neither.
std::vector<StudySource> studies_from_paths(const std::vector<std::filesystem::path>& inputs,
                                            const std::string& series_name, const std::string& modality);

/// The name a DICOM series gets in a study: its SeriesDescription as a plain lower-case word
/// ("CT Abdomen 1.0mm" → "ct_abdomen_1_0mm"), else "series_<SeriesNumber>"; a name already in
/// `taken` gets _2, _3, ...
std::string dicom_series_name(const DicomSeries& series, const std::set<std::string>& taken);

/// A study, file or series that did not land. line(): "<path>: <reason>" (one line).
struct ImportRejection {
  std::string study;
  std::string path;
  std::string reason;
  std::string line() const;
};

struct ImportReport {
  std::vector<std::string> imported;  ///< study ids written, in order
  std::vector<ImportRejection> rejected;
  std::int64_t series = 0, labels = 0, voxels = 0;
};

struct ImportOptions {
  NiftiReadOptions nifti;
  DicomReadOptions dicom;
  /// Called after each study (imported or not) with its id and the counts so far.
  std::function<void(const std::string& study)> on_study;
};

/// Where each study goes: returns the writer of the file that receives it (a VolumeWriter, or
/// ShardedVolumeWriter::begin_study).
using StudySink = std::function<VolumeWriter&(const std::string& study)>;

/// Imports every source. A study is first loaded whole (every series, every label map); label
/// maps are converted to uint8/uint16 (integral values in range, else the study is rejected)
/// and checked against their reference series' grid; only then is it written through `sink`.
/// A problem in a listed NIfTI series or label map rejects that study alone. A DICOM series that
/// fails its checks is reported and left out while the study's other series land (folders
/// often hold localizers or dose reports); a study left with no series is rejected. Label values
/// missing from `labels` (when the table is non-empty) reject the study.
ImportReport import_studies(const std::vector<StudySource>& sources, const StudySink& sink, const LabelTable& labels,
                            const ImportOptions& options);

}  // namespace vitruvian::data
