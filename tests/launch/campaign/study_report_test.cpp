// The report builder on a synthetic study whose figures are known by construction: volumes,
// boxes, centroids and intensities per structure, lesions, Dice against a truth map with grouped
// label ids, the Agatston score of one calcified block, and the notes; and the pipeline's rule for
// a study that no route could run.
#include "launch/campaign/study_report.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

#include "core/errors.h"
#include "launch/campaign/ledger.h"
#include "launch/campaign/study_pipeline.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian::campaign {
namespace {

using json = nlohmann::json;

/// A 20 × 30 × 40 study at 2 × 1 × 1 mm (x, y, z... as spacing [x, y, z] = [1, 1, 2]) with a CT
/// series and a truth label map holding ids 5 (organ) and 6, 7 (two parts of a second organ).
class StudyReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    geometry_.spacing = {1.0, 1.0, 2.0};
    geometry_.origin = {-10.0, 20.0, 5.0};
    ct_.voxels = at::full({20, 30, 40}, -100, at::kShort);
    ct_.type = data::VoxelType::kInt16;
    ct_.geometry = geometry_;
    ct_.modality = "CT";
    truth_.voxels = at::zeros({20, 30, 40}, at::kByte);
    truth_.type = data::VoxelType::kUInt8;
    truth_.geometry = geometry_;
    truth_.voxels.slice(0, 2, 6).slice(1, 3, 13).slice(2, 4, 14).fill_(5);   // organ: 4 x 10 x 10
    truth_.voxels.slice(0, 10, 12).slice(1, 0, 5).slice(2, 0, 5).fill_(6);   // second organ, part 6
    truth_.voxels.slice(0, 14, 16).slice(1, 20, 25).slice(2, 30, 35).fill_(7);  // and part 7, apart
    data::StudyInfo info;
    info.id = "s1";
    info.series = {series_info("ct", ct_)};
    data::LabelInfo label;
    label.name = "truth";
    label.reference_series = "ct";
    label.shape = {20, 30, 40};
    info.labels = {label};
    info.metadata_json = R"({"task": "chest-cardiac"})";
    std::map<std::string, data::Volume> maps{{"truth", truth_}};
    study_ = std::make_unique<Study>(info, "in.h5", data::LabelTable{{5, "organ"}, {6, "part_a"}, {7, "part_b"}},
                                     [this](const std::string&) { return ct_; }, [maps](const std::string& n) { return maps.at(n); });
    route_.name = "organs";
    route_.lesions = {"second"};
  }

  /// A model result: the truth's organ exactly, and the second organ with part 7 missed.
  RouteResult result() const {
    RouteResult r;
    r.route = &route_;
    r.from_model = true;
    r.reference = "ct";
    r.classes = {{"background", "organ", "second"}, {{0}, {5}, {6, 7}}};
    r.truth = "truth";
    r.labels.voxels = at::zeros({20, 30, 40}, at::kByte);
    r.labels.type = data::VoxelType::kUInt8;
    r.labels.geometry = geometry_;
    r.labels.voxels.masked_fill_(truth_.voxels == 5, 1);
    r.labels.voxels.masked_fill_(truth_.voxels == 6, 2);
    r.labels.voxels.slice(0, 18, 20).slice(1, 28, 30).slice(2, 38, 40).fill_(2);  // a second, small component
    r.report = {{"model", "m"}};
    return r;
  }

  data::Geometry geometry_;
  data::Volume ct_, truth_;
  std::unique_ptr<Study> study_;
  RouteConfig route_;
};

TEST_F(StudyReportTest, StructuresHaveTheirVolumesBoxesCentroidsAndIntensities) {
  ct_.voxels.slice(0, 2, 6).slice(1, 3, 13).slice(2, 4, 14).fill_(60);  // the organ at 60 HU
  const json s = StudyReport::structures(*study_, result());
  const json& organ = s["organ"];
  EXPECT_EQ(organ["voxels"], 400);
  EXPECT_DOUBLE_EQ(organ["volume_ml"].get<double>(), 400 * 2.0 / 1000);
  EXPECT_EQ(organ["box_voxels_zyx"]["min"], json({2, 3, 4}));
  EXPECT_EQ(organ["box_voxels_zyx"]["max"], json({5, 12, 13}));
  // Centroid: voxel (z 3.5, y 7.5, x 8.5) → LPS origin + (x·1, y·1, z·2).
  EXPECT_EQ(organ["centroid_lps_mm"], json({-10.0 + 8.5, 20.0 + 7.5, 5.0 + 7.0}));
  EXPECT_EQ(organ["box_lps_mm"]["min"], json({-6.0, 23.0, 9.0}));
  EXPECT_DOUBLE_EQ(organ["intensity"]["ct"]["mean"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(organ["intensity"]["ct"]["std"].get<double>(), 0.0);
  const json& second = s["second"];
  EXPECT_EQ(second["voxels"], 50 + 8);
  ASSERT_TRUE(second.contains("lesions"));
  EXPECT_EQ(second["lesions"]["count"], 2);
  EXPECT_EQ(second["lesions"]["items"][0]["voxels"], 50);
  EXPECT_DOUBLE_EQ(second["lesions"]["items"][0]["volume_ml"].get<double>(), 0.1);
  EXPECT_FALSE(organ.contains("lesions"));
}

TEST_F(StudyReportTest, DiceGroupsTheTruthsLabelIdsAsTheCardSays) {
  const json d = StudyReport::dice(*study_, result());
  EXPECT_DOUBLE_EQ(d["organ"].get<double>(), 1.0);
  // second: prediction 58 voxels (50 right), truth 100 (ids 6 and 7): 2·50 / 158.
  EXPECT_DOUBLE_EQ(d["second"].get<double>(), rounded(100.0 / 158.0, 6));
  RouteResult none = result();
  none.truth = "";
  EXPECT_TRUE(StudyReport::dice(*study_, none).is_null());
  none.truth = "absent";
  EXPECT_TRUE(StudyReport::dice(*study_, none).is_null());
}

TEST_F(StudyReportTest, CalciumNearTheRegionIsScoredAndBoneFarAwayIsNot) {
  ct_.voxels.slice(0, 6, 7).slice(1, 7, 10).slice(2, 7, 10).fill_(350);  // 3 x 3 px on one slice next to the organ
  CalciumConfig calcium;
  calcium.series = "ct";
  calcium.region = "organ";
  calcium.region_margin_mm = 5;
  json notes = json::array();
  const json c = StudyReport(calcium).calcium({result()}, ct_, notes);
  ASSERT_FALSE(c.is_null()) << notes.dump();
  // One lesion of 9 mm² on one slice, peak weight 3 (300-399 HU), slices 2 mm apart: 9 · 3 · 2/3.
  EXPECT_DOUBLE_EQ(c["total"]["agatston"].get<double>(), 18.0);
  EXPECT_EQ(c["total"]["lesions"], 1);
  EXPECT_DOUBLE_EQ(c["unassigned"]["agatston"].get<double>(), 18.0);
  EXPECT_NE(c["region"].get<std::string>().find("within 5 mm of organ"), std::string::npos);
  EXPECT_FALSE(c["estimate"].get<bool>());  // 1 mm pixels, 2 mm slices: Agatston's own grid
  EXPECT_TRUE(c["estimate_why"].is_null());
  // A coarse grid scores too, but as an estimate, with the reason in the report and the notes.
  ct_.geometry.spacing = {1.5, 1.5, 4.0};
  const json coarse = StudyReport(calcium).calcium({result()}, ct_, notes);
  ASSERT_FALSE(coarse.is_null()) << notes.dump();
  EXPECT_TRUE(coarse["estimate"].get<bool>());
  EXPECT_EQ(coarse["estimate_why"], "slices 4 mm apart (Agatston: 3 mm or thinner); pixels 1.5 x 1.5 mm (Agatston: 1 mm or finer)");
  EXPECT_NE(notes.back().get<std::string>().find("calcium: the score is an estimate"), std::string::npos) << notes.dump();
  ct_.geometry.spacing = {1.0, 1.0, 2.0};
  calcium.region = "liver";  // segmented by no route: no score, a note
  EXPECT_TRUE(StudyReport(calcium).calcium({result()}, ct_, notes).is_null());
  EXPECT_NE(notes.back().get<std::string>().find("'liver' were segmented"), std::string::npos) << notes.dump();
}

TEST_F(StudyReportTest, TheReportHoldsTheStudyRoutesNotesAndTimings) {
  std::vector<RouteResult> results{result()};
  const json report = StudyReport(CalciumConfig{}).build(*study_, results, json::array({"route x: skipped"}), "fp");
  EXPECT_EQ(report["study"], "s1");
  EXPECT_EQ(report["input"], "in.h5");
  EXPECT_EQ(report["task"], "chest-cardiac");
  EXPECT_EQ(report["campaign_fingerprint"], "fp");
  EXPECT_EQ(report["series"]["ct"]["shape"], json({20, 30, 40}));
  EXPECT_EQ(report["routes"]["organs"]["model"], "m");
  EXPECT_EQ(report["routes"]["organs"]["truth"], "truth");
  EXPECT_TRUE(report["routes"]["organs"]["structures"].contains("organ"));
  EXPECT_EQ(report["notes"], json::array({"route x: skipped"}));
  EXPECT_FALSE(report.contains("calcium"));
  EXPECT_TRUE(report["timing"].contains("measure_s"));
  const json empty = StudyReport(CalciumConfig{}).build(*study_, {}, json::array(), "fp");
  EXPECT_EQ(empty["notes"][0], "no route applies to this study (its task matches none of the routes')");
}

TEST_F(StudyReportTest, ALesionListNamingAnUnknownClassIsAConfigError) {
  RouteResult r = result();
  route_.lesions = {"spleen"};
  EXPECT_THROW(StudyReport::structures(*study_, r), ConfigError);
}

/// Routes measuring label maps (real LabelRoutes) through the pipeline: a study on which routes
/// were meant to run and none could fails with their reasons, nothing committed; one that
/// another route ran is done with the note; one whose task no route takes is done, as before.
TEST_F(StudyReportTest, AStudyNoApplicableRouteCouldRunFailsWithTheRoutesReasons) {
  testing::ScratchDir scratch("pipeline");
  const auto run = [&](const std::string& out, const std::vector<RouteConfig>& configs) {
    std::vector<std::unique_ptr<Route>> routes;
    for (const RouteConfig& c : configs) routes.push_back(std::make_unique<LabelRoute>(c));
    const Ledger ledger(scratch.path() / out);
    ledger.prepare(false, [](const std::string&) { return true; });
    std::vector<std::unique_ptr<Sink>> sinks;
    sinks.push_back(std::make_unique<ReportSink>(0));
    StudyPipeline(std::move(routes), StudyReport(CalciumConfig{}), std::move(sinks), ledger, "fp").process(*study_);
    return ledger.report("s1");
  };
  RouteConfig missing, present, elsewhere;
  missing.name = "a", missing.labels = "missing";
  present.name = "b", present.labels = "truth";
  elsewhere.name = "c", elsewhere.labels = "truth", elsewhere.task = "head-neck";
  try {
    run("none", {missing});
    ADD_FAILURE() << "the study was done with no route run";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("study s1: no route could run: route a: the study has no label map 'missing'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(scratch.path() / "none" / "studies" / "s1"));
  const json one = run("one", {missing, present});
  EXPECT_TRUE(one["routes"].contains("b"));
  EXPECT_EQ(one["notes"], json::array({"route a: the study has no label map 'missing'"}));
  const json other = run("other", {elsewhere});
  EXPECT_EQ(other["notes"][0], "no route applies to this study (its task matches none of the routes')");
}

}  // namespace
}  // namespace vitruvian::campaign
