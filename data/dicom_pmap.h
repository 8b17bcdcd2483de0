// DICOM Parametric Map objects (through DCMTK's dcmpmap, kept out of this header): a float map on
// the grid of a DICOM series (a perfusion parameter, say) written as one multi-frame object, one
// 32-bit float frame per slice, each placed in the patient and derived from its source slice,
// with the real-world value mapping that names the quantity and its units.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "data/anatomy_codes.h"
#include "data/dicom_io.h"
#include "data/volume.h"

namespace vitruvian::data {

/// Everything of a parametric map besides its values.
struct ParametricMapDescription {
  /// The series the map is on: study, frame of reference, one SOP instance per slice; of a time
  /// series, every temporal position (the map lies on the first's slices and derives from all).
  DicomSeriesIdentity source;
  std::string sop_instance_uid, series_uid;
  std::string dimension_organization_uid;  ///< "": a sub-arc of the SOP Instance UID
  std::string series_number = "1101";
  std::string series_description;
  std::string content_label = "MAP";  ///< ContentLabel (a DICOM CS: upper case, digits, _)
  CodedConcept quantity;              ///< what a value is (DCM 126390 "Absolute Regional Blood Flow", ...)
  CodedConcept units;                 ///< its UCUM units ("ml/(100.g)/min", "s", ...)
  std::string lut_label;              ///< a short name of the quantity for viewers ("CBF")
  CodedConcept anatomy{"12738006", "SCT", "Brain"};                      ///< the frames' anatomic region
  CodedConcept derivation{"129104", "DCM", "Perfusion image analysis"};  ///< how each frame derives from its slice
  /// What made it, as ManufacturerModelName and SoftwareVersions, and the algorithm's version
  /// (ContentDescription: the series description, then it in brackets).
  std::string model_name, software_version, algorithm_version;
};

/// Writes `map` ([z, y, x], float32) as a DICOM Parametric Map to `path`: one Float Pixel Data
/// frame per slice, in slice order, each with its plane position, a dimension index and a
/// derivation from the source slice's SOP instances (one per temporal position); the shared plane orientation, pixel
/// measures, frame anatomy, identity pixel transformation, frame type and real-world value mapping (slope 1, intercept
/// 0, the map's range, `quantity` in `units`); every SOP instance of the source series referenced, with its frame of
/// reference, patient and study. Returns the number of frames. InputError (naming `path`) when the map is not float32
/// on the source's slices or holds a value that is not finite; InternalError when DCMTK fails.
std::size_t write_dicom_parametric_map(const std::filesystem::path& path, const Volume& map,
                                       const ParametricMapDescription& description);

}  // namespace vitruvian::data
