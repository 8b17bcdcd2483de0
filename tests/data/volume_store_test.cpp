// The HDF5 store: write/read round trips, regions, shards, and hostile files refused before
// anything is allocated.
#include "data/volume_store.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "data/preprocess.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

using VolumeStoreTest = ScratchTest<7>;

Geometry test_geometry() {
  Geometry g;
  g.spacing = {0.7, 0.75, 2.5};
  g.origin = {-100.0, 20.5, 300.0};
  g.direction = {0, -1, 0, 1, 0, 0, 0, 0, 1};  // rotated in plane
  return g;
}

Volume ct(std::int64_t z, std::int64_t y, std::int64_t x) {
  Volume v;
  v.type = VoxelType::kInt16;
  v.voxels = at::randint(-1024, 3000, {z, y, x}, at::kShort);
  v.geometry = test_geometry();
  v.modality = "CT";
  return v;
}

Volume labels_for(const Volume& image) {
  Volume l;
  l.type = VoxelType::kUInt8;
  l.voxels = at::randint(0, 5, image.voxels.sizes(), at::kByte);
  l.geometry = image.geometry;
  return l;
}

TEST_F(VolumeStoreTest, RoundTripKeepsVoxelsGeometryAndMetadata) {
  const auto path = dir_ / "d.h5";
  const Volume image = ct(20, 33, 41);
  const Volume label = labels_for(image);
  Volume perfusion;
  perfusion.type = VoxelType::kUInt16;
  perfusion.voxels = at::randint(0, 65536, {5, 20, 33, 41}, at::kInt);
  perfusion.geometry = image.geometry;
  perfusion.frame_times_s = {0, 1.5, 3, 4.5, 6};
  perfusion.modality = "CT";
  Volume mr;
  mr.type = VoxelType::kFloat32;
  mr.voxels = at::rand({20, 33, 41}) * 1000;
  mr.geometry = image.geometry;
  mr.modality = "MR";
  {
    VolumeWriter writer(path, StorageOptions{{16, 16, 16}, 4, true});
    writer.set_label_table({{0, "background"}, {1, "liver"}, {4, "lesion"}});
    writer.add_series("case1", "cta", image, "cta.nii");
    writer.add_series("case1", "perfusion", perfusion, "ctp");
    writer.add_series("case2", "t1", mr, "t1");
    writer.add_label("case1", "organs", "cta", label, "seg.nii");
    writer.set_study_metadata("case1", R"({"nodules": 2})");
    EXPECT_FALSE(fs::exists(path)) << "the target appears only on commit";
    writer.commit();
  }
  VolumeStore store(path);
  ASSERT_EQ(store.studies().size(), 2u);
  EXPECT_FALSE(store.sharded());
  EXPECT_EQ(store.label_table().at(4), "lesion");
  const StudyInfo& s = store.study("case1");
  EXPECT_EQ(s.metadata_json, R"({"nodules": 2})");
  EXPECT_EQ(s.voxels, 20 * 33 * 41);
  ASSERT_NE(s.find_series("cta"), nullptr);
  EXPECT_EQ(s.find_series("cta")->compression, "shuffle+deflate-4");
  EXPECT_EQ(s.find_series("cta")->chunk, (std::vector<std::int64_t>{16, 16, 16}));
  EXPECT_EQ(s.find_series("perfusion")->chunk, (std::vector<std::int64_t>{1, 16, 16, 16}));

  const Volume back = store.read_series("case1", "cta");
  EXPECT_EQ(back.type, VoxelType::kInt16);
  EXPECT_TRUE(at::equal(back.voxels, image.voxels));
  EXPECT_EQ(back.geometry.spacing, image.geometry.spacing);
  EXPECT_EQ(back.geometry.origin, image.geometry.origin);
  EXPECT_EQ(back.geometry.direction, image.geometry.direction);
  EXPECT_EQ(back.modality, "CT");
  const Volume p = store.read_series("case1", "perfusion");
  EXPECT_EQ(p.type, VoxelType::kUInt16);
  EXPECT_TRUE(at::equal(p.voxels, perfusion.voxels));
  EXPECT_EQ(p.frame_times_s, perfusion.frame_times_s);
  EXPECT_TRUE(at::equal(store.read_series("case2", "t1").voxels, mr.voxels));
  const Volume l = store.read_label("case1", "organs");
  EXPECT_EQ(l.type, VoxelType::kUInt8);
  EXPECT_TRUE(at::equal(l.voxels, label.voxels));

  // A region touches only its box and equals the slice of the whole volume.
  const auto region = store.read_series_region("case1", "cta", {3, 5, 7}, {10, 20, 30});
  EXPECT_TRUE(at::equal(region, image.voxels.slice(0, 3, 13).slice(1, 5, 25).slice(2, 7, 37)));
  const auto frames = store.read_series_region("case1", "perfusion", {1, 2, 3}, {4, 5, 6});
  EXPECT_TRUE(at::equal(frames, perfusion.voxels.slice(1, 1, 5).slice(2, 2, 7).slice(3, 3, 9)));
  EXPECT_THROW(store.read_series_region("case1", "cta", {15, 0, 0}, {10, 1, 1}), InputError);
  EXPECT_THROW(store.read_series("case1", "nope"), InputError);
  EXPECT_THROW(store.study("case3"), InputError);
}

TEST_F(VolumeStoreTest, ContiguousStorageReadsTheSame) {
  const auto path = dir_ / "c.h5";
  const Volume image = ct(8, 9, 10);
  {
    VolumeWriter writer(path, StorageOptions{{0, 0, 0}, 0, false});
    writer.add_series("s", "ct", image, "x");
    writer.commit();
  }
  VolumeStore store(path);
  EXPECT_TRUE(store.study("s").series[0].chunk.empty());
  EXPECT_TRUE(at::equal(store.read_series_region("s", "ct", {1, 1, 1}, {3, 4, 5}),
                        image.voxels.slice(0, 1, 4).slice(1, 1, 5).slice(2, 1, 6)));
}

TEST_F(VolumeStoreTest, AbandonedWriterLeavesNothing) {
  const auto path = dir_ / "gone.h5";
  {
    VolumeWriter writer(path);
    writer.add_series("s", "ct", ct(4, 4, 4), "x");
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(dir_)) << "the temporary file was left behind";
}

TEST_F(VolumeStoreTest, LabelMapsMustMatchTheirReferenceSeries) {
  VolumeWriter writer(dir_ / "x.h5");
  const Volume image = ct(6, 7, 8);
  writer.add_series("s", "ct", image, "ct.nii");
  Volume label = labels_for(image);
  label.geometry.spacing[2] = 3.0;
  try {
    writer.add_label("s", "organs", "ct", label, "seg.nii");
    FAIL() << "a label with another geometry was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("seg.nii"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("geometry"), std::string::npos) << e.what();
  }
  label = labels_for(ct(6, 7, 9));
  EXPECT_THROW(writer.add_label("s", "organs", "ct", label, "seg.nii"), InputError);
  EXPECT_THROW(writer.add_label("s", "organs", "missing", labels_for(image), "seg.nii"), InputError);
  Volume wide = image;
  wide.type = VoxelType::kInt32;
  wide.voxels = image.voxels.to(at::kInt);
  EXPECT_THROW(writer.add_label("s", "organs", "ct", wide, "seg.nii"), InputError);
  EXPECT_THROW(writer.add_series("s", "ct", image, "again"), InputError);
  EXPECT_THROW(writer.add_series("a/b", "ct", image, "slash"), InputError);
}

TEST_F(VolumeStoreTest, ShardsReadLikeOneFile) {
  const auto index = dir_ / "big.h5";
  std::vector<Volume> images;
  {
    ShardedVolumeWriter writer(index, 2, StorageOptions{{8, 8, 8}, 1, true});
    writer.set_label_table({{1, "organ"}});
    for (int i = 0; i < 5; ++i) {
      images.push_back(ct(4 + i, 6, 7));
      VolumeWriter& shard = writer.begin_study("case" + std::to_string(i));
      shard.add_series("case" + std::to_string(i), "ct", images.back(), "x");
      shard.add_label("case" + std::to_string(i), "organs", "ct", labels_for(images.back()), "y");
    }
    EXPECT_THROW(writer.begin_study("case1"), InputError);
    writer.commit();
  }
  EXPECT_TRUE(fs::exists(dir_ / "big.shard-00000.h5"));
  EXPECT_TRUE(fs::exists(dir_ / "big.shard-00002.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "big.shard-00003.h5"));
  VolumeStore store(index);
  EXPECT_TRUE(store.sharded());
  ASSERT_EQ(store.studies().size(), 5u);
  EXPECT_EQ(store.label_table().at(1), "organ");
  for (int i = 0; i < 5; ++i) {
    const std::string id = "case" + std::to_string(i);
    EXPECT_TRUE(at::equal(store.read_series(id, "ct").voxels, images[static_cast<std::size_t>(i)].voxels));
    EXPECT_EQ(store.study(id).voxels, (4 + i) * 6 * 7);
  }
  // A shard missing from disk is named.
  fs::remove(dir_ / "big.shard-00001.h5");
  try {
    VolumeStore broken(index);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("big.shard-00001.h5"), std::string::npos) << e.what();
  }
}

/// The message of the error (of type E) opening `path` throws ("" when it opens).
template <typename E = Error>
std::string open_failure(const fs::path& path) {
  try {
    VolumeStore store(path);
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

/// Writes a small valid dataset, then lets `tamper` change it with the raw HDF5 API.
template <typename Tamper>
std::string open_error(const fs::path& path, Tamper tamper) {
  {
    VolumeWriter writer(path, StorageOptions{{0, 0, 0}, 0, false});
    writer.add_series("s", "ct", ct(4, 5, 6), "x");
    writer.commit();
  }
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  EXPECT_GE(file, 0);
  tamper(file);
  H5Fclose(file);
  return open_failure<InputError>(path);
}

TEST_F(VolumeStoreTest, ExternalLinksAreRefused) {
  const auto text = open_error(dir_ / "e.h5", [](hid_t file) {
    H5Lcreate_external("other.h5", "/x", file, "/studies/s/series/s2", H5P_DEFAULT, H5P_DEFAULT);
  });
  EXPECT_NE(text.find("external link"), std::string::npos) << text;
}

TEST_F(VolumeStoreTest, ExternalStorageIsRefused) {
  const auto text = open_error(dir_ / "x.h5", [](hid_t file) {
    const hid_t group = H5Gcreate2(file, "/studies/s/series/ext", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[3] = {2, 2, 2};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, "/etc/hostname", 0, 16);
    const hid_t dataset = H5Dcreate2(group, "image", H5T_STD_I16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(dataset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(group);
  });
  EXPECT_NE(text.find("external files"), std::string::npos) << text;
}

TEST_F(VolumeStoreTest, VirtualDatasetsAreRefused) {
  const auto text = open_error(dir_ / "v.h5", [](hid_t file) {
    const hid_t group = H5Gcreate2(file, "/studies/s/series/virt", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[3] = {4, 5, 6};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_virtual(dcpl, space, ".", "/studies/s/series/ct/image", space);
    const hid_t dataset = H5Dcreate2(group, "image", H5T_STD_I16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(dataset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(group);
  });
  EXPECT_NE(text.find("virtual dataset"), std::string::npos) << text;
}

TEST_F(VolumeStoreTest, HugeDeclaredSizesAreRefusedBeforeAllocating) {
  const auto text = open_error(dir_ / "h.h5", [](hid_t file) {
    const hid_t group = H5Gcreate2(file, "/studies/s/series/huge", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dims[3] = {10000, 10000, 10000};  // 10^12 voxels, chunked: no bytes on disk
    const hsize_t chunk[3] = {64, 64, 64};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_deflate(dcpl, 9);
    const hid_t dataset = H5Dcreate2(group, "image", H5T_STD_I16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(dataset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Gclose(group);
  });
  EXPECT_NE(text.find("declares 1000000000000 voxels"), std::string::npos) << text;
}

TEST_F(VolumeStoreTest, AFourDSeriesLargerThanOneReadOpensAndReadsInParts) {
  // max_voxels bounds each read and each frame: a 4D series larger than one read (a clinical CT
  // perfusion series) opens, its parts read, and a read of the whole is refused with one line.
  const auto path = dir_ / "p.h5";
  Volume perfusion = ct(4, 8, 8);
  perfusion.voxels = at::randint(-100, 100, {5, 4, 8, 8}, at::kShort);
  perfusion.frame_times_s = {0, 1, 2, 3, 4};
  for (const StorageOptions& storage : {StorageOptions{{4, 4, 4}, 0, false}, StorageOptions{{0, 0, 0}, 0, false}}) {
    {
      VolumeWriter writer(path, storage);
      writer.add_series("s", "ctp", perfusion, "x");
      writer.commit();
    }
    ReadOptions options;
    options.max_voxels = 1000;  // a frame is 256 voxels, the series 1 280
    const VolumeStore store(path, options);
    const Volume part = store.read_series_part("s", "ctp", {0, 0, 0}, {4, 8, 8}, 1, 3);
    EXPECT_TRUE(at::equal(part.voxels, perfusion.voxels.slice(0, 1, 4)));
    EXPECT_EQ(part.frame_times_s, (std::vector<double>{1, 2, 3}));
    try {
      store.read_series("s", "ctp");
      ADD_FAILURE() << "a read of 1 280 voxels passed max_voxels 1 000";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("a read of 1280 voxels (5x4x8x8); expected at most 1000 "
                                           "(ReadOptions::max_voxels): read it in parts"),
                std::string::npos)
          << e.what();
    }
    options.max_voxels = 200;  // less than a frame: refused when opened
    try {
      const VolumeStore small(path, options);
      ADD_FAILURE() << "a frame of 256 voxels passed max_voxels 200";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("declares 1280 voxels (5x4x8x8); expected 1 to 200 a frame"),
                std::string::npos)
          << e.what();
    }
    std::filesystem::remove(path);
  }
}

TEST_F(VolumeStoreTest, TruncatedFilesAndForeignFilesAreNamed) {
  const auto path = dir_ / "t.h5";
  {
    VolumeWriter writer(path, StorageOptions{{0, 0, 0}, 0, false});
    writer.add_series("s", "ct", ct(40, 50, 60), "x");
    writer.commit();
  }
  fs::resize_file(path, fs::file_size(path) - 100000);
  try {
    VolumeStore store(path);
    FAIL() << "a truncated file opened";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("t.h5"), std::string::npos) << e.what();
  }
  const auto foreign = dir_ / "foreign.h5";
  const hid_t file = H5Fcreate(foreign.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(file);
  try {
    VolumeStore store(foreign);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no 'format' attribute"), std::string::npos) << e.what();
  }
  EXPECT_THROW(VolumeStore(dir_ / "missing.h5"), InputError);
}

// Direct chunk reads (chunk_reader.h) against HDF5's own: every layout, type and cache setting
// gives the same regions, including edge chunks, 4D series and uint16.
TEST_F(VolumeStoreTest, RegionsReadTheSameThroughEveryLayoutAndCache) {
  Volume ct4d;
  ct4d.type = VoxelType::kInt16;
  ct4d.voxels = at::randint(-1024, 3000, {3, 21, 34, 27}, at::kShort);
  ct4d.frame_times_s = {0.0, 1.5, 3.0};
  Volume mr;
  mr.type = VoxelType::kUInt16;
  mr.voxels = at::randint(0, 65536, {21, 34, 27}, at::kInt);
  Volume f;
  f.type = VoxelType::kFloat32;
  f.voxels = at::randn({21, 34, 27});
  const StorageOptions layouts[] = {{{0, 0, 0}, 0, true},  {{8, 16, 10}, 0, true}, {{8, 16, 10}, 3, true},
                                    {{7, 9, 11}, 5, false}, {{8, 16, 10}, 0, true, true}, {{7, 9, 11}, 0, false, true}};
  int n = 0;
  for (const auto& layout : layouts) {
    const auto path = dir_ / ("l" + std::to_string(n++) + ".h5");
    {
      VolumeWriter writer(path, layout);
      writer.add_series("s", "perfusion", ct4d, "test");
      writer.add_series("s", "mr", mr, "test");
      writer.add_series("s", "f", f, "test");
      writer.commit();
    }
    for (const std::int64_t cache : {std::int64_t{0}, std::int64_t{1} << 20, std::int64_t{64} << 20, std::int64_t{-1}}) {
      ReadOptions options;
      options.chunk_cache_bytes = std::max<std::int64_t>(cache, 0);
      options.direct_chunk_reads = cache >= 0;  // -1: the same through H5Dread (HDF5's own filters)
      const VolumeStore store(path, options);
      if (layout.lz4) {
        EXPECT_EQ(store.study("s").find_series("mr")->compression, layout.shuffle ? "shuffle+lz4" : "lz4");
      }
      for (int repeat = 0; repeat < 2; ++repeat) {  // the second pass hits the cache
        const std::array<std::int64_t, 3> start{3, 5, 9}, size{15, 29, 18};
        const auto box = [&](const at::Tensor& t) {
          return t.narrow(-3, start[0], size[0]).narrow(-2, start[1], size[1]).narrow(-1, start[2], size[2]);
        };
        EXPECT_TRUE(at::equal(store.read_series_region("s", "perfusion", start, size), box(ct4d.voxels)));
        EXPECT_TRUE(at::equal(store.read_series_region("s", "mr", start, size), box(mr.voxels)));
        EXPECT_TRUE(at::equal(store.read_series_region("s", "f", start, size), box(f.voxels)));
        EXPECT_TRUE(at::equal(store.read_series("s", "mr").voxels, mr.voxels));
        // Some frames of the box, as a Volume: the box's geometry and those frames' times.
        const Volume part = store.read_series_part("s", "perfusion", start, size, 1, 2);
        EXPECT_TRUE(at::equal(part.voxels, box(ct4d.voxels).narrow(0, 1, 2)));
        EXPECT_EQ(part.frame_times_s, (std::vector<double>{1.5, 3.0}));
        EXPECT_EQ(part.geometry.origin, crop(ct4d, {start, size}).geometry.origin);
        EXPECT_TRUE(at::equal(store.read_series_part("s", "perfusion", start, size, 2, -1).voxels,
                              box(ct4d.voxels).narrow(0, 2, 1)));
        EXPECT_TRUE(at::equal(store.read_series_part("s", "mr", start, size, 0, 1).voxels, box(mr.voxels)));
        EXPECT_THROW(store.read_series_part("s", "perfusion", start, size, 2, 2), InputError);
        EXPECT_THROW(store.read_series_part("s", "mr", start, size, 1, 1), InputError);
        // The last voxel: a corner of an edge chunk.
        EXPECT_TRUE(at::equal(store.read_series_region("s", "f", {20, 33, 26}, {1, 1, 1}),
                              f.voxels.narrow(0, 20, 1).narrow(1, 33, 1).narrow(2, 26, 1)));
      }
    }
  }
}

// A chunked dataset with a filter the direct reader does not undo (Fletcher-32 checksums) is
// read through HDF5 and still gives the right voxels.
TEST_F(VolumeStoreTest, OtherFiltersFallBackToHdf5) {
  const auto path = dir_ / "fletcher.h5";
  {
    VolumeWriter writer(path, StorageOptions{{4, 4, 4}, 0, true});
    Volume v = ct(6, 7, 8);
    writer.add_series("s", "ct", v, "test");
    writer.commit();
  }
  // Rewrite the dataset with a checksum filter, as another tool might.
  const at::Tensor values = VolumeStore(path).read_series("s", "ct").voxels;
  {
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(file, "/studies/s/series/ct/image", H5P_DEFAULT);
    const hsize_t dims[3] = {6, 7, 8}, chunk[3] = {4, 4, 4};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_fletcher32(dcpl);
    const hid_t dataset = H5Dcreate2(file, "/studies/s/series/ct/image", H5T_STD_I16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dwrite(dataset, H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data_ptr());
    H5Dclose(dataset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(file);
  }
  const VolumeStore store(path);
  EXPECT_TRUE(at::equal(store.read_series_region("s", "ct", {1, 2, 3}, {5, 5, 5}),
                        values.narrow(0, 1, 5).narrow(1, 2, 5).narrow(2, 3, 5)));
}

// ---------------------------------------------------------------------------------------------
// Damaged files: each is an error naming the file (and the object where HDF5 can tell), never an
// empty dataset or garbage. The damage is put where the file format says the structure is.

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void overwrite(const fs::path& path, std::uint64_t offset, const std::string& bytes) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(file.good()) << path;
}

std::uint64_t little_endian(const std::string& bytes, std::uint64_t at, int size) {
  std::uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes.at(at + static_cast<std::uint64_t>(i)));
  return value;
}

/// Addresses of the v1 B-tree and the local heap of an old-style group (what HDF5 1.10 writes by
/// default), from the symbol-table message (type 0x0011) of its version-1 object header, which
/// H5Oget_info locates (HDF5 file format specification, sections III.A.1, III.D, IV.A.1.a, IV.A.2.r).
std::pair<std::uint64_t, std::uint64_t> symbol_table_of(const fs::path& path, const char* group) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  H5O_info_t info{};
  EXPECT_GE(H5Oget_info_by_name2(file, group, &info, H5O_INFO_BASIC, H5P_DEFAULT), 0);
  H5Fclose(file);
  const std::string bytes = file_bytes(path);
  EXPECT_EQ(bytes.at(info.addr), 1) << "expected a version-1 object header for " << group;
  const std::uint64_t messages = little_endian(bytes, info.addr + 2, 2);
  std::uint64_t at = info.addr + 16;  // 12 bytes of prefix, padded to 8
  for (std::uint64_t m = 0; m < messages && at + 8 <= bytes.size(); ++m) {
    const std::uint64_t type = little_endian(bytes, at, 2), size = little_endian(bytes, at + 2, 2);
    if (type == 0x11) return {little_endian(bytes, at + 8, 8), little_endian(bytes, at + 16, 8)};
    at += 8 + size;
  }
  ADD_FAILURE() << "no symbol-table message in the object header of " << group;
  return {0, 0};
}

/// A chunked, deflated dataset with a series "ct" (chunks of 4x8x8), a series "mr" and a label map.
Volume write_damage_subject(const fs::path& path) {
  const Volume image = ct(8, 16, 16);
  Volume mr = image;
  mr.type = VoxelType::kFloat32;
  mr.voxels = at::rand({8, 16, 16});
  VolumeWriter writer(path, StorageOptions{{4, 8, 8}, 4, true});
  writer.add_series("s", "ct", image, "x");
  writer.add_series("s", "mr", mr, "x");
  writer.add_label("s", "organs", "ct", labels_for(image), "x");
  writer.commit();
  return image;
}

TEST_F(VolumeStoreTest, ADamagedSuperblockIsAnErrorNamingTheFile) {
  const auto path = dir_ / "super.h5";
  write_damage_subject(path);
  const std::string bytes = file_bytes(path);
  ASSERT_EQ(bytes.substr(0, 8), std::string("\x89HDF\r\n\x1a\n", 8));  // the signature, at 0 without a user block
  overwrite(path, 8, std::string(8, '\x7f'));  // superblock version, sizes of offsets and lengths
  try {
    VolumeStore store(path);
    FAIL() << "a file with a damaged superblock opened";
  } catch (const InputError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find(path.string() + ": not a readable HDF5 file"), std::string::npos) << text;
    EXPECT_NE(text.find("superblock"), std::string::npos) << text;  // HDF5's own words
    EXPECT_NE(text.find("#0 H5Fopen"), std::string::npos) << text;  // and its error stack
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  }
}

TEST_F(VolumeStoreTest, ADamagedGroupBTreeOrHeapIsAnErrorNamingFileAndGroup) {
  // The study's B-tree indexes its "series" and "labels": read as absent, the study would be
  // empty. It must be an error instead; so must a damaged heap of link names.
  struct Damage {
    const char* group;
    bool heap;            // else the B-tree
    const char* words;    // what HDF5 says is wrong
  };
  for (const Damage& damage : {Damage{"/studies/s", false, "wrong B-tree signature"},
                               Damage{"/studies/s/series", true, "bad local heap signature"}}) {
    const auto path = dir_ / (damage.heap ? "heap.h5" : "btree.h5");
    write_damage_subject(path);
    const auto [btree, heap] = symbol_table_of(path, damage.group);
    const std::uint64_t at = damage.heap ? heap : btree;
    ASSERT_EQ(file_bytes(path).substr(at, 4), damage.heap ? "HEAP" : "TREE");
    overwrite(path, at, "XXXX");
    const std::string text = open_failure(path);
    EXPECT_EQ(text.rfind("Hdf5Error", 0), 0u) << text;
    EXPECT_NE(text.find(path.string() + ":" + damage.group + "': " + damage.words + " (HDF5 error stack: #0 H5L"),
              std::string::npos) << text;
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  }
}

TEST_F(VolumeStoreTest, ADamagedChunkFailsOnlyTheReadsThatNeedIt) {
  const auto path = dir_ / "chunk.h5";
  const Volume image = write_damage_subject(path);
  {  // flip 16 bytes in the middle of the first chunk of "ct", found through HDF5
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t dataset = H5Dopen2(file, "/studies/s/series/ct/image", H5P_DEFAULT);
    const hid_t space = H5Dget_space(dataset);
    hsize_t offset[3] = {9, 9, 9}, size = 0;
    unsigned mask = 0;
    haddr_t address = HADDR_UNDEF;
    ASSERT_GE(H5Dget_chunk_info(dataset, space, 0, offset, &mask, &address, &size), 0);
    H5Sclose(space);
    H5Dclose(dataset);
    H5Fclose(file);
    ASSERT_EQ(offset[0] + offset[1] + offset[2], 0u);
    ASSERT_GE(size, 32u);
    std::string bytes = file_bytes(path).substr(address + size / 2, 16);
    for (char& c : bytes) c = static_cast<char>(~c);
    overwrite(path, address + size / 2, bytes);
  }
  for (const bool direct : {true, false}) {
    ReadOptions options;
    options.direct_chunk_reads = direct;
    const VolumeStore store(path, options);  // the structure is sound
    try {
      store.read_series("s", "ct");
      FAIL() << "a damaged chunk was read (direct chunk reads: " << direct << ")";
    } catch (const Error& e) {
      const std::string text = e.what();
      EXPECT_EQ(e.kind(), direct ? "InputError" : "Hdf5Error") << text;
      EXPECT_NE(text.find(path.string() + ":/studies/s/series/ct/image"), std::string::npos) << text;
      EXPECT_EQ(text.find('\n'), std::string::npos) << text;
    }
    // Boxes that do not touch the chunk, the other series and the label map still read.
    EXPECT_TRUE(at::equal(store.read_series_region("s", "ct", {4, 0, 0}, {4, 16, 16}), image.voxels.narrow(0, 4, 4)));
    EXPECT_TRUE(at::equal(store.read_series_region("s", "ct", {0, 8, 0}, {4, 8, 16}),
                          image.voxels.narrow(0, 0, 4).narrow(1, 8, 8)));
    EXPECT_EQ(store.read_series("s", "mr").voxels.size(0), 8);
    EXPECT_EQ(store.read_label("s", "organs").voxels.size(0), 8);
  }
}

// Killed writers leave temporaries that remove_leftover_temporaries recognises and removes; the
// files already there stay whole.
TEST_F(VolumeStoreTest, KilledWritersLeaveRecognisedLeftovers) {
  GTEST_FLAG_SET(death_test_style, "fast");
  const auto part = dir_ / "part.h5";
  write_damage_subject(part);
  EXPECT_EXIT(
      {
        VolumeWriter writer(dir_ / "killed.h5");
        writer.add_series("s", "ct", ct(8, 16, 16), "x");
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        crash_when_a_file_passes(4096);
        merge_volume_files({part}, dir_ / "merged.h5", {});
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGXFSZ), "");
  EXPECT_EXIT(
      {
        crash_when_a_file_passes(0);
        write_shard_index(dir_ / "index.h5", {"part.h5"}, {});
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGXFSZ), "");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 4u) << ::testing::PrintToString(names);
  EXPECT_EQ(names[0].rfind(".index.h5.tmp.", 0), 0u) << names[0];
  EXPECT_EQ(names[1].rfind(".killed.h5.tmp.", 0), 0u) << names[1];
  EXPECT_EQ(names[2].rfind(".merged.h5.tmp.", 0), 0u) << names[2];
  EXPECT_EQ(names[3], "part.h5");
  const auto removed = remove_leftover_temporaries(dir_);
  EXPECT_EQ(removed.size(), 3u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
  EXPECT_EQ(VolumeStore(part).studies().size(), 1u);
}

}  // namespace
}  // namespace vitruvian::data
