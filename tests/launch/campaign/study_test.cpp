// A study's parts of a series: read alone through the source's part reader (an HDF5 dataset
// here), or cut from the whole series where the source has none or the series is loaded; both
// give the same voxels, frame times and geometry, and frames outside the series are refused.
#include "launch/campaign/study.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"
#include "data/preprocess.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::campaign {
namespace {

class StudyPartTest : public data::ScratchTest<19> {};

TEST_F(StudyPartTest, PartsReadAloneEqualPartsCutFromTheWholeSeries) {
  data::Volume ctp;
  ctp.type = data::VoxelType::kInt16;
  ctp.voxels = at::randint(-1024, 3000, {4, 9, 12, 10}, at::kShort);
  ctp.frame_times_s = {0, 1.5, 3, 4.5};
  ctp.modality = "CT";
  ctp.geometry.spacing = {0.5, 0.6, 2.5};
  ctp.geometry.origin = {-10, 20, 30};
  const auto path = dir_ / "ctp.h5";
  {
    data::VolumeWriter writer(path, data::StorageOptions{{4, 5, 6}, 0, true});
    writer.add_series("s1", "perfusion", ctp, "test");
    writer.commit();
  }
  const auto store = std::make_shared<data::VolumeStore>(path);
  const auto open = [&](bool parts) {
    auto study = std::make_unique<Study>(
        store->study("s1"), path.string(), data::LabelTable{},
        [store](const std::string& name) { return store->read_series("s1", name); }, nullptr);
    if (parts) {
      study->set_part_reader([store](const std::string& name, std::int64_t first, std::int64_t count,
                                     const data::Box& box) {
        return store->read_series_part("s1", name, box.start_zyx, box.size_zyx, first, count);
      });
    }
    return study;
  };
  const data::Box box{{2, 3, 1}, {5, 6, 8}};
  const data::Volume expected = data::crop(ctp, box);
  auto alone = open(true), cut = open(false);
  for (Study* study : {alone.get(), cut.get()}) {
    const data::Volume all = study->series_part("perfusion", 0, -1, box);
    EXPECT_TRUE(at::equal(all.voxels, expected.voxels));
    EXPECT_EQ(all.frame_times_s, ctp.frame_times_s);
    EXPECT_EQ(all.geometry.origin, expected.geometry.origin);
    EXPECT_EQ(all.modality, "CT");
    const data::Volume two = study->series_part("perfusion", 1, 2, box);
    EXPECT_TRUE(at::equal(two.voxels, expected.voxels.narrow(0, 1, 2)));
    EXPECT_EQ(two.frame_times_s, (std::vector<double>{1.5, 3}));
    EXPECT_THROW(study->series_part("perfusion", 3, 2, box), InputError);
    EXPECT_THROW(study->series_part("perfusion", 0, 1, {{5, 0, 0}, {5, 1, 1}}), InputError);
    EXPECT_THROW(study->series_part("nothing", 0, 1, box), InputError);
  }
  EXPECT_GT(alone->read_seconds(), 0.0);
  // Once the whole series is loaded, parts are cut from it, not read again.
  alone->series("perfusion");
  const double read = alone->read_seconds();
  EXPECT_TRUE(at::equal(alone->series_part("perfusion", 0, -1, box).voxels, expected.voxels));
  EXPECT_EQ(alone->read_seconds(), read);
}

}  // namespace
}  // namespace vitruvian::campaign
