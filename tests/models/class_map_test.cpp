// Class maps: every label by default, grouped classes, the errors a config can make, the card
// round trip, and the lookup tensor against a plain per-voxel mapping on a random label map.
#include "models/class_map.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

const LabelNames kTable{{0, "background"}, {1, "liver"}, {2, "spleen"}, {5, "kidney_left"}, {6, "kidney_right"}};

/// The error text of `body`, which must throw E.
template <typename E, typename F>
std::string error_of(F body) {
  try {
    body();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

TEST(ClassMap, EveryLabelOfTheTableWhenNoClassesAreGiven) {
  const ClassMap map = ClassMap::from_labels({}, kTable, "set.h5");
  EXPECT_EQ(map.names, (std::vector<std::string>{"background", "liver", "spleen", "kidney_left", "kidney_right"}));
  EXPECT_EQ(map.label_ids, (std::vector<std::vector<std::int64_t>>{{0}, {1}, {2}, {5}, {6}}));
  EXPECT_EQ(map.size(), 5);
}

TEST(ClassMap, GroupedClassesAndUnnamedLabelsAsBackground) {
  const ClassMap map = ClassMap::from_labels({"spleen", "kidneys=kidney_left+kidney_right"}, kTable, "set.h5");
  EXPECT_EQ(map.names, (std::vector<std::string>{"background", "spleen", "kidneys"}));
  EXPECT_EQ(map.label_ids, (std::vector<std::vector<std::int64_t>>{{0}, {2}, {5, 6}}));
  const std::vector<std::int64_t> ids = map.lookup_ids();
  ASSERT_EQ(static_cast<std::int64_t>(ids.size()), ClassMap::kLabelIds);
  EXPECT_EQ(ids[1], 0);  // liver is not learned
  EXPECT_EQ(ids[2], 1);
  EXPECT_EQ(ids[5], 2);
  EXPECT_EQ(ids[6], 2);
  EXPECT_EQ(ids[65535], 0);
}

TEST(ClassMap, ConfigErrorsNameTheKeyAndTheLabels) {
  const std::string unknown = error_of<ConfigError>([] { ClassMap::from_labels({"heart"}, kTable, "set.h5"); });
  EXPECT_NE(unknown.find("data.classes"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("'heart' is not a label of set.h5; its labels are: background, liver, spleen"),
            std::string::npos)
      << unknown;
  const std::string twice = error_of<ConfigError>([] {
    ClassMap::from_labels({"liver", "organs=liver+spleen"}, kTable, "set.h5", "--classes");
  });
  EXPECT_NE(twice.find("--classes"), std::string::npos) << twice;
  EXPECT_NE(twice.find("label id 1 is named by two classes"), std::string::npos) << twice;
  EXPECT_THROW(ClassMap::from_labels({}, LabelNames{{0, "background"}}, "empty.h5"), ConfigError);
}

TEST(ClassMap, FromAModelCardsListsAsTrainingWroteThem) {
  const ClassMap trained = ClassMap::from_labels({"liver", "kidneys=kidney_left+kidney_right"}, kTable, "set.h5");
  const ClassMap loaded = ClassMap::from_lists(trained.names, trained.label_ids, "model.json");
  EXPECT_EQ(loaded.names, trained.names);
  EXPECT_EQ(loaded.label_ids, trained.label_ids);
  EXPECT_EQ(loaded.lookup_ids(), trained.lookup_ids());

  auto ids = trained.label_ids;
  ids.back().push_back(70000);
  EXPECT_NE(error_of<InputError>([&] { ClassMap::from_lists(trained.names, ids, "model.json"); })
                .find("model.json: label id 70000 is outside 0..65535"),
            std::string::npos);
  ids.pop_back();
  EXPECT_THROW(ClassMap::from_lists(trained.names, ids, "model.json"), InputError);
  EXPECT_THROW(ClassMap::from_lists({"background"}, {{0}}, "model.json"), InputError);
}

TEST(ClassMap, LookupTensorMatchesAPlainMappingOfEachVoxel) {
  const ClassMap map = ClassMap::from_labels({"spleen", "kidneys=kidney_left+kidney_right", "liver"}, kTable, "set.h5");
  torch::manual_seed(3);
  const at::Tensor labels = torch::randint(0, 8, {5, 6, 7}, torch::kShort);  // ids 3, 4 and 7 are in no class
  const at::Tensor classes = map.lookup().index({labels.to(at::kLong)});
  ASSERT_EQ(classes.scalar_type(), at::kLong);
  const auto* in = labels.data_ptr<std::int16_t>();
  const auto* out = classes.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < labels.numel(); ++i) {
    std::int64_t expected = 0;
    for (std::size_t k = 1; k < map.label_ids.size(); ++k) {
      for (const auto id : map.label_ids[k]) expected = id == in[i] ? static_cast<std::int64_t>(k) : expected;
    }
    ASSERT_EQ(out[i], expected) << "voxel " << i << " label " << in[i];
  }
}

}  // namespace
}  // namespace vitruvian::models
