// The crop rule `preprocess` records with each study and dataset_crop_rule reads back for the
// model card: body with the largest margin in mm, none, or unknown for studies without a record
// or that disagree.
#include "data/dataset_preprocess.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/preprocess.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

class DatasetPreprocessTest : public ScratchTest<7> {
 protected:
  /// Two CT studies of air with a block of tissue, at 2 x 1.5 x 3 mm (x, y, z).
  std::filesystem::path source() {
    const auto path = dir_ / "source.h5";
    VolumeWriter writer(path, StorageOptions{{0, 0, 0}, 0, false});
    for (const std::string id : {"a", "b"}) {
      Volume v;
      v.voxels = at::full({12, 14, 16}, -1000, at::kShort);
      v.voxels.slice(0, 3, 9).slice(1, 4, 10).slice(2, 5, 11).fill_(40);
      v.type = VoxelType::kInt16;
      v.geometry.spacing = {2.0, 1.5, 3.0};
      v.modality = "CT";
      writer.add_series(id, "ct", v, id);
    }
    writer.commit();
    return path;
  }
};

TEST_F(DatasetPreprocessTest, RecordsTheCropRuleWithEachStudy) {
  const VolumeStore input(source());
  EXPECT_FALSE(dataset_crop_rule(input, {"a", "b"}).known());  // not made by preprocess

  DatasetPreprocessOptions options;
  options.channels = {"ct"};
  options.crop_to_body = true;
  options.crop_margin = 2;
  options.spacing = std::array<double, 3>{1.0, 1.5, 2.5};
  preprocess_dataset(input, dir_ / "body.h5", options);
  const VolumeStore body(dir_ / "body.h5");
  const auto meta = nlohmann::json::parse(body.study("a").metadata_json);
  const auto& crop = meta.at("preprocessed").at("crop");
  EXPECT_EQ(crop.at("rule"), "body");
  EXPECT_EQ(crop.at("threshold").get<double>(), kCtBodyThreshold);
  EXPECT_EQ(crop.at("margin_voxels").get<std::int64_t>(), 2);
  EXPECT_EQ(crop.at("margin_mm").get<std::vector<double>>(), (std::vector<double>{2.0, 3.0, 5.0}));  // on the new grid
  EXPECT_EQ(dataset_crop_rule(body, {"a", "b"}), (CropRule{"body", 5.0}));
  EXPECT_FALSE(dataset_crop_rule(body, {}).known());

  options.crop_to_body = false;
  preprocess_dataset(input, dir_ / "whole.h5", options);
  const VolumeStore whole(dir_ / "whole.h5");
  EXPECT_EQ(dataset_crop_rule(whole, {"a", "b"}), (CropRule{"none", 0}));

  // Studies that disagree (or one without a record) give no rule.
  VolumeWriter mixed(dir_ / "mixed.h5", StorageOptions{{0, 0, 0}, 0, false});
  mixed.add_series("a", "ct", body.read_series("a", "ct"), "a");
  mixed.set_study_metadata("a", body.study("a").metadata_json);
  mixed.add_series("b", "ct", whole.read_series("b", "ct"), "b");
  mixed.set_study_metadata("b", whole.study("b").metadata_json);
  mixed.add_series("c", "ct", input.read_series("a", "ct"), "c");
  mixed.commit();
  const VolumeStore m(dir_ / "mixed.h5");
  EXPECT_EQ(dataset_crop_rule(m, {"a"}), (CropRule{"body", 5.0}));
  EXPECT_FALSE(dataset_crop_rule(m, {"a", "b"}).known());
  EXPECT_FALSE(dataset_crop_rule(m, {"a", "c"}).known());
}

}  // namespace
}  // namespace vitruvian::data
