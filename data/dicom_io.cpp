// DICOM series import through DCMTK: every file's header first (pixel data left on disk), the
// series checks on headers alone, then one decode per slice straight into the output tensor.
#include "data/dicom_io.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcstack.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "core/errors.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

/// Orientation cosines of two slices may differ by this much (DICOM writes them as text).
constexpr double kOrientationTolerance = 1e-3;
/// Slice positions closer than this along the normal are the same position (mm).
constexpr double kDuplicateTolerance = 1e-3;
constexpr double kPi = 3.14159265358979323846;

/// Why a series is not imported; caught per series and turned into a DicomRejection.
struct Rejected {
  std::string reason;
};

/// Everything the checks need from one file, read without loading its pixel data.
struct SliceHeader {
  fs::path path;
  std::string problem;  ///< non-empty: this file makes its series unusable, for this reason
  std::string study_uid, series_uid, modality, description, number, patient_id, study_date;
  std::string sop_instance_uid, sop_class_uid, frame_of_reference_uid;
  DicomStudyAttributes study;
  std::array<double, 3> position{};
  std::array<double, 6> orientation{};
  std::array<double, 2> pixel_spacing{};  ///< DICOM order: between rows (y), between columns (x)
  double slice_thickness = 0.0, spacing_between_slices = 0.0;
  double slope = 1.0, intercept = 0.0;
  Uint16 rows = 0, columns = 0, bits_allocated = 0, bits_stored = 0, high_bit = 0;
  Uint16 pixel_representation = 0, samples_per_pixel = 1;
  Sint32 frames = 1;
  E_TransferSyntax transfer_syntax = EXS_Unknown;
  std::string transfer_syntax_uid;
  bool encapsulated = false;
  Uint32 pixel_bytes = 0;  ///< length of native PixelData
  double along_normal = 0.0;  ///< position projected on the series' slice normal
  Sint32 temporal_position = 0;         ///< TemporalPositionIdentifier; 0 when absent
  std::optional<double> acquisition_s;  ///< AcquisitionTime, seconds after midnight
  std::optional<Sint32> acquisition_number;  ///< AcquisitionNumber
  /// What the repeats of one slice position in a time series share (kRepeatAttributes' values).
  std::array<std::string, 6> acquisition_kind;
};

/// The attributes in which the frames of a time series cannot differ: repeats of a slice position
/// that differ in one are several echoes, b-values, inversions or kinds of image, not frames.
const std::array<std::pair<const char*, DcmTagKey>, 6> kRepeatAttributes{{
    {"EchoTime", DCM_EchoTime},
    {"EchoNumbers", DCM_EchoNumbers},
    {"InversionTime", DCM_InversionTime},
    {"DiffusionBValue", DCM_DiffusionBValue},
    {"SequenceName", DCM_SequenceName},
    {"ImageType", DCM_ImageType},
}};

void register_decoders() {
  static const bool registered = [] {
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
    return true;
  }();
  (void)registered;
}

std::string file_name(const fs::path& path) { return path.filename().string(); }

bool has_dicom_preamble(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[132];
  if (!in.read(head, sizeof head)) return false;
  return std::memcmp(head + 128, "DICM", 4) == 0;
}

std::string trimmed(const char* text) {
  std::string s = text ? text : "";
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

std::string get_string(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).good()) return trimmed(value.c_str());
  return {};
}

/// The first `n` values of a multi-valued numeric element; false when absent or shorter.
template <std::size_t N>
bool get_doubles(DcmItem& item, const DcmTagKey& tag, std::array<double, N>& out) {
  DcmElement* element = nullptr;
  if (item.findAndGetElement(tag, element).bad() || element == nullptr || element->getVM() < N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    Float64 value = 0.0;
    if (element->getFloat64(value, static_cast<unsigned long>(i)).bad() || !std::isfinite(value)) return false;
    out[i] = value;
  }
  return true;
}

std::optional<double> get_double(DcmItem& item, const DcmTagKey& tag) {
  Float64 value = 0.0;
  if (item.findAndGetFloat64(tag, value).good() && std::isfinite(value)) return value;
  return std::nullopt;
}

/// A TM value ("HHMMSS", "HHMMSS.FFFFFF", or shorter) as seconds after midnight.
std::optional<double> time_of_day(const std::string& tm) {
  const std::string digits = tm.substr(0, tm.find('.'));
  if (digits.size() < 2 || digits.size() > 6 || digits.size() % 2 != 0 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  double seconds = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const double unit = i == 0 ? 3600 : i == 1 ? 60 : 1;
    if (2 * i < digits.size()) seconds += unit * std::stoi(digits.substr(2 * i, 2));
  }
  if (tm.find('.') != std::string::npos && digits.size() == 6) {
    const std::string fraction = tm.substr(tm.find('.') + 1);
    if (!fraction.empty() &&
        std::all_of(fraction.begin(), fraction.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      seconds += std::stod("0." + fraction);
    }
  }
  return seconds;
}

std::string xfer_description(E_TransferSyntax xfer, const std::string& uid) {
  if (xfer == EXS_Unknown) return fmt::format("{} (unknown to DCMTK)", uid.empty() ? "?" : uid);
  const DcmXfer known(xfer);
  return fmt::format("{} ({})", known.getXferID(), known.getXferName());
}

/// The first element of `item` (nested ones included) that declares more bytes than the whole
/// file holds, as "(gggg,eeee) declares N bytes"; "" when none does. DCMTK allocates a value's
/// declared length when it is first read, so a damaged length must be caught before.
std::string element_beyond_file(DcmItem& item, std::uintmax_t file_bytes) {
  DcmStack stack;
  while (item.nextObject(stack, OFTrue).good()) {
    DcmObject* object = stack.top();
    // The length as read (getLength() would load the value to compute it).
    const Uint32 declared = object->getLengthField();
    if (object->isLeaf() && declared != DCM_UndefinedLength && declared > file_bytes) {
      const DcmTagKey tag = object->getTag();
      return fmt::format("({:04x},{:04x}) declares {} bytes", tag.getGroup(), tag.getElement(), declared);
    }
  }
  return {};
}

/// Reads one file's header. Returns nothing for files that are not DICOM (skipped silently)
/// and for DICOMDIR indexes; files that are DICOM but not usable at all go to `rejected`.
std::optional<SliceHeader> read_header(const fs::path& path, std::vector<DicomRejection>& rejected) {
  if (!has_dicom_preamble(path)) return std::nullopt;
  DcmFileFormat file;
  const OFCondition status = file.loadFile(OFFilename(path.c_str()));
  DcmDataset& data = *file.getDataset();
  std::error_code size_error;
  const std::uintmax_t file_bytes = fs::file_size(path, size_error);
  // A deflated dataset may hold more than the file's bytes; DCMTK inflates it while loading.
  const bool deflated = data.getOriginalXfer() == EXS_DeflatedLittleEndianExplicit;
  for (DcmItem* part : {static_cast<DcmItem*>(file.getMetaInfo()), static_cast<DcmItem*>(&data)}) {
    if (size_error || deflated) break;
    const std::string oversized = element_beyond_file(*part, file_bytes);
    if (!oversized.empty()) {
      rejected.push_back({path, fmt::format("element {}, more than the whole file ({} bytes); expected a complete, "
                                            "well-formed DICOM file", oversized, file_bytes)});
      return std::nullopt;
    }
  }
  SliceHeader h;
  h.path = path;
  h.series_uid = get_string(data, DCM_SeriesInstanceUID);
  if (status.bad()) {
    const std::string reason = fmt::format("cannot be parsed as DICOM ({}); expected a complete, well-formed "
                                           "DICOM file", status.text());
    if (h.series_uid.empty()) {
      rejected.push_back({path, reason});
      return std::nullopt;
    }
    h.problem = fmt::format("{} {}", file_name(path), reason);  // damaged member of a known series
    return h;
  }
  const std::string media_class = get_string(*file.getMetaInfo(), DCM_MediaStorageSOPClassUID);
  if (media_class == UID_MediaStorageDirectoryStorage) return std::nullopt;  // DICOMDIR: an index
  DcmElement* pixel_data = nullptr;
  if (data.findAndGetElement(DCM_PixelData, pixel_data).bad() || pixel_data == nullptr) {
    const std::string sop_class = get_string(data, DCM_SOPClassUID);
    rejected.push_back({path, fmt::format("holds no PixelData (SOP class {}); expected an image",
                                          sop_class.empty() ? "unknown" : dcmFindNameOfUID(sop_class.c_str(),
                                                                                            sop_class.c_str()))});
    return std::nullopt;
  }
  if (h.series_uid.empty()) {
    rejected.push_back({path, "has no SeriesInstanceUID; expected every image to name its series"});
    return std::nullopt;
  }
  h.study_uid = get_string(data, DCM_StudyInstanceUID);
  h.modality = get_string(data, DCM_Modality);
  h.description = get_string(data, DCM_SeriesDescription);
  h.number = get_string(data, DCM_SeriesNumber);
  h.patient_id = get_string(data, DCM_PatientID);
  h.study_date = get_string(data, DCM_StudyDate);
  h.sop_instance_uid = get_string(data, DCM_SOPInstanceUID);
  h.sop_class_uid = get_string(data, DCM_SOPClassUID);
  h.frame_of_reference_uid = get_string(data, DCM_FrameOfReferenceUID);
  h.study = {h.study_uid,
             get_string(data, DCM_PatientName),      get_string(data, DCM_PatientID),
             get_string(data, DCM_PatientBirthDate), get_string(data, DCM_PatientSex),
             h.study_date,                           get_string(data, DCM_StudyTime),
             get_string(data, DCM_StudyID),          get_string(data, DCM_AccessionNumber),
             get_string(data, DCM_ReferringPhysicianName), get_string(data, DCM_StudyDescription),
             get_string(data, DCM_SpecificCharacterSet)};

  h.transfer_syntax = data.getOriginalXfer();
  h.transfer_syntax_uid = get_string(*file.getMetaInfo(), DCM_TransferSyntaxUID);
  if (!h.transfer_syntax_uid.empty()) {
    const DcmXfer declared(h.transfer_syntax_uid.c_str());
    if (declared.getXfer() == EXS_Unknown) h.transfer_syntax = EXS_Unknown;
  }
  h.encapsulated = h.transfer_syntax != EXS_Unknown && DcmXfer(h.transfer_syntax).isEncapsulated();
  if (!h.encapsulated) h.pixel_bytes = pixel_data->getLength();

  auto require = [&](const DcmTagKey& tag, const char* name, Uint16& out) {
    if (data.findAndGetUint16(tag, out).bad() && h.problem.empty()) {
      h.problem = fmt::format("{} has no {}; expected it in every image", file_name(path), name);
    }
  };
  require(DCM_Rows, "Rows", h.rows);
  require(DCM_Columns, "Columns", h.columns);
  require(DCM_BitsAllocated, "BitsAllocated", h.bits_allocated);
  if (data.findAndGetUint16(DCM_BitsStored, h.bits_stored).bad()) h.bits_stored = h.bits_allocated;
  if (data.findAndGetUint16(DCM_HighBit, h.high_bit).bad()) h.high_bit = static_cast<Uint16>(h.bits_stored - 1);
  if (data.findAndGetUint16(DCM_PixelRepresentation, h.pixel_representation).bad()) h.pixel_representation = 0;
  if (data.findAndGetUint16(DCM_SamplesPerPixel, h.samples_per_pixel).bad()) h.samples_per_pixel = 1;
  Sint32 frames = 1;
  if (data.findAndGetSint32(DCM_NumberOfFrames, frames).good()) h.frames = frames;

  auto note = [&](bool ok, const std::string& what) {
    if (!ok && h.problem.empty()) h.problem = fmt::format("{} {}", file_name(path), what);
  };
  note(get_doubles(data, DCM_ImagePositionPatient, h.position),
       "has no valid ImagePositionPatient; expected 3 numbers (mm) placing the slice");
  note(get_doubles(data, DCM_ImageOrientationPatient, h.orientation),
       "has no valid ImageOrientationPatient; expected 6 direction cosines");
  note(get_doubles(data, DCM_PixelSpacing, h.pixel_spacing) && h.pixel_spacing[0] > 0 && h.pixel_spacing[1] > 0,
       "has no valid PixelSpacing; expected 2 positive numbers (mm)");
  h.slice_thickness = get_double(data, DCM_SliceThickness).value_or(0.0);
  h.spacing_between_slices = get_double(data, DCM_SpacingBetweenSlices).value_or(0.0);
  if (data.findAndGetSint32(DCM_TemporalPositionIdentifier, h.temporal_position).bad()) h.temporal_position = 0;
  h.acquisition_s = time_of_day(get_string(data, DCM_AcquisitionTime));
  if (Sint32 number = 0; data.findAndGetSint32(DCM_AcquisitionNumber, number).good()) h.acquisition_number = number;
  for (std::size_t i = 0; i < kRepeatAttributes.size(); ++i) {
    h.acquisition_kind[i] = get_string(data, kRepeatAttributes[i].second);
  }
  const std::string& image_type = h.acquisition_kind.back();  // ImageType, the last of kRepeatAttributes
  note(("\\" + image_type + "\\").find("\\MOSAIC\\") == std::string::npos,
       fmt::format("is a mosaic (ImageType {}): several slices tiled in one image; expected one slice per image "
                   "(unpack the mosaic first, e.g. with dcm2niix)",
                   image_type));
  h.slope = get_double(data, DCM_RescaleSlope).value_or(1.0);
  h.intercept = get_double(data, DCM_RescaleIntercept).value_or(0.0);
  note(h.slope != 0.0, "has RescaleSlope 0; expected a non-zero slope");
  return h;
}

std::array<double, 3> cross(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
std::array<double, 3> minus(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return {a[0] - b[0], a[1] - b[1], a[2] - b[2]};
}
double norm(const std::array<double, 3>& a) { return std::sqrt(dot(a, a)); }

/// Rejects a series whose files disagree on a header field (`get` reads it).
template <typename Get>
void check_same(const std::vector<SliceHeader>& slices, const char* name, Get get, const char* expected) {
  for (const SliceHeader& s : slices) {
    if (get(s) != get(slices.front())) {
      throw Rejected{fmt::format("{} changes within the series ({} in {}, {} in {}); expected {}", name,
                                 get(slices.front()), file_name(slices.front().path), get(s), file_name(s.path),
                                 expected)};
    }
  }
}

/// The header-only checks: everything that can be refused before any pixel is read.
void check_headers(const std::vector<SliceHeader>& slices, const DicomReadOptions& options) {
  for (const SliceHeader& s : slices) {
    if (!s.problem.empty()) throw Rejected{s.problem};
  }
  const SliceHeader& first = slices.front();
  for (const SliceHeader& s : slices) {
    for (int i = 0; i < 6; ++i) {
      if (std::abs(s.orientation[i] - first.orientation[i]) > kOrientationTolerance) {
        throw Rejected{fmt::format("orientation changes within the series ({} in {}, {} in {}: a localizer or "
                                   "another stack mixed in?); expected one ImageOrientationPatient per series",
                                   fmt::join(first.orientation, "\\"), file_name(first.path),
                                   fmt::join(s.orientation, "\\"), file_name(s.path))};
      }
    }
  }
  for (const SliceHeader& s : slices) {
    if (s.frames > 1) {
      throw Rejected{fmt::format("{} is a multi-frame file (NumberOfFrames {}); expected one frame per file "
                                 "(multi-frame import is not supported yet)", file_name(s.path), s.frames)};
    }
    if (s.samples_per_pixel != 1) {
      throw Rejected{fmt::format("{} has SamplesPerPixel {} (colour); expected 1 (greyscale)", file_name(s.path),
                                 s.samples_per_pixel)};
    }
  }
  check_same(slices, "Rows", [](const SliceHeader& s) { return s.rows; }, "one image size per series");
  check_same(slices, "Columns", [](const SliceHeader& s) { return s.columns; }, "one image size per series");
  check_same(slices, "BitsAllocated", [](const SliceHeader& s) { return s.bits_allocated; },
             "one pixel format per series");
  check_same(slices, "PixelRepresentation", [](const SliceHeader& s) { return s.pixel_representation; },
             "one pixel format per series");
  check_same(slices, "PixelSpacing", [](const SliceHeader& s) { return fmt::format("{}", fmt::join(s.pixel_spacing, "\\")); },
             "one pixel size per series");
  if (first.rows == 0 || first.columns == 0) {
    throw Rejected{fmt::format("{} has an empty image ({} rows, {} columns); expected at least one pixel",
                               file_name(first.path), first.rows, first.columns)};
  }
  if (first.bits_allocated != 8 && first.bits_allocated != 16) {
    throw Rejected{fmt::format("BitsAllocated {}; expected 8 or 16", first.bits_allocated)};
  }
  for (const SliceHeader& s : slices) {
    if (s.bits_stored < 1 || s.bits_stored > s.bits_allocated || s.high_bit + 1 < s.bits_stored ||
        s.high_bit >= s.bits_allocated) {
      throw Rejected{fmt::format("{} has BitsStored {} and HighBit {} with BitsAllocated {}; expected "
                                 "BitsStored <= HighBit + 1 <= BitsAllocated", file_name(s.path), s.bits_stored,
                                 s.high_bit, s.bits_allocated)};
    }
  }
  const std::int64_t voxels = std::int64_t{first.rows} * first.columns * static_cast<std::int64_t>(slices.size());
  if (voxels > options.max_voxels) {
    throw Rejected{fmt::format("too large: {} slices of {}x{} = {} voxels; expected at most max_voxels = {}",
                               slices.size(), first.columns, first.rows, voxels, options.max_voxels)};
  }
  for (const SliceHeader& s : slices) {
    if (s.transfer_syntax == EXS_Unknown ||
        (s.encapsulated && !DcmCodecList::canChangeCoding(s.transfer_syntax, EXS_LittleEndianExplicit))) {
      throw Rejected{fmt::format("{} uses transfer syntax {}, which this build cannot decode; expected "
                                 "uncompressed, deflated, JPEG, JPEG-LS or RLE", file_name(s.path),
                                 xfer_description(s.transfer_syntax, s.transfer_syntax_uid))};
    }
    const std::uint64_t expected = std::uint64_t{s.rows} * s.columns * (s.bits_allocated / 8);
    if (!s.encapsulated && s.pixel_bytes < expected) {
      throw Rejected{fmt::format("{} has truncated pixel data: {} bytes; expected Rows x Columns x BitsAllocated/8 "
                                 "= {}x{}x{} = {}", file_name(s.path), s.pixel_bytes, s.rows, s.columns,
                                 s.bits_allocated / 8, expected)};
    }
  }
}

/// The row and column directions of ImageOrientationPatient, made exactly orthonormal.
struct SliceAxes {
  std::array<double, 3> row, column, normal;
};
SliceAxes slice_axes(const SliceHeader& first) {
  std::array<double, 3> row{first.orientation[0], first.orientation[1], first.orientation[2]};
  std::array<double, 3> column{first.orientation[3], first.orientation[4], first.orientation[5]};
  const double row_norm = norm(row), column_norm = norm(column);
  if (std::abs(row_norm - 1.0) > 1e-2 || std::abs(column_norm - 1.0) > 1e-2 ||
      std::abs(dot(row, column)) > 1e-2) {
    throw Rejected{fmt::format("ImageOrientationPatient {} is not two orthogonal unit vectors; expected row and "
                               "column direction cosines", fmt::join(first.orientation, "\\"))};
  }
  for (double& v : row) v /= row_norm;
  const double along_row = dot(column, row);  // make the column direction exactly orthogonal
  for (int i = 0; i < 3; ++i) column[i] -= along_row * row[i];
  const double c = norm(column);
  for (double& v : column) v /= c;
  return {row, column, cross(row, column)};
}

/// Two images at one slice position where one was expected.
Rejected duplicate_position(const SliceHeader& a, const SliceHeader& b) {
  return Rejected{
      fmt::format("duplicate slice position ({}) in {} and {}; expected one slice per position "
                  "(several echoes, phases or stacks in one series?)",
                  fmt::join(b.position, ", "), file_name(a.path), file_name(b.path))};
}

/// Sets every slice's position along the normal and sorts them by it (stable).
void sort_along_normal(std::vector<SliceHeader>& slices, const std::array<double, 3>& normal) {
  for (SliceHeader& s : slices) s.along_normal = dot(s.position, normal);
  std::stable_sort(slices.begin(), slices.end(),
                   [](const SliceHeader& a, const SliceHeader& b) { return a.along_normal < b.along_normal; });
}

/// Sorts `slices` along the slice normal, checks the stack and returns its geometry.
Geometry stack_geometry(std::vector<SliceHeader>& slices, const DicomReadOptions& options) {
  const SliceHeader& first = slices.front();
  const auto [row, column, normal] = slice_axes(first);
  sort_along_normal(slices, normal);

  Geometry g;
  g.spacing = {slices.front().pixel_spacing[1], slices.front().pixel_spacing[0], 1.0};
  g.origin = slices.front().position;
  for (int r = 0; r < 3; ++r) {
    g.direction[r * 3 + 0] = row[r];
    g.direction[r * 3 + 1] = column[r];
    g.direction[r * 3 + 2] = normal[r];
  }
  const std::size_t n = slices.size();
  if (n == 1) {
    const SliceHeader& s = slices.front();
    g.spacing[2] = s.spacing_between_slices > 0 ? s.spacing_between_slices
                   : s.slice_thickness > 0      ? s.slice_thickness
                                                : 1.0;
    return g;
  }
  std::vector<double> gaps(n - 1);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    gaps[i] = slices[i + 1].along_normal - slices[i].along_normal;
    if (gaps[i] < kDuplicateTolerance) throw duplicate_position(slices[i], slices[i + 1]);
  }
  std::vector<double> sorted_gaps = gaps;
  std::nth_element(sorted_gaps.begin(), sorted_gaps.begin() + sorted_gaps.size() / 2, sorted_gaps.end());
  const double median = sorted_gaps[sorted_gaps.size() / 2];
  for (std::size_t i = 0; i < gaps.size(); ++i) {
    if (std::abs(gaps[i] - median) <= options.spacing_tolerance * median) continue;
    const double ratio = gaps[i] / median;
    if (ratio >= 1.5) {
      throw Rejected{fmt::format("missing slice(s): a gap of {:.4g} mm between {} and {} is {:.2f} times the "
                                 "median gap of {:.4g} mm (about {} slice(s) absent); expected uniform spacing",
                                 gaps[i], file_name(slices[i].path), file_name(slices[i + 1].path), ratio, median,
                                 std::lround(ratio) - 1)};
    }
    throw Rejected{fmt::format("non-uniform slice spacing: a gap of {:.4g} mm between {} and {} differs from the "
                               "median gap of {:.4g} mm by more than {}%; expected uniform spacing", gaps[i],
                               file_name(slices[i].path), file_name(slices[i + 1].path), median,
                               options.spacing_tolerance * 100)};
  }
  for (std::size_t i = 1; i < n; ++i) {
    const auto step = minus(slices[i].position, slices.front().position);
    const double along = dot(step, normal);
    std::array<double, 3> sideways = step;
    for (int r = 0; r < 3; ++r) sideways[r] -= along * normal[r];
    const double drift = norm(sideways);
    if (drift > options.spacing_tolerance * std::abs(along) + kDuplicateTolerance) {
      throw Rejected{fmt::format("gantry tilt (or shifted slices): {} lies {:.4g} mm off the slice normal through "
                                 "{} over {:.4g} mm along it ({:.2f} degrees); expected slice positions along the "
                                 "normal of ImageOrientationPatient", file_name(slices[i].path), drift,
                                 file_name(slices.front().path), along,
                                 std::atan2(drift, std::abs(along)) * 180.0 / kPi)};
    }
  }
  g.spacing[2] = (slices.back().along_normal - slices.front().along_normal) / static_cast<double>(n - 1);
  return g;
}

/// Decodes one slice's stored values (after BitsStored/HighBit masking and sign extension).
void read_stored_values(const SliceHeader& s, std::vector<std::int32_t>& out) {
  DcmFileFormat file;
  OFCondition status = file.loadFile(OFFilename(s.path.c_str()));
  if (status.bad()) {
    throw Rejected{fmt::format("{} cannot be read ({}); expected a readable DICOM file", file_name(s.path),
                               status.text())};
  }
  DcmDataset& data = *file.getDataset();
  if (s.encapsulated) {
    status = data.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
    if (status.bad() || !data.canWriteXfer(EXS_LittleEndianExplicit)) {
      throw Rejected{fmt::format("{}: decoding transfer syntax {} failed ({}); expected valid compressed data",
                                 file_name(s.path), xfer_description(s.transfer_syntax, s.transfer_syntax_uid),
                                 status.text())};
    }
  }
  const std::size_t count = std::size_t{s.rows} * s.columns;
  out.resize(count);
  const unsigned shift = s.high_bit + 1u - s.bits_stored;
  const std::uint32_t mask = (std::uint32_t{1} << s.bits_stored) - 1u;
  const std::uint32_t sign = std::uint32_t{1} << (s.bits_stored - 1u);
  const bool is_signed = s.pixel_representation == 1;
  auto stored = [&](std::uint32_t raw) -> std::int32_t {
    const std::uint32_t v = (raw >> shift) & mask;
    if (is_signed && (v & sign)) return static_cast<std::int32_t>(v) - static_cast<std::int32_t>(mask) - 1;
    return static_cast<std::int32_t>(v);
  };
  unsigned long available = 0;
  auto truncated = [&] {
    return Rejected{fmt::format("{} has truncated pixel data: {} values after decoding; expected Rows x Columns "
                                "= {}", file_name(s.path), available, count)};
  };
  if (s.bits_allocated == 16) {
    const Uint16* values = nullptr;
    if (data.findAndGetUint16Array(DCM_PixelData, values, &available).bad() || values == nullptr) available = 0;
    if (available < count) throw truncated();
    for (std::size_t i = 0; i < count; ++i) out[i] = stored(values[i]);
  } else {
    const Uint8* values = nullptr;
    if (data.findAndGetUint8Array(DCM_PixelData, values, &available).bad() || values == nullptr) available = 0;
    if (available < count) throw truncated();
    for (std::size_t i = 0; i < count; ++i) out[i] = stored(values[i]);
  }
}

/// Reads the voxels of a checked, sorted stack.
Volume read_voxels(const std::vector<SliceHeader>& slices, Geometry geometry) {
  const SliceHeader& first = slices.front();
  const bool rescaled = std::any_of(slices.begin(), slices.end(),
                                    [](const SliceHeader& s) { return s.slope != 1.0 || s.intercept != 0.0; });
  Volume volume;
  volume.geometry = geometry;
  volume.modality = first.modality;
  if (rescaled) {
    volume.type = VoxelType::kFloat32;
  } else if (first.bits_allocated == 16 && first.pixel_representation == 0) {
    volume.type = VoxelType::kUInt16;
  } else {
    volume.type = VoxelType::kInt16;  // signed 16-bit, or 8-bit either way
  }
  const std::int64_t n = static_cast<std::int64_t>(slices.size());
  const std::int64_t count = std::int64_t{first.rows} * first.columns;
  volume.voxels = at::empty({n, first.rows, first.columns}, at::TensorOptions().dtype(tensor_dtype(volume.type)));
  std::vector<std::int32_t> values;
  bool fits_int16 = true;
  for (std::int64_t k = 0; k < n; ++k) {
    const SliceHeader& s = slices[static_cast<std::size_t>(k)];
    read_stored_values(s, values);
    switch (volume.type) {
      case VoxelType::kFloat32: {
        float* out = volume.voxels.data_ptr<float>() + k * count;
        for (std::int64_t i = 0; i < count; ++i) {
          const double v = s.slope * values[static_cast<std::size_t>(i)] + s.intercept;
          fits_int16 = fits_int16 && v >= -32768.0 && v <= 32767.0 && v == std::nearbyint(v);
          out[i] = static_cast<float>(v);
        }
        break;
      }
      case VoxelType::kUInt16: {
        std::copy(values.begin(), values.end(), volume.voxels.data_ptr<std::int32_t>() + k * count);
        break;
      }
      default: {
        std::int16_t* out = volume.voxels.data_ptr<std::int16_t>() + k * count;
        for (std::int64_t i = 0; i < count; ++i) out[i] = static_cast<std::int16_t>(values[static_cast<std::size_t>(i)]);
        break;
      }
    }
  }
  if (volume.type == VoxelType::kFloat32 && fits_int16) {
    volume.type = VoxelType::kInt16;
    volume.voxels = volume.voxels.to(at::kShort);
  }
  return volume;
}

/// What orders the images of one slice position in time.
enum class RepeatKey { kAcquisitionTime, kAcquisitionNumber };

std::optional<double> repeat_key(const SliceHeader& s, RepeatKey key) {
  if (key == RepeatKey::kAcquisitionTime) return s.acquisition_s;
  if (!s.acquisition_number) return std::nullopt;
  return static_cast<double>(*s.acquisition_number);
}

/// Two repeats of one position that `key` does not tell apart (one lacks it, or both share it).
std::optional<std::pair<const SliceHeader*, const SliceHeader*>> untold_pair(
    const std::vector<std::vector<SliceHeader>>& positions, RepeatKey key) {
  for (const auto& repeats : positions) {
    std::vector<const SliceHeader*> sorted;
    for (const SliceHeader& s : repeats) sorted.push_back(&s);
    // An image that lacks the key sorts first (an empty optional is the least), next to another.
    std::sort(sorted.begin(), sorted.end(),
              [&](const SliceHeader* a, const SliceHeader* b) { return repeat_key(*a, key) < repeat_key(*b, key); });
    const auto untold = std::adjacent_find(sorted.begin(), sorted.end(), [&](const SliceHeader* a, const SliceHeader* b) {
      return !repeat_key(*a, key) || repeat_key(*a, key) == repeat_key(*b, key);
    });
    if (untold != sorted.end()) return std::pair{*untold, *(untold + 1)};
  }
  return std::nullopt;
}

/// "the same AcquisitionTime (10:15:00.000)", "no AcquisitionTime (in F)" or "AcquisitionNumber 1 and 2".
std::string key_phrase(const SliceHeader& a, const SliceHeader& b, RepeatKey key) {
  const char* name = key == RepeatKey::kAcquisitionTime ? "AcquisitionTime" : "AcquisitionNumber";
  const std::optional<double> x = repeat_key(a, key), y = repeat_key(b, key);
  if (!x || !y) return fmt::format("no {} (in {})", name, file_name((!x ? a : b).path));
  const auto shown = [&](double v) {
    if (key == RepeatKey::kAcquisitionNumber) return fmt::format("{:g}", v);
    const double day = std::fmod(v, 86400.0);
    return fmt::format("{:02}:{:02}:{:06.3f}", static_cast<int>(day / 3600),
                       static_cast<int>(std::fmod(day, 3600) / 60), std::fmod(day, 60.0));
  };
  if (*x == *y) return fmt::format("the same {} ({})", name, shown(*x));
  return fmt::format("{} {} and {}", name, shown(*x), shown(*y));
}

/// AcquisitionTime where it tells every two images of each position apart, else
/// AcquisitionNumber; where neither does (echoes, phases or reconstructions of one acquisition
/// share both), one line naming two images neither tells apart.
RepeatKey repeat_order(const std::vector<std::vector<SliceHeader>>& positions) {
  if (!untold_pair(positions, RepeatKey::kAcquisitionTime)) return RepeatKey::kAcquisitionTime;
  const auto pair = untold_pair(positions, RepeatKey::kAcquisitionNumber);
  if (!pair) return RepeatKey::kAcquisitionNumber;
  const auto [a, b] = *pair;
  throw Rejected{fmt::format(
      "slice position ({}) holds {} and {} with {} and {}; expected one image per position, or a time series "
      "whose repeats differ in AcquisitionTime or AcquisitionNumber (several echoes, phases or stacks in one "
      "series?)",
      fmt::join(a->position, ", "), file_name(a->path), file_name(b->path),
      key_phrase(*a, *b, RepeatKey::kAcquisitionTime), key_phrase(*a, *b, RepeatKey::kAcquisitionNumber))};
}

/// Refuses repeats of one position that are not the same acquisition (kRepeatAttributes).
void check_same_acquisition(const std::vector<std::vector<SliceHeader>>& positions) {
  for (const auto& repeats : positions) {
    for (const SliceHeader& s : repeats) {
      for (std::size_t i = 0; i < kRepeatAttributes.size(); ++i) {
        if (s.acquisition_kind[i] == repeats.front().acquisition_kind[i]) continue;
        throw Rejected{fmt::format(
            "slice position ({}) holds {} and {} with {} '{}' and '{}'; expected a time series to repeat one "
            "acquisition (several echoes, b-values, inversions or kinds of image in one series?)",
            fmt::join(s.position, ", "), file_name(repeats.front().path), file_name(s.path), kRepeatAttributes[i].first,
            repeats.front().acquisition_kind[i], s.acquisition_kind[i])};
      }
    }
  }
}

/// A series that names no temporal positions: a volume, or (as many scanners send CT and MR
/// perfusion) a time series whose every slice position repeats, once per frame, told apart by
/// AcquisitionTime or AcquisitionNumber. Frame t is the t-th image of every position in that
/// order; its images get temporal position t + 1.
std::vector<std::vector<SliceHeader>> repeated_position_groups(std::vector<SliceHeader> slices) {
  sort_along_normal(slices, slice_axes(slices.front()).normal);
  std::vector<std::vector<SliceHeader>> positions;
  for (SliceHeader& s : slices) {
    if (positions.empty() || s.along_normal - positions.back().front().along_normal >= kDuplicateTolerance) {
      positions.emplace_back();
    }
    positions.back().push_back(std::move(s));
  }
  const auto [fewest, most] = std::minmax_element(positions.begin(), positions.end(),
                                                  [](const auto& a, const auto& b) { return a.size() < b.size(); });
  std::vector<std::vector<SliceHeader>> groups;
  if (most->size() == 1) {  // a volume
    groups.emplace_back();
    for (auto& p : positions) groups.back().push_back(std::move(p.front()));
    return groups;
  }
  const auto single = std::count_if(positions.begin(), positions.end(), [](const auto& p) { return p.size() == 1; });
  if (2 * static_cast<std::size_t>(single) > positions.size()) {  // a volume with a slice twice
    throw duplicate_position((*most)[0], (*most)[1]);
  }
  if (fewest->size() != most->size()) {
    throw Rejected{
        fmt::format("slice position ({}) holds {} images ({}) but position ({}) holds {} ({}); expected one image per "
                    "position, or in a time series the same number at every position",
                    fmt::join(most->front().position, ", "), most->size(), file_name(most->front().path),
                    fmt::join(fewest->front().position, ", "), fewest->size(), file_name(fewest->front().path))};
  }
  check_same_acquisition(positions);
  const RepeatKey order = repeat_order(positions);
  const std::size_t frames = most->size();
  groups.resize(frames);
  for (auto& p : positions) {
    std::sort(p.begin(), p.end(), [&](const SliceHeader& a, const SliceHeader& b) {
      return *repeat_key(a, order) < *repeat_key(b, order);
    });
    for (std::size_t t = 0; t < frames; ++t) {
      p[t].temporal_position = static_cast<Sint32>(t + 1);
      groups[t].push_back(std::move(p[t]));
    }
  }
  return groups;
}

/// AcquisitionTime is a time of day: a series that runs past midnight has times in the early
/// hours that follow those of the evening. Where the times span more than 12 h, those before
/// noon move to the next day.
void unwrap_midnight(std::vector<SliceHeader>& slices) {
  double earliest = std::numeric_limits<double>::infinity(), latest = -earliest;
  for (const SliceHeader& s : slices) {
    if (s.acquisition_s) earliest = std::min(earliest, *s.acquisition_s), latest = std::max(latest, *s.acquisition_s);
  }
  if (!(latest - earliest > 43200.0)) return;
  for (SliceHeader& s : slices) {
    if (s.acquisition_s && *s.acquisition_s < 43200.0) *s.acquisition_s += 86400.0;
  }
}

/// The slices by TemporalPositionIdentifier (ascending). Where fewer than two positions are
/// named, by repeats of the slice positions (repeated_position_groups). Every group must hold
/// the same number of slices.
std::vector<std::vector<SliceHeader>> temporal_groups(std::vector<SliceHeader> slices) {
  unwrap_midnight(slices);
  std::map<Sint32, std::vector<SliceHeader>> by_position;
  for (SliceHeader& s : slices) by_position[s.temporal_position].push_back(std::move(s));
  std::vector<std::vector<SliceHeader>> groups;
  for (auto& [position, group] : by_position) groups.push_back(std::move(group));
  if (groups.size() < 2) return repeated_position_groups(std::move(groups.front()));
  for (const auto& [position, group] : by_position) {
    (void)group;
    if (position < 1) {
      throw Rejected{
          "some images name a TemporalPositionIdentifier and others none (or one below 1); expected "
          "every image of a time series to name its temporal position"};
    }
  }
  for (const auto& group : groups) {
    if (group.size() != groups.front().size()) {
      throw Rejected{
          fmt::format("temporal position {} has {} images but temporal position {} has {} ({}); expected "
                      "the same slices at every temporal position",
                      group.front().temporal_position, group.size(), groups.front().front().temporal_position,
                      groups.front().size(), file_name(group.front().path))};
    }
  }
  return groups;
}

/// Sorts and checks every temporal group's stack; they must share one geometry.
Geometry temporal_geometry(std::vector<std::vector<SliceHeader>>& groups, const DicomReadOptions& options) {
  const Geometry geometry = stack_geometry(groups.front(), options);
  for (auto& group : groups) {
    if (!stack_geometry(group, options).matches(geometry, 1e-4)) {
      throw Rejected{fmt::format(
          "temporal position {} ({}) lies on another grid than temporal position {}; expected "
          "the same slice positions at every temporal position",
          group.front().temporal_position, file_name(group.front().path), groups.front().front().temporal_position)};
    }
  }
  return geometry;
}

/// The frames [t, z, y, x] of a time series, in one voxel type; frame times from AcquisitionTime
/// relative to the first frame's (none when an image lacks it).
Volume read_frames(const std::vector<std::vector<SliceHeader>>& groups, const Geometry& geometry) {
  std::vector<Volume> frames;
  for (const auto& group : groups) frames.push_back(read_voxels(group, geometry));
  const bool floats =
      std::any_of(frames.begin(), frames.end(), [](const Volume& v) { return v.type == VoxelType::kFloat32; });
  Volume volume = frames.front();
  if (floats) volume.type = VoxelType::kFloat32;
  std::vector<at::Tensor> tensors;
  for (const Volume& v : frames) tensors.push_back(v.voxels.to(tensor_dtype(volume.type)));
  volume.voxels = at::stack(tensors);
  const bool timed =
      std::all_of(groups.begin(), groups.end(), [](const auto& g) { return g.front().acquisition_s.has_value(); });
  if (timed) {
    for (const auto& group : groups)
      volume.frame_times_s.push_back(*group.front().acquisition_s - *groups.front().front().acquisition_s);
  }
  return volume;
}

}  // namespace

DicomSeriesIdentity DicomSeriesIdentity::first_temporal_position() const {
  DicomSeriesIdentity first = *this;
  const std::size_t slices = sop_instance_uids.size() / std::max<std::size_t>(temporal_positions, 1);
  first.sop_instance_uids.resize(std::min(slices, sop_instance_uids.size()));
  first.sop_class_uids.resize(std::min(slices, sop_class_uids.size()));
  first.temporal_positions = 1;
  return first;
}

namespace {

DicomSeries import_series(std::vector<SliceHeader> slices, const DicomReadOptions& options) {
  check_headers(slices, options);
  std::vector<std::vector<SliceHeader>> groups = temporal_groups(std::move(slices));
  const Geometry geometry = temporal_geometry(groups, options);
  DicomSeries series;
  const SliceHeader& first = groups.front().front();
  series.study_uid = first.study_uid;
  series.series_uid = first.series_uid;
  series.modality = first.modality;
  series.series_description = first.description;
  series.series_number = first.number;
  series.patient_id = first.patient_id;
  series.study_date = first.study_date;
  series.volume = groups.size() == 1 ? read_voxels(groups.front(), geometry) : read_frames(groups, geometry);
  try {
    series.volume.validate(file_name(first.path));
  } catch (const InputError& e) {
    throw Rejected{e.detail()};
  }
  DicomSeriesIdentity& id = series.identity;
  id.series_uid = first.series_uid;
  id.modality = first.modality;
  id.frame_of_reference_uid = first.frame_of_reference_uid;
  id.study = first.study;
  id.temporal_positions = groups.size();
  for (const auto& group : groups) {
    for (const SliceHeader& s : group) {
      series.files.push_back(s.path);
      id.sop_instance_uids.push_back(s.sop_instance_uid);
      id.sop_class_uids.push_back(s.sop_class_uid);
    }
  }
  return series;
}

long series_number_key(const std::string& number) {
  try {
    return std::stol(number);
  } catch (const std::exception&) {
    return std::numeric_limits<long>::max();
  }
}

void check_options(const DicomReadOptions& options) {
  if (!(options.spacing_tolerance >= 0.0) || !std::isfinite(options.spacing_tolerance)) {
    throw InputError("DicomReadOptions", fmt::format("spacing_tolerance {} is not a fraction >= 0",
                                                     options.spacing_tolerance));
  }
  if (options.max_voxels < 1) {
    throw InputError("DicomReadOptions", fmt::format("max_voxels {} must be at least 1", options.max_voxels));
  }
}

/// Every regular file under `folder`, recursively.
std::vector<fs::path> files_under(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    throw InputError(folder.string(), "is not a directory; expected a folder holding DICOM files");
  }
  std::vector<fs::path> files;
  try {
    for (const auto& entry : fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied)) {
      if (entry.is_regular_file(ec)) files.push_back(entry.path());
    }
  } catch (const fs::filesystem_error& e) {
    throw InputError(folder.string(), fmt::format("cannot be listed ({}); expected a readable folder", e.what()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

DicomScan read_dicom_files(const std::vector<std::filesystem::path>& files, const DicomReadOptions& options) {
  check_options(options);
  register_decoders();
  std::vector<fs::path> paths = files;
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());

  DicomScan scan;
  std::map<std::string, std::vector<SliceHeader>> by_series;  // files stay in name order
  for (const fs::path& path : paths) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      scan.rejected.push_back({path, "does not exist or is not a regular file; expected a DICOM file"});
      continue;
    }
    if (auto header = read_header(path, scan.rejected)) by_series[header->series_uid].push_back(std::move(*header));
  }
  for (auto& [uid, slices] : by_series) {
    const fs::path first_file = slices.front().path;
    const std::string description = slices.front().description;
    try {
      scan.series.push_back(import_series(std::move(slices), options));
    } catch (const Rejected& rejection) {
      scan.rejected.push_back({first_file, fmt::format("series {}{}: {}", uid,
                                                       description.empty() ? "" : " \"" + description + "\"",
                                                       rejection.reason)});
    }
  }
  std::sort(scan.series.begin(), scan.series.end(), [](const DicomSeries& a, const DicomSeries& b) {
    return std::make_tuple(a.study_uid, series_number_key(a.series_number), a.series_uid) <
           std::make_tuple(b.study_uid, series_number_key(b.series_number), b.series_uid);
  });
  return scan;
}

DicomScan read_dicom_series(const std::filesystem::path& folder, const DicomReadOptions& options) {
  check_options(options);
  return read_dicom_files(files_under(folder), options);
}

DicomListing list_dicom_studies(const std::filesystem::path& folder) {
  DicomListing listing;
  std::map<std::string, DicomStudyFiles> studies;
  std::map<std::pair<std::string, std::string>, std::int64_t> series_voxels;  // (study, series) -> voxels
  for (const fs::path& path : files_under(folder)) {
    auto header = read_header(path, listing.rejected);
    if (!header) continue;
    if (header->study_uid.empty()) {
      listing.rejected.push_back({path, header->problem.empty() ? "has no StudyInstanceUID; expected every image to name its study"
                                                                : header->problem});
      continue;
    }
    DicomStudyFiles& study = studies[header->study_uid];
    study.study_uid = header->study_uid;
    study.files.push_back(path);
    std::int64_t& voxels = series_voxels[{header->study_uid, header->series_uid}];
    voxels += static_cast<std::int64_t>(header->rows) * header->columns * std::max<Sint32>(header->frames, 1);
    study.voxels = std::max(study.voxels, voxels);
  }
  for (auto& [uid, study] : studies) listing.studies.push_back(std::move(study));
  return listing;
}

}  // namespace vitruvian::data
