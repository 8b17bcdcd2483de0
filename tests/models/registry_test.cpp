// The model card's JSON: a full card survives card_to_json and card_from_json, the training crop
// rule included; a bad `crop` field is one InputError naming model.json and the field; a card
// written before the field existed reads as an unknown crop.
#include "models/registry.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

ModelCard sample_card() {
  ModelCard card;
  card.model.name = "resenc_unet";
  card.model.stages = 3;
  card.model.strides = {1, 2, 2, 2, 2, 2};
  card.inputs = {{"t1_pre", Normalization::kZscore}, {"portal", Normalization::kCt, -100, 300, 50.25, 80.5}};
  card.classes = {{"background", "liver", "spleen"}, {{0}, {29}, {33, 34}}};
  card.patch = {8, 16, 16};
  card.dataset = "train.h5";
  card.label_map = "organs";
  card.spacing = {0.8, 0.8, 2.5};
  card.step = 120;
  return card;
}

void expect_same(const ModelCard& a, const ModelCard& b) {
  EXPECT_EQ(a.model.name, b.model.name);
  EXPECT_EQ(a.model.strides, b.model.strides);
  EXPECT_EQ(a.channel_names(), b.channel_names());
  EXPECT_EQ(a.classes.names, b.classes.names);
  EXPECT_EQ(a.classes.label_ids, b.classes.label_ids);
  EXPECT_EQ(a.patch, b.patch);
  EXPECT_EQ(a.dataset, b.dataset);
  EXPECT_EQ(a.label_map, b.label_map);
  EXPECT_EQ(a.spacing, b.spacing);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.crop, b.crop);
}

TEST(ModelCard, CropRuleRoundTrips) {
  for (const CropRule& crop : std::vector<CropRule>{{"body", 3.2}, {"body", 0}, {"none", 0}, {"", 0}}) {
    ModelCard card = sample_card();
    card.crop = crop;
    const std::string text = card_to_json(card);
    const ModelCard back = card_from_json(text, "model.json");
    expect_same(back, card);
    EXPECT_EQ(card_to_json(back), text);
    const nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(j.contains("crop"), crop.known()) << text;
    if (crop.rule == "body") {
      EXPECT_DOUBLE_EQ(j.at("crop").at("margin_mm").get<double>(), crop.margin_mm);
    }
    if (crop.rule == "none") {
      EXPECT_EQ(j.at("crop"), (nlohmann::json{{"rule", "none"}}));
    }
  }
}

TEST(ModelCard, OlderCardWithoutCropReadsAsUnknown) {
  nlohmann::json j = nlohmann::json::parse(card_to_json(sample_card()));
  ASSERT_FALSE(j.contains("crop"));
  const ModelCard card = card_from_json(j.dump(), "model.json");
  EXPECT_FALSE(card.crop.known());
  EXPECT_EQ(card.crop.margin_mm, 0);
}

TEST(ModelCard, BadCropIsOneLineNamingFileAndField) {
  ModelCard card = sample_card();
  card.crop = {"body", 5};
  const nlohmann::json good = nlohmann::json::parse(card_to_json(card));
  const std::vector<nlohmann::json> bad = {
      "body",                                                     // not an object
      nlohmann::json::object(),                                   // no rule
      {{"rule", "tight"}},                                        // an unknown rule
      {{"rule", "body"}},                                         // body without its margin
      {{"rule", "body"}, {"margin_mm", -2}},                      // a negative margin
      {{"rule", "body"}, {"margin_mm", 900}},                     // beyond 500 mm
      {{"rule", "body"}, {"margin_mm", "5"}},                     // a margin as text
      {{"rule", "none"}, {"margin_mm", 5}},                       // none with a margin
      {{"rule", "body"}, {"margin_mm", 5}, {"threshold", -500}},  // an unknown key
  };
  for (const auto& crop : bad) {
    nlohmann::json j = good;
    j["crop"] = crop;
    try {
      card_from_json(j.dump(2), "run/model/model.json");
      ADD_FAILURE() << "a card with crop " << crop.dump() << " loaded";
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("run/model/model.json: crop "), std::string::npos) << what;
      EXPECT_NE(what.find("expected {\"rule\": \"body\""), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace vitruvian::models
