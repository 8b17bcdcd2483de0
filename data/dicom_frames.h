// What the multi-frame DICOM writers (SEG, parametric map) share: DCMTK's conditions as
// exceptions, the patient and study they import from the source series, the functional groups
// that place a frame in the patient and derive it from its source slice, and the references to
// the source series. It includes DCMTK's headers: include it only from those writers' sources.
#pragma once

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/iodmacro.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/anatomy_codes.h"
#include "data/dicom_io.h"
#include "data/geometry.h"
#include "data/volume.h"

namespace vitruvian::data {

/// Throws InternalError naming `path` and the DCMTK call when `status` is bad.
void check_dcmtk(const OFCondition& status, const std::filesystem::path& path, const char* call);

/// Sets dcmiod's log to errors only, once: it warns while a multi-frame object is built (before
/// any frame is added) that it cannot yet check the dimensions. Its errors still come back as
/// conditions.
void quiet_dcmiod_warnings();

/// The UID of a multi-frame object's dimension organisation: `given`, else a sub-arc of the
/// object's own SOP Instance UID (its series UID where that would pass 64 characters).
std::string dimension_organization_uid(const std::string& given, const std::string& sop_instance_uid,
                                       const std::string& series_uid);

/// `c` as DCMTK's code sequence item.
CodeSequenceMacro code_sequence(const CodedConcept& c);

/// The patient, study and frame-of-reference attributes of `source`, as an object derived from it
/// imports them (and keeps, where the IOD classes left one empty).
void fill_source_item(DcmItem& item, const DicomSeriesIdentity& source);

/// Shared groups of a frame stack on `g`: the plane orientation and the pixel measures (pixel
/// spacing, slice thickness and spacing between slices).
std::unique_ptr<FGPlaneOrientationPatient> plane_orientation(const Geometry& g);
std::unique_ptr<FGPixelMeasures> pixel_measures(const Geometry& g, const std::filesystem::path& path);

/// The position (ImagePositionPatient) of slice `z` of `g`.
std::unique_ptr<FGPlanePosPatient> plane_position(const Geometry& g, std::int64_t z, const std::filesystem::path& path);

/// A derivation (`derivation`, e.g. DCM 113076 Segmentation) from the SOP instances `instances`
/// (indices into `source`'s lists): a SEG frame's one slice, or a map's slice at every temporal
/// position of a time series.
std::unique_ptr<FGDerivationImage> derived_from(const DicomSeriesIdentity& source,
                                                const std::vector<std::size_t>& instances,
                                                const CodedConcept& derivation, const std::filesystem::path& path);

/// The Common Instance Reference module's Referenced Series Sequence in `dataset`: every SOP
/// instance of `source` (every slice, at every temporal position), replacing what the IOD class
/// wrote. Built directly: dcmiod's IODReferences checks each new reference against all before it,
/// which takes seconds for the thousands of images of a 4D series.
void put_source_references(DcmItem& dataset, const DicomSeriesIdentity& source, const std::filesystem::path& path);

/// Writes `file` (an object derived from `source`, as its IOD class wrote it) to `path`: the
/// source's patient and study (also where the class left one empty), its own SOP Instance and
/// Series UIDs, the series dated as its content; explicit little endian.
void save_derived(DcmFileFormat& file, const DicomSeriesIdentity& source, const std::string& sop_instance_uid,
                  const std::string& series_uid, const std::filesystem::path& path);

/// Refuses a `what` ("label map", "map") [z, y, x] that does not lie on `source`'s slices (one SOP
/// instance per slice), or whose slices are too large for DICOM's rows and columns: InputError
/// naming `path`.
void check_on_source(const std::filesystem::path& path, const Volume& volume, const DicomSeriesIdentity& source,
                     const char* what);

}  // namespace vitruvian::data
