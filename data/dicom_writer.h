// DICOM series export (through DCMTK, kept out of this header): a 3D or 4D Volume as one series
// of single-frame CT Image or MR Image Storage files, written atomically; the inverse of
// read_dicom_series (docs/PHANTOMS.md, "DICOM output").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data/dicom_io.h"
#include "data/dicom_uid.h"
#include "data/volume.h"

namespace vitruvian::data {

/// The stored values are slope × stored + intercept.
struct DicomRescale {
  double slope = 1.0, intercept = 0.0;
};

/// One series' attributes.
struct DicomSeriesAttributes {
  std::string series_uid, frame_of_reference_uid;  ///< required
  std::string description;
  int number = 1;
  std::string modality;  ///< "CT" or "MR"; empty takes the volume's (which must then be one of them)
  /// SOP Instance UIDs are uid_from(uid_root, {"instance", series_uid, N}) with N the instance number.
  std::string uid_root = kDefaultUidRoot;
  std::string manufacturer = "Vitruvian";
  /// BodyPartExamined ("CHEST", "HEADNECK", ...). Empty: unknown, and Laterality is written
  /// empty (unknown) instead.
  std::string body_part;
  /// Stored values for non-integer voxels. Unset: integer voxels in int16 (or uint16) range are
  /// stored as they are (slope 1, intercept 0); other voxels are mapped linearly onto int16.
  std::optional<DicomRescale> rescale;
};

/// Writes `volume` ([z, y, x], or [t, z, y, x] with frame_times_s) as `folder`/NNNN.dcm, one
/// file per slice, atomically (a temporary folder renamed into place; an existing folder is
/// replaced). Instance N = t × Z + z + 1 is slice z of time point t, at origin + z × spacing_z ×
/// direction column 2. 4D series repeat the slice positions per time point and carry
/// TemporalPositionIdentifier t + 1, NumberOfTemporalPositions and AcquisitionTime = StudyTime +
/// frame time. Pixel data: 16 bits, little endian explicit, signed unless only unsigned values
/// fit. Window presets: CT soft tissue, lung and bone; MR the 1st to 99th percentile.
/// Returns the files written, in instance order. Throws InputError (naming `folder`) for a
/// modality other than CT or MR, an invalid UID, values the rescale cannot store, or a write
/// that fails (nothing is left behind).
std::vector<std::filesystem::path> write_dicom_series(const std::filesystem::path& folder, const Volume& volume,
                                                      const DicomStudyAttributes& study,
                                                      const DicomSeriesAttributes& series);

/// How a study this project generates or exports is identified in DICOM: every UID a function of
/// (uid_root, seed, study id[, series name]), the study id as PatientID and PatientName.
struct DicomStudyIdentity {
  std::string uid_root = kDefaultUidRoot;
  std::uint64_t seed = 0;
  std::string description;  ///< StudyDescription
  std::string body_part;    ///< BodyPartExamined of every series; empty when unknown
};

/// The attributes of study `study_id`: StudyInstanceUID uid_from(root, {"study", seed, id}),
/// PatientID the id, PatientName "Vitruvian^" + id, StudyID and AccessionNumber digits of the study UID,
/// StudyDate 20240101, StudyTime 090000, PatientSex "O".
DicomStudyAttributes dicom_study_attributes(const DicomStudyIdentity& identity, const std::string& study_id);

/// Writes each named series of one study as `study_folder`/<name>/NNNN.dcm (write_dicom_series),
/// numbered 1, 2, ... in the given order, described by its name, with SeriesInstanceUID
/// uid_from(root, {"series", seed, study id, name}) and one Frame of Reference per study
/// (uid_from(root, {"frame-of-reference", seed, study id})). Returns the series folders.
std::vector<std::filesystem::path> write_dicom_study(const std::filesystem::path& study_folder,
                                                     const std::string& study_id,
                                                     const std::vector<std::pair<std::string, const Volume*>>& series,
                                                     const DicomStudyIdentity& identity);

}  // namespace vitruvian::data
