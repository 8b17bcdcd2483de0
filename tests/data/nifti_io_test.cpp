// NIfTI import/export: NIfTI → HDF5 → NIfTI keeps values and affine bit for bit for every voxel
// type, file flavour and scaling; nibabel sees the exported affine; hostile headers are refused.
#include "data/nifti_io.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nifti2_io.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "data/volume_store.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

using NiftiTest = ScratchTest<11>;

struct NimFree {
  void operator()(nifti_image* image) const { nifti_image_free(image); }
};
using Nim = std::unique_ptr<nifti_image, NimFree>;

Nim read_header(const fs::path& path) {
  Nim image(nifti_image_read(path.c_str(), 1));
  if (!image) throw std::runtime_error("cannot read " + path.string());
  return image;
}

// An oblique, anisotropic RAS affine as a scanner would write it (float32 in NIfTI-1 srows).
nifti_dmat44 scanner_affine() {
  const double c = std::cos(0.3), s = std::sin(0.3);
  const double sx = 0.68359375, sy = 0.68359375, sz = 2.5;
  nifti_dmat44 m{};
  const double cols[3][3] = {{-c * sx, s * sx, 0.0}, {-s * sy, -c * sy, 0.0}, {0.0, 0.0, sz}};
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col) m.m[r][col] = static_cast<float>(cols[col][r]);
  m.m[0][3] = 171.5f;
  m.m[1][3] = 180.25f;
  m.m[2][3] = -412.0f;
  m.m[3][3] = 1.0;
  return m;
}

// Writes a NIfTI file straight through libnifti, as another tool would: sform and qform from
// `affine`, the given scaling, and `values` (already in the file's type).
void write_foreign(const fs::path& path, int datatype, const at::Tensor& values, int version, double slope = 0.0,
                   double inter = 0.0, double frame_interval = 1.5) {
  const auto zyx = values.sizes();
  const bool four_d = values.dim() == 4;
  const std::int64_t dims[8] = {values.dim(),
                                zyx[values.dim() - 1],
                                zyx[values.dim() - 2],
                                zyx[values.dim() - 3],
                                four_d ? zyx[0] : 1,
                                1,
                                1,
                                1};
  Nim image(nifti_make_new_nim(dims, datatype, 0));
  const nifti_dmat44 affine = scanner_affine();
  image->sto_xyz = affine;
  image->sto_ijk = nifti_dmat44_inverse(affine);
  image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  double dx = 0, dy = 0, dz = 0;
  nifti_dmat44_to_quatern(affine, &image->quatern_b, &image->quatern_c, &image->quatern_d, &image->qoffset_x,
                          &image->qoffset_y, &image->qoffset_z, &dx, &dy, &dz, &image->qfac);
  image->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  image->dx = image->pixdim[1] = dx;
  image->dy = image->pixdim[2] = dy;
  image->dz = image->pixdim[3] = dz;
  if (four_d) {
    image->dt = image->pixdim[4] = frame_interval;
    image->time_units = NIFTI_UNITS_SEC;
  }
  image->xyz_units = NIFTI_UNITS_MM;
  image->scl_slope = slope;
  image->scl_inter = inter;
  const at::Tensor data = values.contiguous();
  if (version == 1) {  // libnifti's own writer
    image->data = data.data_ptr();
    ASSERT_EQ(nifti_set_filenames(image.get(), path.c_str(), 0, 1), 0);
    nifti_set_iname_offset(image.get(), 1);
    nifti_image_write(image.get());
    image->data = nullptr;
    return;
  }
  // Debian's libnifti 3.0.1 writes NIfTI-2 single files without their header: lay it out by hand.
  image->nifti_type = NIFTI_FTYPE_NIFTI2_1;
  nifti_2_header header{};
  ASSERT_EQ(nifti_convert_nim2n2hdr(image.get(), &header), 0);
  header.vox_offset = 544;
  znzFile out = znzopen(path.c_str(), "wb", path.extension() == ".gz");
  ASSERT_FALSE(znz_isnull(out));
  const char extension[4] = {0, 0, 0, 0};
  znzwrite(&header, 1, sizeof header, out);
  znzwrite(extension, 1, 4, out);
  znzwrite(data.data_ptr(), 1, static_cast<std::size_t>(data.numel()) * data.element_size(), out);
  znzclose(out);
}

// What a NIfTI file means to a reader: scaled values and the sform.
struct Meaning {
  at::Tensor values;  // double
  nifti_dmat44 sform;
};

Meaning meaning_of(const fs::path& path) {
  Nim image = read_header(path);
  std::vector<std::int64_t> shape;
  for (int d = image->dim[0]; d >= 1; --d) shape.push_back(image->dim[d]);
  at::ScalarType dtype = at::kFloat;
  switch (image->datatype) {
    case DT_UINT8: dtype = at::kByte; break;
    case DT_INT16: dtype = at::kShort; break;
    case DT_UINT16: dtype = at::kShort; break;
    case DT_INT32: dtype = at::kInt; break;
    case DT_FLOAT32: dtype = at::kFloat; break;
    case DT_FLOAT64: dtype = at::kDouble; break;
    default: throw std::runtime_error("unexpected datatype");
  }
  // A copy: the header and its data are freed on return, and .to(kDouble) of float64 voxels
  // would still alias them.
  at::Tensor raw = at::from_blob(image->data, shape, dtype).to(at::kDouble, /*non_blocking=*/false, /*copy=*/true);
  if (image->datatype == DT_UINT16) raw = at::where(raw < 0, raw + 65536.0, raw);
  if (image->scl_slope != 0.0) raw = raw * image->scl_slope + image->scl_inter;
  return {raw, image->sform_code > 0 ? image->sto_xyz : image->qto_xyz};
}

// 1 or 2 from the header's own size field (libnifti reports both as "single file").
int header_version(const fs::path& path) {
  char bytes[540] = {};
  znzFile in = znzopen(path.c_str(), "rb", path.extension() == ".gz");
  if (znz_isnull(in)) return -1;
  const auto n = znzread(bytes, 1, sizeof bytes, in);
  znzclose(in);
  return nifti_header_version(bytes, n);
}

void expect_same_affine(const nifti_dmat44& a, const nifti_dmat44& b) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(a.m[r][c], b.m[r][c]) << "affine[" << r << "][" << c << "]";
}

// NIfTI file → read_nifti → HDF5 store → read back → write_nifti.
fs::path through_the_store(const fs::path& original, const fs::path& dir, const std::string& exported_name,
                           NiftiVersion version) {
  const Volume imported = read_nifti(original);
  {
    VolumeWriter writer(dir / "store.h5", StorageOptions{{8, 8, 8}, 4, true});
    writer.add_series("s", "image", imported, original.string());
    writer.commit();
  }
  const VolumeStore store(dir / "store.h5");
  const Volume stored = store.read_series("s", "image");
  EXPECT_EQ(stored.type, imported.type);
  const fs::path exported = dir / exported_name;
  write_nifti(exported, stored, version);
  return exported;
}

struct TypeCase {
  int datatype;
  at::Tensor values;
};

std::vector<TypeCase> every_type(std::vector<std::int64_t> shape) {
  return {
      {DT_UINT8, at::randint(0, 256, shape, at::kByte)},
      {DT_INT16, at::randint(-32768, 32768, shape, at::kShort)},
      {DT_UINT16, at::randint(-32768, 32768, shape, at::kShort)},  // bits of the full uint16 range
      {DT_INT32, at::randint(-2000000000, 2000000000, shape, at::kInt)},
      {DT_FLOAT32, at::randn(shape, at::kFloat) * 1e4},
      {DT_FLOAT64, at::randn(shape, at::kDouble) * 1e-3},
  };
}

TEST_F(NiftiTest, EveryTypeFlavourAndVersionRoundTripsBitExactThroughTheStore) {
  int cases = 0;
  for (const auto& t : every_type({9, 11, 13})) {
    for (const int version : {1, 2}) {
      for (const std::string extension : {".nii", ".nii.gz"}) {
        SCOPED_TRACE(std::string(nifti_datatype_string(t.datatype)) + " NIfTI-" + std::to_string(version) + " " + extension);
        const fs::path original = dir_ / ("in_" + std::to_string(cases) + extension);
        write_foreign(original, t.datatype, t.values, version);
        const auto exported = through_the_store(original, dir_, "out_" + std::to_string(cases) + extension,
                                                version == 2 ? NiftiVersion::kNifti2 : NiftiVersion::kNifti1);
        const Meaning before = meaning_of(original), after = meaning_of(exported);
        EXPECT_TRUE(at::equal(before.values, after.values));
        expect_same_affine(before.sform, after.sform);
        Nim header = read_header(exported);
        EXPECT_EQ(header->datatype, t.datatype);
        EXPECT_EQ(header_version(exported), version);
        EXPECT_EQ(header->sform_code, NIFTI_XFORM_SCANNER_ANAT);
        EXPECT_EQ(header->qform_code, NIFTI_XFORM_SCANNER_ANAT);
        // The qform says the same as the sform (viewers that read only one agree).
        for (int r = 0; r < 3; ++r)
          for (int c = 0; c < 4; ++c) EXPECT_NEAR(header->qto_xyz.m[r][c], header->sto_xyz.m[r][c], 1e-4);
        ++cases;
      }
    }
  }
  EXPECT_EQ(cases, 24);
}

TEST_F(NiftiTest, FourDimensionalSeriesKeepFramesAndTiming) {
  const at::Tensor values = at::randint(-1024, 3000, {5, 4, 6, 7}, at::kShort);
  write_foreign(dir_ / "perf.nii.gz", DT_INT16, values, 1);
  const Volume v = read_nifti(dir_ / "perf.nii.gz");
  ASSERT_EQ(v.voxels.dim(), 4);
  EXPECT_EQ(v.frames(), 5);
  ASSERT_EQ(v.frame_times_s.size(), 5u);
  EXPECT_DOUBLE_EQ(v.frame_times_s[4] - v.frame_times_s[0], 6.0);
  const auto exported = through_the_store(dir_ / "perf.nii.gz", dir_, "back.nii.gz", NiftiVersion::kNifti1);
  EXPECT_TRUE(at::equal(meaning_of(dir_ / "perf.nii.gz").values, meaning_of(exported).values));
  EXPECT_EQ(read_header(exported)->dt, 1.5);
}

TEST_F(NiftiTest, FramesWithoutAnIntervalHaveNoTimes) {
  // pixdim[4] 0 or NaN: the file does not say when its frames were taken, and none is invented
  // (libnifti's image reads either as 1). NIfTI-1 and NIfTI-2 alike.
  const at::Tensor values = at::randint(-1024, 3000, {5, 4, 6, 7}, at::kShort);
  for (const int version : {1, 2}) {
    for (const double interval : {0.0, std::numeric_limits<double>::quiet_NaN()}) {
      const std::string name = fmt::format("untimed_{}_{}.nii.gz", version, interval);
      write_foreign(dir_ / name, DT_INT16, values, version, 0.0, 0.0, interval);
      const Volume v = read_nifti(dir_ / name);
      EXPECT_EQ(v.frames(), 5) << name;
      EXPECT_TRUE(v.frame_times_s.empty()) << name;
    }
  }
  // Written back, the interval stays unknown.
  const Volume v = read_nifti(dir_ / "untimed_1_0.nii.gz");
  write_nifti(dir_ / "untimed_back.nii.gz", v, NiftiVersion::kNifti1);
  int version = 0;
  const std::unique_ptr<void, decltype(&std::free)> stored(
      nifti_read_header((dir_ / "untimed_back.nii.gz").c_str(), &version, 0), &std::free);
  ASSERT_TRUE(stored && version == 1);
  EXPECT_EQ(static_cast<const nifti_1_header*>(stored.get())->pixdim[4], 0.0f);  // libnifti's image reads 1
  EXPECT_TRUE(read_nifti(dir_ / "untimed_back.nii.gz").frame_times_s.empty());
}

TEST_F(NiftiTest, ScalingStaysIntegralWhenItCanElseBecomesFloat) {
  const at::Tensor raw = at::randint(-2000, 2000, {4, 5, 6}, at::kShort);
  write_foreign(dir_ / "int.nii", DT_INT16, raw, 1, 2.0, -1024.0);
  const Volume integral = read_nifti(dir_ / "int.nii");
  EXPECT_EQ(integral.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(integral.voxels, (raw.to(at::kInt) * 2 - 1024).to(at::kShort)));

  write_foreign(dir_ / "half.nii", DT_INT16, raw, 1, 0.5, 0.25);
  const Volume fractional = read_nifti(dir_ / "half.nii");
  EXPECT_EQ(fractional.type, VoxelType::kFloat32);
  EXPECT_TRUE(at::equal(fractional.voxels, raw.to(at::kFloat) * 0.5f + 0.25f));

  // Integral values that overflow the stored type widen to float32 rather than wrap.
  write_foreign(dir_ / "wide.nii", DT_UINT8, at::full({2, 2, 2}, 200, at::kByte), 1, 2.0, 0.0);
  const Volume wide = read_nifti(dir_ / "wide.nii");
  EXPECT_EQ(wide.type, VoxelType::kFloat32);
  EXPECT_EQ(wide.voxels.max().item<float>(), 400.0f);

  // A series of several of the scaling's chunks (4 Mi voxels each) is decided on all of them: one
  // voxel of the last leaving int16 makes the whole series float32, every value right.
  at::Tensor large = at::randint(-1000, 1000, {3, 11, 256, 512}, at::kShort);
  large.view({-1})[-1] = 32000;
  write_foreign(dir_ / "large.nii", DT_INT16, large, 1, 1.0, 1000.0);
  const Volume read = read_nifti(dir_ / "large.nii");
  EXPECT_EQ(read.type, VoxelType::kFloat32);
  EXPECT_TRUE(at::equal(read.voxels, large.to(at::kFloat) + 1000.0f));
  large.view({-1})[-1] = 0;  // now every value fits: int16, shifted in place
  write_foreign(dir_ / "large.nii", DT_INT16, large, 1, 1.0, -1024.0);
  const Volume shifted = read_nifti(dir_ / "large.nii");
  EXPECT_EQ(shifted.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(shifted.voxels, (large - 1024).to(at::kShort)));

  // Through the store and back, the meaning (scaled values, affine) is unchanged.
  const auto exported = through_the_store(dir_ / "half.nii", dir_, "half_back.nii", NiftiVersion::kNifti1);
  EXPECT_TRUE(at::equal(meaning_of(dir_ / "half.nii").values, meaning_of(exported).values));
  expect_same_affine(meaning_of(dir_ / "half.nii").sform, meaning_of(exported).sform);
}

TEST_F(NiftiTest, GeometryIsLpsWithTheDocumentedConvention) {
  write_foreign(dir_ / "g.nii", DT_INT16, at::zeros({3, 4, 5}, at::kShort), 1);
  const Volume v = read_nifti(dir_ / "g.nii");
  const nifti_dmat44 ras = scanner_affine();
  // LPS = RAS with x and y negated; spacing = column norms.
  EXPECT_NEAR(v.geometry.origin[0], -ras.m[0][3], 1e-9);
  EXPECT_NEAR(v.geometry.origin[1], -ras.m[1][3], 1e-9);
  EXPECT_NEAR(v.geometry.origin[2], ras.m[2][3], 1e-9);
  EXPECT_NEAR(v.geometry.spacing[0], 0.68359375, 1e-6);
  EXPECT_NEAR(v.geometry.spacing[2], 2.5, 1e-9);
  const auto lps = v.geometry.index_to_lps();
  EXPECT_NEAR(lps[0], -ras.m[0][0], 1e-9);
  EXPECT_NEAR(lps[4], -ras.m[1][0], 1e-9);
}

TEST_F(NiftiTest, LabelWithAnotherGeometryIsRefusedNamingTheFile) {
  write_foreign(dir_ / "ct.nii.gz", DT_INT16, at::zeros({6, 7, 8}, at::kShort), 1);
  const Volume ct = read_nifti(dir_ / "ct.nii.gz");
  Volume label;
  label.type = VoxelType::kUInt8;
  label.voxels = at::zeros({6, 7, 8}, at::kByte);
  label.geometry = ct.geometry;
  label.geometry.origin[2] += 5.0;  // two slices off
  write_nifti(dir_ / "label.nii.gz", label);
  const Volume shifted = read_nifti(dir_ / "label.nii.gz");
  VolumeWriter writer(dir_ / "x.h5");
  writer.add_series("s", "ct", ct, "ct.nii.gz");
  try {
    writer.add_label("s", "organs", "ct", shifted, (dir_ / "label.nii.gz").string());
    FAIL() << "a shifted label map was accepted";
  } catch (const InputError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("label.nii.gz"), std::string::npos) << text;
    EXPECT_NE(text.find("differs from series 'ct'"), std::string::npos) << text;
  }
}

TEST_F(NiftiTest, HostileAndBrokenFilesAreRefusedBeforeAllocating) {
  const auto message = [](const fs::path& path) -> std::string {
    try {
      read_nifti(path);
    } catch (const InputError& e) {
      return e.what();
    }
    return "accepted";
  };
  // A header declaring 10^12 voxels with no data behind it.
  {
    nifti_1_header h{};
    h.sizeof_hdr = 348;
    h.dim[0] = 3;
    h.dim[1] = h.dim[2] = h.dim[3] = 10000;
    h.datatype = DT_INT16;
    h.bitpix = 16;
    h.pixdim[1] = h.pixdim[2] = h.pixdim[3] = 1.0f;
    h.vox_offset = 352;
    std::memcpy(h.magic, "n+1\0", 4);
    std::ofstream out(dir_ / "bomb.nii", std::ios::binary);
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
    out.write("\0\0\0\0", 4);
  }
  EXPECT_NE(message(dir_ / "bomb.nii").find("voxels; the limit is"), std::string::npos) << message(dir_ / "bomb.nii");

  // A file cut short.
  write_foreign(dir_ / "whole.nii", DT_FLOAT32, at::randn({8, 8, 8}), 1);
  fs::copy_file(dir_ / "whole.nii", dir_ / "cut.nii");
  fs::resize_file(dir_ / "cut.nii", fs::file_size(dir_ / "whole.nii") - 100);
  EXPECT_NE(message(dir_ / "cut.nii").find("truncated"), std::string::npos) << message(dir_ / "cut.nii");

  // A compressed file cut short.
  write_foreign(dir_ / "whole.nii.gz", DT_FLOAT32, at::randn({8, 8, 8}), 1);
  {
    std::ifstream in(dir_ / "whole.nii.gz", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(dir_ / "cut.nii.gz", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  EXPECT_NE(message(dir_ / "cut.nii.gz").find("cut.nii.gz"), std::string::npos) << message(dir_ / "cut.nii.gz");
  EXPECT_NE(message(dir_ / "cut.nii.gz"), "accepted");

  // Unsupported voxel types and dimensionality.
  write_foreign(dir_ / "int8.nii", DT_INT8, at::zeros({2, 2, 2}, at::kChar), 1);
  EXPECT_NE(message(dir_ / "int8.nii").find("is not supported"), std::string::npos) << message(dir_ / "int8.nii");

  // Not a NIfTI file at all, and a missing one.
  { std::ofstream(dir_ / "text.nii") << "hello"; }
  EXPECT_NE(message(dir_ / "text.nii").find("text.nii"), std::string::npos);
  EXPECT_NE(message(dir_ / "text.nii"), "accepted");
  EXPECT_NE(message(dir_ / "missing.nii").find("no such file"), std::string::npos);
}

TEST_F(NiftiTest, FailedExportLeavesNothingBehind) {
  Volume v;
  v.type = VoxelType::kInt16;
  v.voxels = at::zeros({2, 3, 4}, at::kShort);
  EXPECT_THROW(write_nifti(dir_ / "missing_folder" / "x.nii", v), InputError);
  EXPECT_THROW(write_nifti(dir_ / "x.txt", v), InputError);
  EXPECT_TRUE(fs::is_empty(dir_));
  // An existing file is replaced whole, never left half-written.
  write_nifti(dir_ / "x.nii.gz", v);
  v.voxels.fill_(7);
  write_nifti(dir_ / "x.nii.gz", v);
  EXPECT_EQ(read_nifti(dir_ / "x.nii.gz").voxels.max().item<std::int16_t>(), 7);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

// An export killed in the middle leaves a temporary that keeps the .nii.gz ending, is recognised
// as a leftover and removed, while the previous file stays whole.
TEST_F(NiftiTest, AKilledExportLeavesARecognisedLeftoverWithItsExtension) {
  GTEST_FLAG_SET(death_test_style, "fast");
  Volume v;
  v.type = VoxelType::kInt16;
  v.voxels = at::zeros({2, 3, 4}, at::kShort);
  write_nifti(dir_ / "x.nii.gz", v);
  Volume big = v;
  big.voxels = at::randint(-1000, 1000, {64, 64, 64}, at::kShort);
  EXPECT_EXIT(
      {
        crash_when_a_file_passes(16 << 10);
        write_nifti(dir_ / "x.nii.gz", big);
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGXFSZ), "");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 2u);
  const std::string& leftover = names[0];
  EXPECT_EQ(leftover.rfind(".x.nii.gz.tmp.", 0), 0u) << leftover;
  EXPECT_EQ(leftover.substr(leftover.size() - 7), ".nii.gz") << leftover;
  EXPECT_TRUE(is_temporary_name(leftover));
  EXPECT_EQ(remove_leftover_temporaries(dir_), std::vector<fs::path>{dir_ / leftover});
  EXPECT_TRUE(at::equal(read_nifti(dir_ / "x.nii.gz").voxels, v.voxels));
}

// nibabel (python3-nibabel, Debian's python) reads our export with the affine we meant: the
// voxel at index (i, j, k) lands at the RAS point our geometry says.
TEST_F(NiftiTest, NibabelSeesTheExportedAffine) {
  if (!fs::exists("/usr/bin/python3") ||
      std::system("/usr/bin/python3 -c 'import nibabel' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3-nibabel not installed";
  }
  Volume v;
  v.type = VoxelType::kFloat32;
  v.voxels = at::arange(3 * 4 * 5, at::kFloat).reshape({3, 4, 5});
  v.geometry.spacing = {0.8, 0.9, 3.0};
  v.geometry.origin = {-120.5, 33.25, 410.0};
  const double c = std::cos(0.4), s = std::sin(0.4);
  v.geometry.direction = {c, 0, s, 0, 1, 0, -s, 0, c};
  for (const auto version : {NiftiVersion::kNifti1, NiftiVersion::kNifti2}) {
    const bool two = version == NiftiVersion::kNifti2;
    SCOPED_TRACE(two ? "NIfTI-2" : "NIfTI-1");
    const fs::path file = dir_ / (two ? "n2.nii.gz" : "n1.nii.gz");
    write_nifti(file, v, version);
    const std::string command = "/usr/bin/python3 -c \"import nibabel as nib; i = nib.load('" + file.string() +
                                "'); a = i.affine; d = i.get_fdata(); "
                                "print(' '.join(repr(float(x)) for x in a[:3].ravel()), float(d[4, 2, 1]), "
                                "i.header.sizeof_hdr)\"";
    FILE* pipe = ::popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::array<double, 14> got{};
    for (auto& x : got) ASSERT_EQ(std::fscanf(pipe, "%lf", &x), 1);
    ASSERT_EQ(::pclose(pipe), 0);
    const auto ras = v.geometry.index_to_ras();
    for (int r = 0; r < 3; ++r)
      for (int col = 0; col < 4; ++col) EXPECT_NEAR(got[r * 4 + col], ras[r * 4 + col], 1e-4) << r << "," << col;
    // nibabel indexes (i, j, k) = (x, y, z): our [z=1][y=2][x=4].
    EXPECT_EQ(got[12], v.voxels[1][2][4].item<float>());
    EXPECT_EQ(got[13], two ? 540 : 348);
  }
}

}  // namespace
}  // namespace vitruvian::data
