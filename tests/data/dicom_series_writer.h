// DICOM slices written one by one with DCMTK for tests that need what a production writer never
// writes: shuffled file names, spoilt header fields, compression, truncated or fake pixel data.
// Ordinary series are written with data/dicom_writer.h. Used by dicom_io_test and write_test_dicom.
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>

// clang-format off
#include <dcmtk/config/osconfig.h>  // DCMTK wants its configuration before any of its headers
// clang-format on
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcrlerp.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace vitruvian::dicom_writer {

using Vec3 = std::array<double, 3>;

inline Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

/// One file to write. Everything a bad case may spoil is here.
struct Slice {
  std::string file;  ///< name inside the folder
  Vec3 position{};
  std::array<double, 6> orientation{};
  Uint16 rows = 0, columns = 0, bits_allocated = 16, pixel_representation = 1, samples_per_pixel = 1;
  std::vector<Uint16> pixels;  ///< 16-bit words (fewer than rows × columns: truncated)
  int frames = 0;              ///< NumberOfFrames written when > 0
  E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  bool fake_jpeg2000 = false;  ///< encapsulated garbage declared as JPEG 2000
};

struct Series {
  std::string study_uid = "1.2.826.0.1.3680043.2.1125.1.1";
  std::string series_uid, number, description;
  std::array<double, 2> pixel_spacing{0.7, 0.9};  ///< DICOM order: row spacing (y), column spacing (x)
  double gap = 2.5, slope = 1.0, intercept = 0.0;
  bool write_rescale = true;
  Vec3 row{1, 0, 0}, column{0, 1, 0}, origin{-120.5, 33.25, 40.0};
  std::vector<Slice> slices;  ///< in position order
  at::Tensor stored;          ///< [z, y, x] int32 stored values, position order
};

/// `n` slices of rows × columns random non-zero values, written under shuffled file names.
inline Series make_series(const std::string& number, int n, Uint16 rows, Uint16 columns, unsigned seed,
                          bool is_signed = true, Vec3 row = {1, 0, 0}, Vec3 column = {0, 1, 0}) {
  Series s;
  s.series_uid = "1.2.826.0.1.3680043.2.1125.2." + number;
  s.number = number;
  s.description = "series " + number;
  s.row = row;
  s.column = column;
  const Vec3 normal = cross(row, column);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> value(is_signed ? -1000 : 1, is_signed ? 3000 : 65535);
  std::vector<int> names(static_cast<std::size_t>(n));
  std::iota(names.begin(), names.end(), 0);
  std::shuffle(names.begin(), names.end(), rng);
  s.stored = at::empty({n, rows, columns}, at::kInt);
  auto* stored = s.stored.data_ptr<std::int32_t>();
  for (int k = 0; k < n; ++k) {
    Slice slice;
    slice.file = fmt::format("s{}_img{:03d}.dcm", number, names[static_cast<std::size_t>(k)]);
    for (int r = 0; r < 3; ++r) slice.position[static_cast<std::size_t>(r)] = s.origin[r] + k * s.gap * normal[r];
    slice.orientation = {row[0], row[1], row[2], column[0], column[1], column[2]};
    slice.rows = rows;
    slice.columns = columns;
    slice.pixel_representation = is_signed ? 1 : 0;
    for (int i = 0; i < rows * columns; ++i) {
      int v = 0;
      while (v == 0) v = value(rng);
      slice.pixels.push_back(static_cast<Uint16>(v));  // two's complement for negative values
      *stored++ = v;
    }
    s.slices.push_back(std::move(slice));
  }
  return s;
}

/// Puts slice k at origin + k × gap × normal (after changing the gap).
inline void place(Series& s) {
  const Vec3 normal = cross(s.row, s.column);
  for (std::size_t k = 0; k < s.slices.size(); ++k)
    for (std::size_t r = 0; r < 3; ++r)
      s.slices[k].position[r] = s.origin[r] + static_cast<double>(k) * s.gap * normal[r];
}

/// Throws std::runtime_error naming `what` when a DCMTK call failed.
inline void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("writing a DICOM test file: " + what + " failed");
}

inline void check(const OFCondition& condition, const std::string& what) {
  if (condition.bad()) throw std::runtime_error("writing a DICOM test file: " + what + ": " + condition.text());
}

inline void put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
  check(item.putAndInsertString(tag, value.c_str()), DcmTag(tag).getTagName());
}

inline void put(DcmItem& item, const DcmTagKey& tag, Uint16 value) {
  check(item.putAndInsertUint16(tag, value), DcmTag(tag).getTagName());
}

inline std::string numbers(const double* values, std::size_t n) {
  std::string text;
  for (std::size_t i = 0; i < n; ++i) text += fmt::format("{}{:.10g}", i ? "\\" : "", values[i]);
  return text;
}

inline void encoders_registered() {
  static const bool registered = [] {
    DJEncoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
    return true;
  }();
  (void)registered;
}

/// Writes one slice of `series` to `path`; throws std::runtime_error when DCMTK refuses.
inline void write_slice(const std::filesystem::path& path, const Series& series, const Slice& slice) {
  DcmFileFormat file;
  DcmDataset& d = *file.getDataset();
  char uid[100];
  put(d, DCM_SOPClassUID, UID_CTImageStorage);
  put(d, DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  put(d, DCM_StudyInstanceUID, series.study_uid);
  put(d, DCM_SeriesInstanceUID, series.series_uid);
  put(d, DCM_Modality, "CT");
  put(d, DCM_SeriesNumber, series.number);
  put(d, DCM_SeriesDescription, series.description);
  put(d, DCM_PatientID, "PAT-0042");
  put(d, DCM_StudyDate, "20240131");
  put(d, DCM_ImagePositionPatient, numbers(slice.position.data(), 3));
  put(d, DCM_ImageOrientationPatient, numbers(slice.orientation.data(), 6));
  put(d, DCM_PixelSpacing, numbers(series.pixel_spacing.data(), 2));
  put(d, DCM_SliceThickness, fmt::format("{:.10g}", series.gap));
  if (series.write_rescale) {
    put(d, DCM_RescaleSlope, fmt::format("{:.10g}", series.slope));
    put(d, DCM_RescaleIntercept, fmt::format("{:.10g}", series.intercept));
  }
  if (slice.frames > 0) put(d, DCM_NumberOfFrames, std::to_string(slice.frames));
  put(d, DCM_PhotometricInterpretation, slice.samples_per_pixel == 1 ? "MONOCHROME2" : "RGB");
  put(d, DCM_Rows, slice.rows);
  put(d, DCM_Columns, slice.columns);
  put(d, DCM_SamplesPerPixel, slice.samples_per_pixel);
  if (slice.samples_per_pixel > 1) put(d, DCM_PlanarConfiguration, Uint16{0});
  put(d, DCM_BitsAllocated, slice.bits_allocated);
  put(d, DCM_BitsStored, slice.bits_allocated);
  put(d, DCM_HighBit, static_cast<Uint16>(slice.bits_allocated - 1));
  put(d, DCM_PixelRepresentation, slice.pixel_representation);
  E_TransferSyntax xfer = slice.xfer;
  if (slice.fake_jpeg2000) {
    auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
    sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // empty offset table
    auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
    const std::vector<Uint8> garbage(64, 0x5a);
    check(fragment->putUint8Array(garbage.data(), garbage.size()), "JPEG 2000 fragment");
    sequence->insert(fragment);
    auto* pixel_data = new DcmPixelData(DCM_PixelData);
    pixel_data->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, sequence);
    check(d.insert(pixel_data, true), "PixelData (JPEG 2000)");
    xfer = EXS_JPEG2000LosslessOnly;
  } else if (slice.bits_allocated == 8) {
    std::vector<Uint8> bytes(slice.pixels.begin(), slice.pixels.end());
    check(d.putAndInsertUint8Array(DCM_PixelData, bytes.data(), bytes.size()), "PixelData (8 bits)");
  } else {
    check(d.putAndInsertUint16Array(DCM_PixelData, slice.pixels.data(), slice.pixels.size()), "PixelData (16 bits)");
  }
  if (xfer == EXS_JPEGProcess14SV1) {
    encoders_registered();
    const DJ_RPLossless lossless;
    check(d.chooseRepresentation(xfer, &lossless), "JPEG lossless encoding");
  } else if (xfer == EXS_RLELossless) {
    encoders_registered();
    const DcmRLERepresentationParameter rle;
    check(d.chooseRepresentation(xfer, &rle), "RLE encoding");
  }
  check(d.canWriteXfer(xfer), std::string("writing transfer syntax ") + DcmXfer(xfer).getXferName());
  check(file.saveFile(path.c_str(), xfer), "saving " + path.string());
}

/// Writes every slice of `series` into `folder` (created if needed).
inline void write_series(const std::filesystem::path& folder, const Series& series) {
  std::filesystem::create_directories(folder);
  for (const Slice& slice : series.slices) write_slice(folder / slice.file, series, slice);
}

/// Voxels the importer should produce: slope × stored + intercept, computed as it does.
inline at::Tensor rescaled(const Series& s, at::ScalarType dtype) {
  return (s.stored.to(at::kDouble) * s.slope + s.intercept).to(dtype);
}

}  // namespace vitruvian::dicom_writer
