// DICOM series import (through DCMTK, kept out of this header): files grouped by
// SeriesInstanceUID, slices sorted along the slice normal, checked, rescaled, and placed in LPS.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/volume.h"

namespace vitruvian::data {

struct DicomReadOptions {
  /// Relative: every gap between neighbouring slices may differ from the median gap by this
  /// fraction; also bounds the gantry tilt (sideways drift per mm along the normal).
  double spacing_tolerance = 0.01;
  /// A series with more than Rows × Columns × slices voxels is refused before anything is
  /// allocated (a lying header cannot make us allocate gigabytes).
  std::int64_t max_voxels = std::int64_t{1} << 31;
};

/// Patient and study attributes: read from a series' first image and copied into objects derived
/// from it (segmentations, reports) so that they file into the same patient and study; written
/// into every image of a series (write_dicom_series). Empty strings are empty (type 2) attributes.
struct DicomStudyAttributes {
  std::string study_uid;
  std::string patient_name, patient_id, patient_birth_date, patient_sex;
  std::string study_date, study_time;  ///< DA "YYYYMMDD", TM "HHMMSS"
  std::string study_id, accession_number, referring_physician_name, study_description;
  std::string specific_character_set;  ///< how the text above is encoded ("" : ASCII)
};

/// What an object derived from a series must reference: its UIDs, frame of reference and the
/// SOP instance of each slice.
struct DicomSeriesIdentity {
  std::string series_uid, modality, frame_of_reference_uid;
  DicomStudyAttributes study;  ///< with the StudyInstanceUID
  /// One per slice, in slice (z) order, as DicomSeries::files: of a time series, every slice of
  /// the first temporal position, then of the second, ...
  std::vector<std::string> sop_instance_uids, sop_class_uids;
  std::size_t temporal_positions = 1;  ///< of a time series, its frames; else 1

  /// The same series' identity restricted to its first temporal position's slices: what an
  /// object derived from one frame of a time series (or from a 3D series: itself) references.
  DicomSeriesIdentity first_temporal_position() const;
};

/// One imported series.
struct DicomSeries {
  std::string study_uid, series_uid, modality, series_description, series_number, patient_id, study_date;
  /// [z, y, x]: x along the row direction (ImageOrientationPatient's first triple), y along the
  /// column direction, z along their cross product; the origin is the first slice's
  /// ImagePositionPatient. Voxels are RescaleSlope × stored + RescaleIntercept: int16 when all
  /// of them are integers in int16's range, else float32; unsigned data with more than 8 bits
  /// and no rescale stays kUInt16 (in an int32 tensor). A series whose images name two or more
  /// TemporalPositionIdentifier values is a time series: the same slice positions at every
  /// temporal position, read as [t, z, y, x] with frame_times_s from AcquisitionTime relative to
  /// the first temporal position's. So is a series that names none but holds every slice position
  /// equally often (two or more times), as many scanners send perfusion: the repeats of each
  /// position ordered by AcquisitionTime (a run past midnight continues into the next day), or by
  /// AcquisitionNumber where the times do not tell them apart. Refused, with one line: repeats
  /// that neither tells apart, or that differ in EchoTime, EchoNumbers, InversionTime,
  /// DiffusionBValue, SequenceName or ImageType (echoes, b-values or reconstructions, not frames);
  /// and mosaics (ImageType MOSAIC: several slices tiled in one image).
  Volume volume;
  std::vector<std::filesystem::path> files;  ///< one per slice, in slice (z) order (per temporal position)
  /// UIDs, patient and study attributes, and each slice's SOP instance (in the order of `files`).
  DicomSeriesIdentity identity;
};

/// A file or series that was not imported. `reason` is one line: what is wrong and what was
/// expected. A bad series gives one rejection naming its first file (by name).
struct DicomRejection {
  std::filesystem::path path;
  std::string reason;
};

struct DicomScan {
  /// Ordered by study_uid, then series number, then series_uid. Series with the same
  /// study_uid belong to one study.
  std::vector<DicomSeries> series;
  std::vector<DicomRejection> rejected;
};

/// Imports every series found under `folder` (searched recursively). Files without the DICOM
/// preamble ("DICM" at byte 128) are skipped silently; a DICOM file that cannot be parsed, or
/// holds no image, is a rejection. A series is imported whole or rejected whole (missing or
/// duplicate slices, uneven spacing, mixed orientations, gantry tilt, image size or pixel
/// format changing within the series, colour, multi-frame files, truncated pixel data, a
/// transfer syntax no registered decoder handles, more than `max_voxels`); the other series
/// still import. Uncompressed, deflated, JPEG, JPEG-LS and RLE data decode.
/// Throws InputError when `folder` is not a directory or the options are invalid.
DicomScan read_dicom_series(const std::filesystem::path& folder, const DicomReadOptions& options = {});

/// The same for an explicit list of files (which may hold several series).
DicomScan read_dicom_files(const std::vector<std::filesystem::path>& files, const DicomReadOptions& options = {});

/// The image files of one study, found from their headers alone (pixel data stays on disk).
struct DicomStudyFiles {
  std::string study_uid;
  std::vector<std::filesystem::path> files;  ///< in name order; read_dicom_files() imports them
  std::int64_t voxels = 0;                   ///< of its largest series: Rows × Columns × images
};

struct DicomListing {
  std::vector<DicomStudyFiles> studies;  ///< ordered by StudyInstanceUID
  /// DICOM files that are no image, cannot be parsed, or name no StudyInstanceUID.
  std::vector<DicomRejection> rejected;
};

/// Every DICOM image file under `folder` (searched recursively) by StudyInstanceUID, for
/// listing studies before any is loaded. Files without the DICOM preamble are skipped silently.
/// Throws InputError when `folder` is not a readable directory.
DicomListing list_dicom_studies(const std::filesystem::path& folder);

}  // namespace vitruvian::data
