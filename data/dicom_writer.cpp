// DICOM series export through DCMTK: the voxels encoded as 16-bit stored values, one dataset per
// slice with the patient, study, series, frame-of-reference, equipment, image-plane, pixel and
// CT/MR modules, saved into a temporary folder that is renamed into place.
#include "data/dicom_writer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "data/dicom_common.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

/// How the voxels are stored: 16-bit values, signed or not, and the rescale back to voxel values
/// (computed slice by slice when written: no copy of the whole volume).
struct Encoding {
  bool is_signed = true;
  bool direct = true;  ///< the voxels are the stored values (slope 1, intercept 0)
  DicomRescale rescale;
};

/// A window preset: centre and width in voxel (rescaled) units.
struct Window {
  double centre = 0, width = 1;
  std::string name;
};

std::string decimal_strings(const double* values, std::size_t n) {
  std::string text;
  for (std::size_t i = 0; i < n; ++i) text += (i ? "\\" : "") + decimal_string(values[i]);
  return text;
}

/// TM "HHMMSS.FFFFFF" of `base` ("HHMMSS") plus `seconds`, wrapping at midnight.
std::string time_plus(const std::string& base, double seconds) {
  int h = 0, m = 0, s = 0;
  if (base.size() >= 6) {
    h = std::stoi(base.substr(0, 2));
    m = std::stoi(base.substr(2, 2));
    s = std::stoi(base.substr(4, 2));
  }
  const auto micros = static_cast<std::int64_t>(std::llround((h * 3600.0 + m * 60.0 + s + seconds) * 1e6));
  const std::int64_t day = std::int64_t{86400} * 1000000;
  const std::int64_t t = ((micros % day) + day) % day;
  return fmt::format("{:02d}{:02d}{:02d}.{:06d}", t / 3600000000, t / 60000000 % 60, t / 1000000 % 60, t % 1000000);
}

/// How `volume` is stored (see DicomSeriesAttributes::rescale).
Encoding encode(const Volume& volume, const std::optional<DicomRescale>& requested, const std::string& where) {
  const double low = volume.voxels.min().item<double>(), high = volume.voxels.max().item<double>();
  if (!std::isfinite(low) || !std::isfinite(high)) {
    throw InputError(where, "holds NaN or infinite values; expected finite voxels to store in DICOM");
  }
  Encoding e;
  const bool floats = is_floating(volume.type);
  const bool whole = !floats || at::equal(volume.voxels, volume.voxels.round());
  const bool unsigned_type = volume.type == VoxelType::kUInt8 || volume.type == VoxelType::kUInt16;
  if (!requested && whole && low >= -32768 && high <= 32767 && !(low >= 0 && unsigned_type)) return e;
  if (!requested && whole && low >= 0 && high <= 65535) {
    e.is_signed = false;
    return e;
  }
  e.direct = false;
  if (requested) {
    e.rescale = *requested;
    if (!(e.rescale.slope != 0.0) || !std::isfinite(e.rescale.slope) || !std::isfinite(e.rescale.intercept)) {
      throw InputError(where, fmt::format("rescale slope {} and intercept {}; expected a finite, non-zero slope",
                                          e.rescale.slope, e.rescale.intercept));
    }
  } else {
    e.rescale.slope = high > low ? (high - low) / 65535.0 : 1.0;
    e.rescale.intercept = low + 32768.0 * e.rescale.slope;
  }
  const double a = std::round((low - e.rescale.intercept) / e.rescale.slope);
  const double b = std::round((high - e.rescale.intercept) / e.rescale.slope);
  const double stored_low = std::min(a, b), stored_high = std::max(a, b);
  e.is_signed = stored_low < 0;
  if (stored_low < (e.is_signed ? -32768 : 0) || stored_high > (e.is_signed ? 32767 : 65535)) {
    throw InputError(where, fmt::format("values {:g} to {:g} need stored values {:g} to {:g} with slope {:g} and "
                                        "intercept {:g}; expected them within 16 bits",
                                        low, high, stored_low, stored_high, e.rescale.slope, e.rescale.intercept));
  }
  return e;
}

/// The stored values of slice z at time t, int32.
at::Tensor stored_slice(const Volume& volume, const Encoding& e, std::int64_t t, std::int64_t z) {
  const at::Tensor slice = volume.voxels.dim() == 4 ? volume.voxels[t][z] : volume.voxels[z];
  if (e.direct) return slice.to(at::kInt).contiguous();
  return ((slice.to(at::kDouble) - e.rescale.intercept) / e.rescale.slope).round().to(at::kInt).contiguous();
}

/// Window presets: CT soft tissue, lung and bone; MR the 1st to 99th percentile of the voxels.
std::vector<Window> window_presets(const Volume& volume, const std::string& modality) {
  if (modality == "CT") return {{40, 400, "SOFT_TISSUE"}, {-600, 1500, "LUNG"}, {400, 2000, "BONE"}};
  at::Tensor values = volume.voxels.reshape({-1});
  const std::int64_t step = std::max<std::int64_t>(1, values.numel() / 1000000);  // a sample suffices
  values = values.slice(0, 0, values.numel(), step).to(at::kDouble);
  const at::Tensor sorted = std::get<0>(values.sort());
  const auto at_fraction = [&](double f) {
    return sorted[static_cast<std::int64_t>(f * static_cast<double>(sorted.numel() - 1))].item<double>();
  };
  const double low = at_fraction(0.01), high = at_fraction(0.99);
  return {{(low + high) / 2, std::max(1.0, high - low), "P1_P99"}};
}

void check(const OFCondition& condition, const std::string& what, const std::string& where) {
  if (condition.bad()) throw InputError(where, fmt::format("DCMTK could not write {}: {}", what, condition.text()));
}

/// Everything one slice's dataset needs besides its index.
struct SeriesContext {
  const DicomStudyAttributes& study;
  const DicomSeriesAttributes& series;
  std::string modality, where;
  const Encoding& encoding;
  std::vector<Window> windows;
  std::array<double, 3> row, column, normal;
  std::int64_t frames, slices, rows, columns;
  const Volume& volume;
};

class DatasetFiller {
 public:
  DatasetFiller(DcmItem& item, const std::string& where) : item_(item), where_(where) {}
  void put(const DcmTagKey& tag, const std::string& value) {
    check(item_.putAndInsertString(tag, value.c_str()), DcmTag(tag).getTagName(), where_);
  }
  void put(const DcmTagKey& tag, Uint16 value) {
    check(item_.putAndInsertUint16(tag, value), DcmTag(tag).getTagName(), where_);
  }

 private:
  DcmItem& item_;
  const std::string& where_;
};

/// Patient, general study, general series, frame of reference, equipment and SOP common modules.
void fill_identity(DatasetFiller& d, const SeriesContext& c, const std::string& instance_uid) {
  const bool ct = c.modality == "CT";
  d.put(DCM_SpecificCharacterSet, "ISO_IR 192");
  d.put(DCM_SOPClassUID, ct ? UID_CTImageStorage : UID_MRImageStorage);
  d.put(DCM_SOPInstanceUID, instance_uid);
  d.put(DCM_PatientName, c.study.patient_name);
  d.put(DCM_PatientID, c.study.patient_id);
  d.put(DCM_PatientBirthDate, c.study.patient_birth_date);
  d.put(DCM_PatientSex, c.study.patient_sex);
  d.put(DCM_StudyInstanceUID, c.study.study_uid);
  d.put(DCM_StudyDate, c.study.study_date);
  d.put(DCM_StudyTime, c.study.study_time);
  d.put(DCM_ReferringPhysicianName, c.study.referring_physician_name);
  d.put(DCM_StudyID, c.study.study_id);
  d.put(DCM_AccessionNumber, c.study.accession_number);
  d.put(DCM_StudyDescription, c.study.study_description);
  d.put(DCM_Modality, c.modality);
  d.put(DCM_SeriesInstanceUID, c.series.series_uid);
  d.put(DCM_SeriesNumber, std::to_string(c.series.number));
  d.put(DCM_SeriesDescription, c.series.description);
  d.put(DCM_SeriesDate, c.study.study_date);
  d.put(DCM_SeriesTime, c.study.study_time);
  d.put(DCM_PatientPosition, "HFS");
  if (c.series.body_part.empty()) {
    d.put(DCM_Laterality, "");  // unknown: whether the part is paired is not known either
  } else {
    d.put(DCM_BodyPartExamined, c.series.body_part);
  }
  d.put(DCM_FrameOfReferenceUID, c.series.frame_of_reference_uid);
  d.put(DCM_PositionReferenceIndicator, "");
  d.put(DCM_Manufacturer, c.series.manufacturer);
  d.put(DCM_ManufacturerModelName, "vitruvian");
  d.put(DCM_InstanceCreationDate, c.study.study_date);
  d.put(DCM_InstanceCreationTime, c.study.study_time);
}

/// The CT Image or MR Image module's acquisition attributes (synthetic data: none is known).
void fill_acquisition(DatasetFiller& d, const SeriesContext& c) {
  if (c.modality == "CT") {
    d.put(DCM_ImageType, "DERIVED\\SECONDARY\\AXIAL");
    d.put(DCM_KVP, "");
    return;
  }
  d.put(DCM_ImageType, "DERIVED\\SECONDARY\\OTHER");
  d.put(DCM_ScanningSequence, "RM");
  d.put(DCM_SequenceVariant, "NONE");
  d.put(DCM_ScanOptions, "");
  d.put(DCM_MRAcquisitionType, "3D");
  d.put(DCM_RepetitionTime, "");
  d.put(DCM_EchoTime, "");
  d.put(DCM_EchoTrainLength, "");
}

/// Image plane, image pixel, rescale and window attributes, and the pixel data, of slice z at time t.
void fill_image(DcmDataset& item, DatasetFiller& d, const SeriesContext& c, std::int64_t t, std::int64_t z) {
  const auto& g = c.volume.geometry;
  std::array<double, 3> position{};
  for (int r = 0; r < 3; ++r)
    position[r] = g.origin[r] + static_cast<double>(z) * g.spacing[2] * g.direction[r * 3 + 2];
  const std::array<double, 6> orientation{c.row[0], c.row[1], c.row[2], c.column[0], c.column[1], c.column[2]};
  const std::array<double, 2> pixel_spacing{g.spacing[1], g.spacing[0]};
  const std::int64_t instance = t * c.slices + z + 1;
  const double seconds = c.volume.frame_times_s.empty() ? 0.0 : c.volume.frame_times_s[static_cast<std::size_t>(t)];
  d.put(DCM_InstanceNumber, std::to_string(instance));
  d.put(DCM_AcquisitionNumber, std::to_string(t + 1));
  d.put(DCM_ContentDate, c.study.study_date);
  d.put(DCM_ContentTime, time_plus(c.study.study_time, seconds));
  d.put(DCM_AcquisitionDate, c.study.study_date);
  d.put(DCM_AcquisitionTime, time_plus(c.study.study_time, seconds));
  if (c.frames > 1) {
    d.put(DCM_TemporalPositionIdentifier, std::to_string(t + 1));
    d.put(DCM_NumberOfTemporalPositions, std::to_string(c.frames));
  }
  d.put(DCM_ImagePositionPatient, decimal_strings(position.data(), 3));
  d.put(DCM_ImageOrientationPatient, decimal_strings(orientation.data(), 6));
  d.put(DCM_PixelSpacing, decimal_strings(pixel_spacing.data(), 2));
  d.put(DCM_SliceThickness, decimal_string(g.spacing[2]));
  d.put(DCM_SpacingBetweenSlices, decimal_string(g.spacing[2]));
  double along = 0;
  for (int r = 0; r < 3; ++r) along += position[r] * c.normal[r];
  d.put(DCM_SliceLocation, decimal_string(along));
  d.put(DCM_SamplesPerPixel, Uint16{1});
  d.put(DCM_PhotometricInterpretation, "MONOCHROME2");
  d.put(DCM_Rows, static_cast<Uint16>(c.rows));
  d.put(DCM_Columns, static_cast<Uint16>(c.columns));
  d.put(DCM_BitsAllocated, Uint16{16});
  d.put(DCM_BitsStored, Uint16{16});
  d.put(DCM_HighBit, Uint16{15});
  d.put(DCM_PixelRepresentation, Uint16{c.encoding.is_signed ? Uint16{1} : Uint16{0}});
  const bool rescaled = c.encoding.rescale.slope != 1.0 || c.encoding.rescale.intercept != 0.0;
  if (c.modality == "CT" || rescaled) {
    d.put(DCM_RescaleIntercept, decimal_string(c.encoding.rescale.intercept));
    d.put(DCM_RescaleSlope, decimal_string(c.encoding.rescale.slope));
    d.put(DCM_RescaleType, c.modality == "CT" ? "HU" : "US");
  }
  std::string centres, widths, names;
  for (const Window& w : c.windows) {
    const bool first = centres.empty();
    centres += (first ? "" : "\\") + decimal_string(w.centre);
    widths += (first ? "" : "\\") + decimal_string(w.width);
    names += (first ? "" : "\\") + w.name;
  }
  d.put(DCM_WindowCenter, centres);
  d.put(DCM_WindowWidth, widths);
  d.put(DCM_WindowCenterWidthExplanation, names);
  const at::Tensor slice = stored_slice(c.volume, c.encoding, t, z);
  std::vector<Uint16> words(static_cast<std::size_t>(slice.numel()));
  const std::int32_t* values = slice.data_ptr<std::int32_t>();
  for (std::size_t i = 0; i < words.size(); ++i) words[i] = static_cast<Uint16>(values[i]);  // two's complement
  check(item.putAndInsertUint16Array(DCM_PixelData, words.data(), static_cast<unsigned long>(words.size())),
        "PixelData", c.where);
}

/// The series' modality, checked; the volume's when the attributes name none.
std::string series_modality(const Volume& volume, const DicomSeriesAttributes& series, const std::string& where) {
  const std::string modality = series.modality.empty() ? volume.modality : series.modality;
  if (modality != "CT" && modality != "MR") {
    throw InputError(where, fmt::format("modality '{}'; expected CT or MR to write CT or MR Image Storage", modality));
  }
  return modality;
}

void check_attributes(const DicomStudyAttributes& study, const DicomSeriesAttributes& series,
                      const std::string& where) {
  for (const auto& [name, uid] : {std::pair<const char*, const std::string&>{"StudyInstanceUID", study.study_uid},
                                  {"SeriesInstanceUID", series.series_uid},
                                  {"FrameOfReferenceUID", series.frame_of_reference_uid}}) {
    if (!is_valid_uid(uid)) throw InputError(where, fmt::format("{} '{}' is not a valid UID", name, uid));
  }
  check_uid_root(series.uid_root, where + ": UID root " + series.uid_root);
}

}  // namespace

std::vector<fs::path> write_dicom_series(const fs::path& folder, const Volume& volume,
                                         const DicomStudyAttributes& study, const DicomSeriesAttributes& series) {
  const std::string where = folder.string();
  volume.validate(where);
  check_attributes(study, series, where);
  const std::string modality = series_modality(volume, series, where);
  const auto shape = volume.shape_zyx();
  if (shape[1] > 65535 || shape[2] > 65535) throw InputError(where, "slices larger than 65535 pixels a side");
  const Encoding encoding = encode(volume, series.rescale, where);
  const auto& dir = volume.geometry.direction;
  const std::array<double, 3> row{dir[0], dir[3], dir[6]}, column{dir[1], dir[4], dir[7]};
  const std::array<double, 3> normal{row[1] * column[2] - row[2] * column[1], row[2] * column[0] - row[0] * column[2],
                                     row[0] * column[1] - row[1] * column[0]};
  const SeriesContext context{study,    series, modality, where,           encoding, window_presets(volume, modality),
                              row,      column, normal,   volume.frames(), shape[0], shape[1],
                              shape[2], volume};
  std::vector<fs::path> files;
  const std::int64_t count = context.frames * context.slices;
  const int digits = std::max<int>(4, static_cast<int>(std::to_string(count).size()));
  for (std::int64_t n = 1; n <= count; ++n) files.push_back(folder / fmt::format("{:0{}d}.dcm", n, digits));
  write_atomically(folder, [&](const fs::path& temporary) {
    fs::create_directories(temporary);
    for (std::int64_t t = 0; t < context.frames; ++t) {
      for (std::int64_t z = 0; z < context.slices; ++z) {
        DcmFileFormat file;
        DcmDataset& dataset = *file.getDataset();
        DatasetFiller d(dataset, where);
        const std::int64_t instance = t * context.slices + z + 1;
        fill_identity(d, context, uid_from(series.uid_root, {"instance", series.series_uid, std::to_string(instance)}));
        fill_acquisition(d, context);
        fill_image(dataset, d, context, t, z);
        const fs::path path = temporary / files[static_cast<std::size_t>(instance - 1)].filename();
        check(file.saveFile(OFFilename(path.c_str()), EXS_LittleEndianExplicit), "file " + path.string(), where);
      }
    }
  });
  return files;
}

DicomStudyAttributes dicom_study_attributes(const DicomStudyIdentity& identity, const std::string& study_id) {
  DicomStudyAttributes a;
  a.study_uid = uid_from(identity.uid_root, {"study", std::to_string(identity.seed), study_id});
  a.patient_name = "Vitruvian^" + study_id;
  a.patient_id = study_id.substr(0, 64);
  a.patient_sex = "O";
  a.study_date = "20240101";
  a.study_time = "090000";
  const std::string digits = a.study_uid.substr(a.study_uid.rfind('.') + 1);
  a.study_id = digits.substr(0, 8);
  a.accession_number = "V" + digits.substr(0, 15);
  a.study_description = identity.description;
  return a;
}

std::vector<fs::path> write_dicom_study(const fs::path& study_folder, const std::string& study_id,
                                        const std::vector<std::pair<std::string, const Volume*>>& series,
                                        const DicomStudyIdentity& identity) {
  const DicomStudyAttributes study = dicom_study_attributes(identity, study_id);
  const std::string seed = std::to_string(identity.seed);
  std::vector<fs::path> folders;
  fs::create_directories(study_folder);
  int number = 1;
  for (const auto& [name, volume] : series) {
    DicomSeriesAttributes attributes;
    attributes.series_uid = uid_from(identity.uid_root, {"series", seed, study_id, name});
    attributes.frame_of_reference_uid = uid_from(identity.uid_root, {"frame-of-reference", seed, study_id});
    attributes.description = name;
    attributes.number = number++;
    attributes.uid_root = identity.uid_root;
    attributes.body_part = identity.body_part;
    folders.push_back(study_folder / name);
    write_dicom_series(folders.back(), *volume, study, attributes);
  }
  return folders;
}

}  // namespace vitruvian::data
