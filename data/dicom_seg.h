// DICOM Segmentation objects (through DCMTK's dcmseg, kept out of this header): a label map on
// the grid of a DICOM series written as a BINARY segmentation, one segment per structure, one
// frame per slice a structure touches, each frame placed in the patient and derived from its
// source slice.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "data/anatomy_codes.h"
#include "data/dicom_io.h"
#include "data/volume.h"

namespace vitruvian::data {

/// One segment: the label-map value it encodes, its label and codes.
struct SegSegment {
  std::int64_t value = 0;
  std::string label;  ///< SegmentLabel (the structure's name)
  AnatomyCode code;
  /// sRGB colour viewers should show it in (RecommendedDisplayCIELabValue), when it has one.
  std::optional<std::array<std::uint8_t, 3>> colour;
};

/// Everything of a SEG besides its voxels.
struct SegDescription {
  DicomSeriesIdentity source;  ///< the series the label map is on: study, frame of reference, slices
  std::string sop_instance_uid, series_uid;
  std::string dimension_organization_uid;  ///< "": a sub-arc of the SOP Instance UID
  std::string series_number = "1001";
  std::string series_description;
  std::string content_label = "SEGMENTATION";  ///< ContentLabel (a DICOM CS: upper case, digits, _)
  std::string algorithm_name = "Vitruvian";    ///< SegmentAlgorithmName (AUTOMATIC)
  /// What made it, as SegmentDescription, ManufacturerModelName and SoftwareVersions.
  std::string algorithm_version, model_name, software_version;
};

/// Per segment (in `segments` order) the slices (z indices, ascending) holding at least one of
/// its voxels: the frames a SEG carries for it. `labels`: [z, y, x] integer label values.
std::vector<std::vector<std::int64_t>> seg_frames(const Volume& labels, const std::vector<SegSegment>& segments);

/// Writes `labels` as a BINARY DICOM SEG to `path`: `segments` numbered 1, 2, ... in order (give
/// only segments with voxels: one with none is listed with no frame), frames per seg_frames(), each with its
/// plane position and a derivation from the source slice's SOP instance; shared plane
/// orientation and pixel measures; the source series referenced, with its frame of reference,
/// patient and study. Returns the number of frames. InputError (naming `path`) when the label
/// map is not on the source's slices or no segment has a voxel; InternalError when DCMTK fails.
std::size_t write_dicom_seg(const std::filesystem::path& path, const Volume& labels,
                            const std::vector<SegSegment>& segments, const SegDescription& description);

}  // namespace vitruvian::data
