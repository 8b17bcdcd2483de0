// NIfTI import/export: header checks before loading, scaling, RAS↔LPS geometry, atomic writes.
#include "data/nifti_io.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nifti2_io.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

#include "core/atomic_file.h"
#include "core/errors.h"

namespace vitruvian::data {
namespace {

struct NiftiFree {
  void operator()(nifti_image* image) const {
    if (image != nullptr) nifti_image_free(image);
  }
};
using NiftiPtr = std::unique_ptr<nifti_image, NiftiFree>;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<VoxelType> voxel_type_of(int datatype) {
  switch (datatype) {
    case DT_UINT8: return VoxelType::kUInt8;
    case DT_INT16: return VoxelType::kInt16;
    case DT_UINT16: return VoxelType::kUInt16;
    case DT_INT32: return VoxelType::kInt32;
    case DT_FLOAT32: return VoxelType::kFloat32;
    case DT_FLOAT64: return VoxelType::kFloat64;
    default: return std::nullopt;
  }
}

int datatype_of(VoxelType type) {
  switch (type) {
    case VoxelType::kUInt8: return DT_UINT8;
    case VoxelType::kInt16: return DT_INT16;
    case VoxelType::kUInt16: return DT_UINT16;
    case VoxelType::kInt32: return DT_INT32;
    case VoxelType::kFloat32: return DT_FLOAT32;
    case VoxelType::kFloat64: return DT_FLOAT64;
  }
  return DT_FLOAT32;
}

std::array<double, 16> to_array(const nifti_dmat44& m) {
  std::array<double, 16> out{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) out[r * 4 + c] = m.m[r][c];
  return out;
}

/// Tensor of the file's voxels in the in-memory dtype (uint16 widened to int32).
at::Tensor voxels_of(const nifti_image& image, VoxelType type, const std::vector<std::int64_t>& shape) {
  const auto source_options = at::TensorOptions().dtype(type == VoxelType::kUInt16 ? at::kShort : tensor_dtype(type));
  at::Tensor raw = at::from_blob(image.data, shape, source_options);
  if (type == VoxelType::kUInt16) return raw.to(at::kInt).bitwise_and(0xFFFF);  // reinterpret as unsigned
  return raw.clone();
}

bool fits(VoxelType type, double low, double high) {
  switch (type) {
    case VoxelType::kUInt8: return low >= 0 && high <= 255;
    case VoxelType::kInt16: return low >= -32768 && high <= 32767;
    case VoxelType::kUInt16: return low >= 0 && high <= 65535;
    case VoxelType::kInt32: return low >= -2147483648.0 && high <= 2147483647.0;
    default: return true;
  }
}

/// pixdim[4] as the file holds it (0: the frames' interval is unknown), which libnifti's image
/// reads as 1, as it does a NaN (nifti_read_header swaps the byte order itself).
double stored_frame_interval(const std::string& source) {
  int version = 0;
  const std::unique_ptr<void, decltype(&std::free)> header(nifti_read_header(source.c_str(), &version, 0), &std::free);
  if (!header) return 1;
  return version == 2 ? static_cast<const nifti_2_header*>(header.get())->pixdim[4]
                      : static_cast<const nifti_1_header*>(header.get())->pixdim[4];
}

/// The voxels × slope + inter, kept in their stored integer type when every value stays whole and
/// fits it, else float32. A chunk at a time: a 4D series whole in float64 would take 8 bytes a
/// voxel, twice over (the product and its rounding), and the type is rewritten in place.
void apply_scaling(Volume& volume, double slope, double inter) {
  constexpr std::int64_t kChunk = 1 << 22;
  const at::Tensor flat = volume.voxels.reshape({-1});
  const std::int64_t n = flat.numel();
  const auto scaled = [&](std::int64_t i) {
    return flat.slice(0, i, std::min(n, i + kChunk)).to(at::kDouble) * slope + inter;
  };
  bool integral = !is_floating(volume.type);
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (std::int64_t i = 0; i < n; i += kChunk) {
    const at::Tensor s = scaled(i);
    integral = integral && at::equal(s, s.round());
    const auto [l, h] = at::aminmax(s);
    low = std::min(low, l.item<double>()), high = std::max(high, h.item<double>());
  }
  const bool whole = integral && fits(volume.type, low, high);
  const at::ScalarType dtype = whole ? tensor_dtype(volume.type) : at::kFloat;
  at::Tensor out = dtype == flat.scalar_type() ? flat : at::empty({n}, flat.options().dtype(dtype));
  for (std::int64_t i = 0; i < n; i += kChunk) out.slice(0, i, std::min(n, i + kChunk)).copy_(scaled(i));
  volume.voxels = out.view(volume.voxels.sizes());
  if (!whole) volume.type = VoxelType::kFloat32;
}

/// Header, empty extension flag and voxels into one .nii / .nii.gz file, every write checked.
/// (libnifti's own writer reports no errors, and the Debian 3.0.1 one writes a NIfTI-2
/// single file without its header.)
void write_single_file(const std::filesystem::path& file, nifti_image& image, int version, const at::Tensor& data,
                       bool compressed, const std::string& target) {
  nifti_1_header header1{};
  nifti_2_header header2{};
  const void* header = nullptr;
  std::size_t header_bytes = 0;
  if (version == 2) {
    image.iname_offset = sizeof(nifti_2_header) + 4;  // 544, a multiple of 16
    if (nifti_convert_nim2n2hdr(&image, &header2) != 0) throw InputError(target, "could not build a NIfTI-2 header");
    header2.vox_offset = image.iname_offset;
    header = &header2;
    header_bytes = sizeof header2;
  } else {
    image.iname_offset = sizeof(nifti_1_header) + 4;  // 352
    if (nifti_convert_nim2n1hdr(&image, &header1) != 0) throw InputError(target, "could not build a NIfTI-1 header");
    header1.vox_offset = static_cast<float>(image.iname_offset);
    header = &header1;
    header_bytes = sizeof header1;
  }
  const char extension[4] = {0, 0, 0, 0};
  const auto bytes = static_cast<std::size_t>(data.numel()) * data.element_size();
  znzFile out = znzopen(file.c_str(), "wb", compressed ? 1 : 0);
  if (znz_isnull(out)) {
    throw InputError(target, "cannot create the temporary file " + file.string() + " (folder missing or not writable?)");
  }
  bool ok = znzwrite(header, 1, header_bytes, out) == header_bytes && znzwrite(extension, 1, 4, out) == 4;
  // znzwrite takes at most INT_MAX bytes per call with zlib: write in pieces.
  const auto* bytes_in = static_cast<const char*>(data.data_ptr());
  for (std::size_t done = 0; ok && done < bytes;) {
    const std::size_t piece = std::min<std::size_t>(bytes - done, std::size_t{1} << 30);
    ok = znzwrite(bytes_in + done, 1, piece, out) == piece;
    done += piece;
  }
  ok = (znzclose(out) == 0) && ok;
  if (!ok) throw InputError(target, "writing the NIfTI file failed (disk full or not writable?)");
}

/// dim[0] of the header at the start of `path` (gzip or not) when it is 1 to 7 in either byte
/// order; nullopt otherwise. Checked before the file reaches libnifti, whose NIfTI-2 reader
/// (3.0.1) runs off the stack on a dim[0] far outside that range.
std::optional<std::int64_t> header_rank(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return std::nullopt;
  unsigned char header[sizeof(nifti_2_header)] = {};
  const int got = gzread(file, header, sizeof header);
  gzclose(file);
  if (got < 4) return std::nullopt;
  auto value = [&](std::size_t offset, std::size_t bytes, bool swapped) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v |= std::uint64_t{header[offset + (swapped ? bytes - 1 - i : i)]} << (8 * i);
    return v;
  };
  for (const bool swapped : {false, true}) {
    const std::uint64_t size = value(0, 4, swapped);
    std::uint64_t rank = 0;
    if (size == sizeof(nifti_1_header) && got >= 42) {
      rank = value(40, 2, swapped);  // short dim[8] at 40
    } else if (size == sizeof(nifti_2_header) && got >= 24) {
      rank = value(16, 8, swapped);  // int64_t dim[8] at 16
    } else {
      continue;
    }
    if (rank >= 1 && rank <= 7) return static_cast<std::int64_t>(rank);
  }
  return std::nullopt;
}

}  // namespace

bool is_nifti_path(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  return ends_with(name, ".nii") || ends_with(name, ".nii.gz");
}

std::int64_t nifti_spatial_voxels(const std::filesystem::path& path) {
  nifti_set_debug_level(0);
  if (!header_rank(path.string())) return 0;
  const NiftiPtr image(nifti_image_read(path.string().c_str(), 0));  // header only
  if (!image || image->nx < 1 || image->ny < 1) return 0;
  // NIfTI-2 sizes are 64-bit: a product beyond int64 counts as the largest (it is refused on reading).
  std::int64_t voxels = 0;
  const std::int64_t nz = std::max<std::int64_t>(image->dim[0] >= 3 ? image->nz : 1, 1);
  if (__builtin_mul_overflow(static_cast<std::int64_t>(image->nx), static_cast<std::int64_t>(image->ny), &voxels) ||
      __builtin_mul_overflow(voxels, nz, &voxels)) {
    return std::numeric_limits<std::int64_t>::max();
  }
  return voxels;
}

Volume read_nifti(const std::filesystem::path& path, const NiftiReadOptions& options) {
  const std::string source = path.string();
  nifti_set_debug_level(0);
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) throw InputError(source, "no such file (expected a NIfTI image)");
  if (!is_nifti_path(path)) throw InputError(source, "not a .nii or .nii.gz file name");
  if (!header_rank(source)) {
    throw InputError(source, "not a NIfTI-1/NIfTI-2 header (header size 348 or 540 and dim[0] from 1 to 7 expected)");
  }
  NiftiPtr image(nifti_image_read(source.c_str(), 0));  // header only: check sizes before allocating
  if (!image) throw InputError(source, "not a readable NIfTI-1/NIfTI-2 header");
  const auto type = voxel_type_of(image->datatype);
  if (!type) {
    throw InputError(source, fmt::format("voxel type {} is not supported; expected uint8, int16, uint16, int32, float32 "
                                         "or float64", nifti_datatype_string(image->datatype)));
  }
  const std::int64_t rank = image->dim[0];
  for (std::int64_t d = 5; d <= rank && d <= 7; ++d) {
    if (image->dim[d] > 1) throw InputError(source, fmt::format("has {} dimensions; expected 3D or 4D", rank));
  }
  if (rank < 2 || rank > 7) throw InputError(source, fmt::format("dim[0] = {}; expected 3 or 4", rank));
  const std::int64_t nx = image->nx, ny = image->ny, nz = rank >= 3 ? image->nz : 1, nt = rank >= 4 ? image->nt : 1;
  if (nx < 1 || ny < 1 || nz < 1 || nt < 1) throw InputError(source, fmt::format("empty dimension {}x{}x{}x{}", nx, ny, nz, nt));
  const double voxels = static_cast<double>(nx) * ny * nz * nt;
  if (voxels > static_cast<double>(options.max_voxels)) {
    throw InputError(source, fmt::format("header declares {}x{}x{}x{} = {} voxels; the limit is {}", nx, ny, nz, nt, voxels,
                                         options.max_voxels));
  }
  if (!nifti_is_gzfile(source.c_str()) && image->nifti_type != NIFTI_FTYPE_NIFTI1_2 &&
      image->nifti_type != NIFTI_FTYPE_NIFTI2_2) {
    const double needed = static_cast<double>(image->iname_offset) + voxels * image->nbyper;
    const auto size = std::filesystem::file_size(path, error);
    if (!error && static_cast<double>(size) < needed) {
      throw InputError(source, fmt::format("is truncated: {} bytes, but the header needs {}", size, needed));
    }
  }
  if (nifti_image_load(image.get()) < 0 || image->data == nullptr) {
    throw InputError(source, "voxel data could not be read (truncated or corrupt file)");
  }

  Volume volume;
  std::vector<std::int64_t> shape = {nz, ny, nx};
  if (nt > 1) shape.insert(shape.begin(), nt);
  volume.type = *type;
  volume.voxels = voxels_of(*image, *type, shape);
  const double slope = image->scl_slope, inter = image->scl_inter;
  if (std::isfinite(slope) && slope != 0.0 && (slope != 1.0 || inter != 0.0)) apply_scaling(volume, slope, inter);
  if (image->sform_code > 0) {
    volume.geometry = Geometry::from_ras_affine(to_array(image->sto_xyz), source);
  } else if (image->qform_code > 0) {
    volume.geometry = Geometry::from_ras_affine(to_array(image->qto_xyz), source);
  } else {
    std::array<double, 16> ras{};
    ras[0] = image->dx > 0 ? image->dx : 1.0;
    ras[5] = image->dy > 0 ? image->dy : 1.0;
    ras[10] = image->dz > 0 ? image->dz : 1.0;
    ras[15] = 1.0;
    volume.geometry = Geometry::from_ras_affine(ras, source);
  }
  const double stored_interval = nt > 1 ? stored_frame_interval(source) : 0.0;
  if (nt > 1 && image->dt > 0 && std::isfinite(stored_interval) && stored_interval > 0) {
    // A pixdim[4] of 0 (or NaN, or below 0) says nothing of the frames' timing: the series then
    // has no frame times (a perfusion analysis refuses it by name) rather than frames assumed
    // 1 s apart.
    const double scale = image->time_units == NIFTI_UNITS_MSEC ? 1e-3 : image->time_units == NIFTI_UNITS_USEC ? 1e-6 : 1.0;
    for (std::int64_t t = 0; t < nt; ++t) volume.frame_times_s.push_back((image->toffset + image->dt * t) * scale);
  }
  volume.validate(source);
  return volume;
}

void write_nifti(const std::filesystem::path& path, const Volume& volume, NiftiVersion version) {
  const std::string target = path.string();
  volume.validate(target);
  if (!is_nifti_path(path)) throw InputError(target, "expected an output name ending in .nii or .nii.gz");
  nifti_set_debug_level(0);
  const auto zyx = volume.shape_zyx();
  const std::int64_t nt = volume.frames();
  const bool large = zyx[0] > 32767 || zyx[1] > 32767 || zyx[2] > 32767 || nt > 32767;
  const int nifti_version = version == NiftiVersion::kNifti2 || large ? 2 : 1;
  const std::int64_t dims[8] = {volume.voxels.dim() == 4 ? 4 : 3, zyx[2], zyx[1], zyx[0], nt, 1, 1, 1};
  NiftiPtr image(nifti_make_new_nim(dims, datatype_of(volume.type), 0));
  if (!image) throw InputError(target, "could not set up a NIfTI header");

  const auto& g = volume.geometry;
  image->dx = image->pixdim[1] = g.spacing[0];
  image->dy = image->pixdim[2] = g.spacing[1];
  image->dz = image->pixdim[3] = g.spacing[2];
  image->xyz_units = NIFTI_UNITS_MM;
  if (nt > 1) {
    const auto& times = volume.frame_times_s;
    image->time_units = NIFTI_UNITS_SEC;
    image->toffset = times.empty() ? 0.0 : times.front();
    // Without frame times the interval is written as unknown (0), not invented.
    image->dt = image->pixdim[4] =
        times.size() > 1 ? (times.back() - times.front()) / static_cast<double>(times.size() - 1) : 0.0;
  }
  const auto ras = g.index_to_ras();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) image->sto_xyz.m[r][c] = ras[r * 4 + c];
  image->sto_ijk = nifti_dmat44_inverse(image->sto_xyz);
  image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  image->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  double dx = 0, dy = 0, dz = 0;
  nifti_dmat44_to_quatern(image->sto_xyz, &image->quatern_b, &image->quatern_c, &image->quatern_d, &image->qoffset_x,
                          &image->qoffset_y, &image->qoffset_z, &dx, &dy, &dz, &image->qfac);
  image->qto_xyz = nifti_quatern_to_dmat44(image->quatern_b, image->quatern_c, image->quatern_d, image->qoffset_x,
                                           image->qoffset_y, image->qoffset_z, g.spacing[0], g.spacing[1], g.spacing[2],
                                           image->qfac);
  image->qto_ijk = nifti_dmat44_inverse(image->qto_xyz);
  std::strncpy(image->descrip, "vitruvian export", sizeof(image->descrip) - 1);

  at::Tensor data = volume.type == VoxelType::kUInt16 ? volume.voxels.to(at::kShort) : volume.voxels;  // low 16 bits
  data = data.contiguous();

  const bool compressed = ends_with(target, ".nii.gz");
  image->nifti_type = nifti_version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
  // The temporary keeps the .nii / .nii.gz ending (temporary_path_for), as NIfTI tools expect.
  write_atomically(path, [&](const std::filesystem::path& temporary) {
    write_single_file(temporary, *image, nifti_version, data, compressed, target);
  });
}

}  // namespace vitruvian::data
