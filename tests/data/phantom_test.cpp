// Phantoms: every label of every kind present with a plausible volume, intensities inside the
// documented ranges, coronaries connected and on the heart surface, recorded nodule and lesion
// counts equal to the label maps, perfusion curves in the right order, the sagittal sinus on the
// midline, the same bytes for any thread count, and the perfusion grid's blocks against their
// truth and the indicator-dilution formula.
#include "data/phantom.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "core/errors.h"
#include "data/preprocess.h"

namespace vitruvian::data {
namespace {

PhantomOptions options_for(PhantomKind kind, std::uint64_t seed, std::int64_t size = 128) {
  PhantomOptions o;
  o.kind = kind;
  o.seed = seed;
  o.shape_zyx = {size, size, size};
  o.perfusion_frames = 12;
  o.threads = 2;
  return o;
}

int id_of(const std::string& name) {
  for (const auto& [id, label] : phantom_label_table(PhantomKind::kMixed)) {
    if (label == name) return id;
  }
  ADD_FAILURE() << "no label " << name;
  return -1;
}

double voxel_ml(const Volume& v) {
  const auto& s = v.geometry.spacing;
  return s[0] * s[1] * s[2] / 1000.0;
}

/// Connected components (26-connectivity) of a boolean [z,y,x] mask: the number of them.
int components(const at::Tensor& mask_in) {
  const at::Tensor mask = mask_in.to(at::kBool).contiguous();
  const std::int64_t Z = mask.size(0), Y = mask.size(1), X = mask.size(2);
  const bool* m = mask.data_ptr<bool>();
  std::vector<char> seen(static_cast<std::size_t>(Z * Y * X), 0);
  int count = 0;
  for (std::int64_t start = 0; start < Z * Y * X; ++start) {
    if (!m[start] || seen[start]) continue;
    ++count;
    std::deque<std::int64_t> queue{start};
    seen[start] = 1;
    while (!queue.empty()) {
      const std::int64_t v = queue.front();
      queue.pop_front();
      const std::int64_t z = v / (Y * X), y = (v / X) % Y, x = v % X;
      for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const std::int64_t nz = z + dz, ny = y + dy, nx = x + dx;
            if (nz < 0 || ny < 0 || nx < 0 || nz >= Z || ny >= Y || nx >= X) continue;
            const std::int64_t n = (nz * Y + ny) * X + nx;
            if (m[n] && !seen[n]) {
              seen[n] = 1;
              queue.push_back(n);
            }
          }
    }
  }
  return count;
}

/// Voxels within `radius` voxels (a cube) of the mask.
at::Tensor dilated(const at::Tensor& mask, int radius) {
  const at::Tensor f = mask.to(at::kFloat).unsqueeze(0).unsqueeze(0);
  return at::max_pool3d(f, {2 * radius + 1, 2 * radius + 1, 2 * radius + 1}, {1, 1, 1}, {radius, radius, radius})
             .squeeze(0)
             .squeeze(0) > 0.5;
}

/// Voxels of `label` whose six face neighbours carry the same label (no partial volume).
at::Tensor core_of(const at::Tensor& labels, int label) {
  const at::Tensor inside = labels == label;
  at::Tensor core = inside.clone();
  for (int axis = 0; axis < 3; ++axis) {
    for (const int shift : {-1, 1}) core = core & at::roll(inside, {shift}, {axis});
  }
  // roll wraps around: drop the border voxels.
  core.select(0, 0).fill_(false), core.select(0, -1).fill_(false);
  core.select(1, 0).fill_(false), core.select(1, -1).fill_(false);
  core.select(2, 0).fill_(false), core.select(2, -1).fill_(false);
  return core;
}

nlohmann::json truth_of(const PhantomStudy& study) { return nlohmann::json::parse(study.metadata_json).at("phantom"); }

// Adult ranges (mL) for the structures with a well-known size; others must merely be present.
const std::map<std::string, std::pair<double, double>> kPlausibleMl = {
    {"lung_left", {1200, 3500}},         {"lung_right", {1200, 3800}},     {"heart_left_ventricle", {70, 220}},
    {"heart_right_ventricle", {60, 220}}, {"heart_left_atrium", {30, 120}},  {"heart_right_atrium", {40, 150}},
    {"heart_myocardium", {90, 250}},     {"aorta_ascending", {10, 80}},    {"brain", {1000, 1700}},
    {"ventricles", {10, 60}},            {"ischemic_core", {1, 60}},        {"ischemic_penumbra", {10, 250}},
    {"liver", {1200, 2200}},             {"spleen", {100, 400}},            {"kidney_left", {100, 260}},
    {"kidney_right", {100, 260}},        {"sacrum", {80, 300}},             {"hip_left", {120, 400}},
    {"hip_right", {120, 400}},           {"femur_left", {80, 400}},         {"femur_right", {80, 400}},
    {"vertebra_L3", {20, 80}},
};

TEST(Phantom, EveryLabelOfEachKindIsPresentWithAPlausibleVolume) {
  for (const PhantomKind kind : phantom_study_kinds()) {
    const auto description = describe_phantom_kind(kind);
    const auto& optional = description.optional_labels;
    std::map<std::string, int> studies_with;
    for (std::uint64_t seed = 0; seed < 4; ++seed) {
      SCOPED_TRACE(phantom_kind_name(kind) + " seed " + std::to_string(seed));
      const PhantomStudy study = make_phantom_study(options_for(kind, seed), 0);
      const at::Tensor counts = at::bincount(study.labels.voxels.flatten().to(at::kLong), {}, 256);
      for (const std::string& label : description.labels) {
        const auto voxels = counts[id_of(label)].item<std::int64_t>();
        studies_with[label] += voxels > 0;
        const bool drawn = std::find(optional.begin(), optional.end(), label) != optional.end();
        if (!drawn) {
          EXPECT_GT(voxels, 0) << label << " is missing";
        }
        if (voxels == 0) continue;
        const double ml = static_cast<double>(voxels) * voxel_ml(study.labels);
        if (auto it = kPlausibleMl.find(label); it != kPlausibleMl.end()) {
          EXPECT_GE(ml, it->second.first) << label;
          EXPECT_LE(ml, it->second.second) << label;
        }
        EXPECT_NEAR(truth_of(study).at("label_volumes_ml").value(label, -1.0), ml, 1e-3) << label;
      }
      // Nothing outside the kind's labels.
      std::int64_t known = counts[0].item<std::int64_t>();
      for (const std::string& label : description.labels) known += counts[id_of(label)].item<std::int64_t>();
      EXPECT_EQ(known, study.labels.voxels.numel());
    }
    // Nodules, lesions and plaques are drawn 0–n times: each shows up in some study.
    for (const std::string& label : optional) EXPECT_GT(studies_with[label], 0) << label << " never drawn";
  }
}

TEST(Phantom, OrganIntensitiesFallInTheirDocumentedRangePerSeries) {
  for (const PhantomKind kind : phantom_study_kinds()) {
    const auto description = describe_phantom_kind(kind);
    PhantomOptions o = options_for(kind, 7);
    o.noise = 0;  // noise-free, so core voxels hold their tissue's drawn value (times the MR bias)
    const PhantomStudy study = make_phantom_study(o, 0);
    for (std::size_t s = 0; s < study.series.size(); ++s) {
      const auto& series = description.series[s];
      at::Tensor image = study.series[s].second.voxels;
      if (image.dim() == 4) image = image.select(0, 0);  // before contrast arrives
      const double low_bias = std::pow(1 - series.bias_amplitude, 3), high_bias = std::pow(1 + series.bias_amplitude, 3);
      for (const std::string& label : description.labels) {
        SCOPED_TRACE(phantom_kind_name(kind) + " " + series.name + " " + label);
        double low = 1e30, high = -1e30;
        for (const auto& tissue : description.tissues) {
          if (tissue.label != label) continue;
          low = std::min(low, tissue.ranges[s].first);
          high = std::max(high, tissue.ranges[s].second);
        }
        const at::Tensor core = core_of(study.labels.voxels, id_of(label));
        if (core.sum().item<std::int64_t>() < 5) continue;  // thinner than three voxels here
        const double median = image.index({core}).to(at::kFloat).median().item<double>();
        EXPECT_GE(median, low * (low >= 0 ? low_bias : high_bias) - 1);
        EXPECT_LE(median, high * (high >= 0 ? high_bias : low_bias) + 1);
      }
    }
  }
}

TEST(Phantom, NoiseMatchesTheDocumentedLevel) {
  PhantomOptions centred = options_for(PhantomKind::kChestCardiac, 3);
  centred.framing = PhantomFraming::kCentred;  // label 0 is air alone (no table)
  const PhantomStudy study = make_phantom_study(centred, 0);
  const auto description = describe_phantom_kind(PhantomKind::kChestCardiac);
  const at::Tensor air = core_of(study.labels.voxels, 0);
  for (std::size_t s = 0; s < study.series.size(); ++s) {
    const at::Tensor values = study.series[s].second.voxels.index({air}).to(at::kDouble);
    ASSERT_GT(values.numel(), 10000);
    EXPECT_NEAR(values.mean().item<double>(), -1000, 1.0);
    EXPECT_NEAR(values.std().item<double>(), description.series[s].noise_sigma, 0.05 * description.series[s].noise_sigma);
  }
  // MR: Rician noise in the air is Rayleigh, mean sigma * sqrt(pi / 2).
  centred.kind = PhantomKind::kAbdomenMr;
  const PhantomStudy mr = make_phantom_study(centred, 0);
  const at::Tensor background = core_of(mr.labels.voxels, 0);
  const double mean = mr.series[0].second.voxels.index({background}).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(mean, 20 * std::sqrt(3.14159265 / 2), 1.5);
}

TEST(Phantom, CoronariesAreConnectedAndLieOnTheHeartSurface) {
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    PhantomOptions o = options_for(PhantomKind::kChestCardiac, seed, 160);
    if (seed == 2) {  // anisotropic, as a CTA reconstructed with thick slices
      o.shape_zyx = {112, 288, 288};
      o.spacing_xyz = {0.9, 0.9, 2.5};
    }
    const PhantomStudy study = make_phantom_study(o, 1);
    // Only the box around the heart and the coronaries (with a margin) is examined.
    const at::Tensor& all = study.labels.voxels;
    const at::Tensor chambers = (all >= id_of("heart_left_ventricle")) & (all <= id_of("heart_myocardium"));
    const at::Tensor cardiac = chambers | ((all >= id_of("coronary_lad")) & (all <= id_of("coronary_rca")));
    const at::Tensor where = cardiac.nonzero();
    at::Tensor labels = study.labels.voxels;
    for (int axis = 0; axis < 3; ++axis) {
      const auto low = std::max<std::int64_t>(0, where.select(1, axis).min().item<std::int64_t>() - 8);
      const auto high = std::min<std::int64_t>(labels.size(axis), where.select(1, axis).max().item<std::int64_t>() + 9);
      labels = labels.slice(axis, low, high);
    }
    labels = labels.contiguous();
    at::Tensor heart = at::zeros_like(labels, at::kBool);
    for (const char* chamber : {"heart_left_ventricle", "heart_right_ventricle", "heart_left_atrium", "heart_right_atrium",
                                "heart_myocardium"}) {
      heart = heart | (labels == id_of(chamber));
    }
    const at::Tensor plaque = labels == id_of("coronary_calcification");
    const at::Tensor near_heart = dilated(heart, 2);
    for (const char* artery : {"coronary_lad", "coronary_lcx", "coronary_rca"}) {
      SCOPED_TRACE(artery);
      const at::Tensor vessel = labels == id_of(artery);
      const auto voxels = vessel.sum().item<std::int64_t>();
      ASSERT_GT(voxels, 20);
      // One piece (calcified plaques sit in the vessel wall and count as part of it).
      EXPECT_EQ(components(vessel | (plaque & dilated(vessel, 3))), 1);
      // On the surface: nearly all of it within two voxels of the heart, and most of it
      // touching tissue outside the heart (not buried in the myocardium).
      const double near = (vessel & near_heart).sum().item<double>() / static_cast<double>(voxels);
      EXPECT_GE(near, 0.9);
      const at::Tensor outside = ~(heart | vessel | plaque);
      const double exposed = (vessel & dilated(outside, 1)).sum().item<double>() / static_cast<double>(voxels);
      EXPECT_GE(exposed, 0.5);
    }
  }
}

TEST(Phantom, AtTheQuickstartsSpacingCoronariesStayThinAndPlaquesKeepTheirSize) {
  // 3.5 mm, framed as scans (the README's main job): coronaries at the grid's connectivity floor
  // (about 1.5 voxels), each plaque at its drawn 1.5–4 mm holding the voxel at its centre, bright
  // there in the non-contrast CT.
  int plaques_seen = 0;
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    PhantomOptions o = options_for(PhantomKind::kChestCardiac, seed, 128);
    o.spacing_xyz = {3.5, 3.5, 3.5};
    const PhantomStudy study = make_phantom_study(o, 0);
    const nlohmann::json truth = truth_of(study);
    const at::Tensor& labels = study.labels.voxels;
    const auto& g = study.labels.geometry;
    for (const char* artery : {"coronary_lad", "coronary_lcx", "coronary_rca"}) {
      SCOPED_TRACE(artery);
      const nlohmann::json& c = truth.at("coronaries").at(std::string(artery).substr(9));
      const double voxels = (labels == id_of(artery)).sum().item<double>();
      const double diameter = 2 * std::sqrt(voxels * 3.5 * 3.5 * 3.5 / (3.14159265 * c.at("length_mm").get<double>()));
      EXPECT_GT(diameter, 3.5);
      EXPECT_LT(diameter, 6.5);
      EXPECT_LT(c.at("diameter_mm")[0].get<double>(), 6.5);
      const at::Tensor vessel = labels == id_of(artery);
      const at::Tensor plaque = labels == id_of("coronary_calcification");
      EXPECT_EQ(components(vessel | (plaque & dilated(vessel, 2))), 1);  // still one piece
    }
    const at::Tensor ct = study.series.front().second.voxels;
    const auto plaques = truth.at("plaques");
    for (const auto& p : plaques) {
      const double d = p.at("diameter_mm").get<double>();
      EXPECT_GE(d, 1.5 - 1e-9);
      EXPECT_LE(d, 4.0 + 1e-9);
      std::array<std::int64_t, 3> at{};  // x, y, z
      for (int a = 0; a < 3; ++a) {
        at[a] = std::llround((p.at("centre_lps_mm")[a].get<double>() - g.origin[a]) / g.spacing[a]);
      }
      EXPECT_EQ(labels[at[2]][at[1]][at[0]].item<int>(), id_of("coronary_calcification"));
      EXPECT_GE(ct[at[2]][at[1]][at[0]].item<double>(), 200);
    }
    // One calcified component per plaque, fewer where plaques touch.
    const int found = components(labels == id_of("coronary_calcification"));
    EXPECT_LE(found, static_cast<int>(plaques.size()));
    EXPECT_EQ(found > 0, !plaques.empty());
    plaques_seen += static_cast<int>(plaques.size());
  }
  EXPECT_GT(plaques_seen, 0);
}

TEST(Phantom, RecordedNoduleAndLesionCountsMatchTheLabelMaps) {
  int nodules_seen = 0, lesions_seen = 0;
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const PhantomStudy chest = make_phantom_study(options_for(PhantomKind::kChestCardiac, seed, 96), 0);
    const auto nodules = truth_of(chest).at("nodules");
    EXPECT_EQ(components(chest.labels.voxels == id_of("lung_nodule")), static_cast<int>(nodules.size()));
    EXPECT_LE(nodules.size(), 5u);
    for (const auto& n : nodules) {
      EXPECT_GE(n.at("diameter_mm").get<double>(), 3.0);
      EXPECT_LE(n.at("diameter_mm").get<double>(), 30.0 + 1e-9);
    }
    nodules_seen += static_cast<int>(nodules.size());
    const PhantomStudy abdomen = make_phantom_study(options_for(PhantomKind::kAbdomenMr, seed, 96), 0);
    const auto lesions = truth_of(abdomen).at("lesions");
    EXPECT_EQ(components(abdomen.labels.voxels == id_of("liver_lesion")), static_cast<int>(lesions.size()));
    EXPECT_LE(lesions.size(), 4u);
    lesions_seen += static_cast<int>(lesions.size());
  }
  EXPECT_GT(nodules_seen, 0);
  EXPECT_GT(lesions_seen, 0);
}

TEST(Phantom, PerfusionFollowsTheBolusWithADelayedIschemicCore) {
  PhantomOptions o = options_for(PhantomKind::kHeadNeck, 4, 96);
  o.perfusion_frames = 0;  // the kind's default, 30
  o.noise = 0;
  const PhantomStudy study = make_phantom_study(o, 0);
  const Volume& perfusion = study.series[1].second;
  ASSERT_EQ(perfusion.voxels.dim(), 4);
  ASSERT_EQ(perfusion.frame_times_s.size(), 30u);
  const double interval = perfusion.frame_times_s[1] - perfusion.frame_times_s[0];
  EXPECT_GE(interval, 1.5);
  EXPECT_LE(interval, 2.0);
  auto curve_of = [&](const std::string& label) {
    const at::Tensor core = core_of(study.labels.voxels, id_of(label));
    EXPECT_GT(core.sum().item<std::int64_t>(), 0) << label;
    std::vector<double> curve;
    for (std::int64_t t = 0; t < perfusion.voxels.size(0); ++t) {
      curve.push_back(perfusion.voxels.select(0, t).index({core}).to(at::kDouble).mean().item<double>());
    }
    return curve;
  };
  auto peak = [](const std::vector<double>& c) { return std::max_element(c.begin(), c.end()) - c.begin(); };
  const auto brain = curve_of("brain"), penumbra = curve_of("ischemic_penumbra"), core = curve_of("ischemic_core");
  const auto artery = curve_of("carotid_arteries"), sinus = curve_of("dural_sinus");
  EXPECT_GT(artery[peak(artery)] - artery[0], 150);  // the bolus reaches the carotids
  EXPECT_NEAR(artery[1], artery[0], 1e-9);           // after at least two frames before contrast
  EXPECT_GT(brain[peak(brain)] - brain[0], 10);
  EXPECT_LT(core[peak(core)] - core[0], 0.5 * (brain[peak(brain)] - brain[0]));
  EXPECT_LT(peak(artery), peak(brain) + 1);
  EXPECT_GT(peak(penumbra), peak(brain));  // delayed time to peak
  EXPECT_GE(peak(core), peak(penumbra));   // the core peaks last
  EXPECT_GT(peak(sinus), peak(artery));    // the venous output follows the arterial input
  EXPECT_GT(sinus[peak(sinus)] - sinus[0], 100);

  const auto truth = truth_of(study).at("perfusion");
  const auto flows = truth.at("tissue");
  auto value = [&](const char* tissue, const char* key) { return flows.at(tissue).at(key).get<double>(); };
  EXPECT_GT(value("core", "time_to_peak_s"), value("brain", "time_to_peak_s"));
  EXPECT_GE(value("core", "time_to_peak_s"), value("penumbra", "time_to_peak_s"));
  // Tmax (the delay, for the exponential residue) beyond the 6 s threshold exactly where tissue
  // is hypoperfused; rCBF below 30 % of normal brain exactly in the core.
  EXPECT_LT(value("brain", "tmax_s"), 6);
  EXPECT_GT(value("penumbra", "tmax_s"), 6);
  EXPECT_GT(value("core", "tmax_s"), 6);
  EXPECT_GT(value("penumbra", "cbf_ml_100g_min"), 0.3 * value("brain", "cbf_ml_100g_min"));
  EXPECT_LT(value("core", "cbf_ml_100g_min"), 0.3 * value("brain", "cbf_ml_100g_min"));
  for (const char* tissue : {"brain", "penumbra", "core"}) {
    EXPECT_DOUBLE_EQ(value(tissue, "tmax_s"), value(tissue, "delay_s")) << tissue;
    EXPECT_NEAR(value(tissue, "cbv_ml_100g"), value(tissue, "cbf_ml_100g_min") * value(tissue, "mtt_s") / 60, 1e-9);
    EXPECT_LE(value(tissue, "cbv_sampled_ml_100g"), value(tissue, "cbv_ml_100g") * 1.01) << tissue;
  }
  EXPECT_NEAR(value("brain", "cbv_sampled_ml_100g"), value("brain", "cbv_ml_100g"),
              0.03 * value("brain", "cbv_ml_100g"));
  const auto venous = truth.at("venous_output");
  EXPECT_GT(venous.at("time_to_peak_s").get<double>(), truth.at("arterial_input").at("time_to_peak_s").get<double>());
  EXPECT_EQ(venous.at("label"), "dural_sinus");
  EXPECT_NEAR(truth.at("constants").at("tissue_factor").get<double>(), 1.04 / 0.73, 1e-12);
}

TEST(Phantom, TheSagittalSinusRunsAlongTheMidlineClearOfTheIschemia) {
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const PhantomStudy study = make_phantom_study(options_for(PhantomKind::kHeadNeck, seed, 96), 0);
    const at::Tensor& labels = study.labels.voxels;
    const at::Tensor sinus = labels == id_of("dural_sinus");
    const at::Tensor ischemia = (labels == id_of("ischemic_core")) | (labels == id_of("ischemic_penumbra"));
    ASSERT_GT(sinus.sum().item<std::int64_t>(), 20);
    EXPECT_EQ(components(sinus), 1);
    EXPECT_EQ((dilated(sinus, 1) & ischemia).sum().item<std::int64_t>(), 0);
    // On the midline (the brain's centre left–right), from the front of the brain over its top
    // to the back.
    const at::Tensor s = sinus.nonzero().to(at::kDouble), brain = (labels == id_of("brain")).nonzero().to(at::kDouble);
    const double h = study.labels.geometry.spacing[0];
    EXPECT_NEAR(s.select(1, 2).mean().item<double>() * h, brain.select(1, 2).mean().item<double>() * h, 6.0);
    const double brain_y = (brain.select(1, 1).max() - brain.select(1, 1).min()).item<double>();
    EXPECT_GT((s.select(1, 1).max() - s.select(1, 1).min()).item<double>(), 0.75 * brain_y);
    EXPECT_GE(s.select(1, 0).max().item<double>(), brain.select(1, 0).max().item<double>() - 2);
  }
}

/// `--ischemia wide` draws lesions on both sides of each DEFUSE-3 criterion (the typical range
/// draws every study eligible), and changes nothing but the lesion: the same study drawn with
/// either range has the same labels outside the brain and the lesion, and the same brain and
/// lesion together.
TEST(Phantom, WideIschemiaSpansTheDefuse3Criteria) {
  int large_core = 0, low_ratio = 0, eligible = 0;
  for (std::int64_t index = 0; index < 10; ++index) {
    SCOPED_TRACE("study " + std::to_string(index));
    PhantomOptions o = options_for(PhantomKind::kHeadNeck, 14);
    o.shape_zyx = {40, 80, 80};
    const PhantomStudy typical = make_phantom_study(o, index);
    o.ischemia = PhantomIschemia::kWide;
    const PhantomStudy wide = make_phantom_study(o, index);
    const auto brain_and_lesion = [](const at::Tensor& labels) {
      return (labels == id_of("brain")) | (labels == id_of("ischemic_core")) | (labels == id_of("ischemic_penumbra"));
    };
    const at::Tensor &a = typical.labels.voxels, &b = wide.labels.voxels;
    const at::Tensor head_a = brain_and_lesion(a), head_b = brain_and_lesion(b);
    EXPECT_TRUE(at::equal(head_a, head_b));
    EXPECT_TRUE(at::equal(a.masked_select(head_a.logical_not()), b.masked_select(head_b.logical_not())));
    const nlohmann::json truth = truth_of(wide);
    const nlohmann::json& volumes = truth.at("label_volumes_ml");
    const double core = volumes["ischemic_core"], penumbra = volumes["ischemic_penumbra"];
    ASSERT_GT(core, 0);
    const double ratio = (core + penumbra) / core;
    large_core += core >= 70;
    low_ratio += core < 70 && ratio < 1.8;
    eligible += core < 70 && ratio >= 1.8 && penumbra >= 15;
    EXPECT_LT(truth_of(typical)["label_volumes_ml"]["ischemic_core"].get<double>(), 70);
    EXPECT_EQ(truth.at("ischemia").at("range"), "wide");
  }
  EXPECT_GE(large_core, 2);
  EXPECT_GE(low_ratio, 1);
  EXPECT_GE(eligible, 3);
}

// ---------------------------------------------------------------------------------------------
// perfusion-grid

/// Gamma variate of the truth record's arterial input.
double gamma_variate(const nlohmann::json& aif, double t) {
  const double t0 = aif.at("t0_s"), alpha = aif.at("alpha"), beta = aif.at("beta_s"), peak = aif.at("peak_hu");
  if (t <= t0) return 0;
  const double x = (t - t0) / (alpha * beta);
  return peak * std::pow(x, alpha) * std::exp(alpha * (1 - x));
}

/// ∫ AIF(τ − delay) e^(−(t − τ)/tau) dτ by Simpson's rule on 1000 intervals (a reference,
/// independent of the generator's recursive midpoint rule).
double convolved(const nlohmann::json& aif, double delay, double tau, double t) {
  const double start = aif.at("t0_s").get<double>() + delay;
  if (t <= start) return 0;
  const int n = 1000;
  const double h = (t - start) / n;
  double sum = 0;
  for (int i = 0; i <= n; ++i) {
    const double x = start + i * h;
    const double f = gamma_variate(aif, x - delay) * std::exp(-(t - x) / tau);
    sum += f * (i == 0 || i == n ? 1 : i % 2 == 1 ? 4 : 2);
  }
  return sum * h / 3;
}

PhantomOptions grid_options(std::uint64_t seed) {
  PhantomOptions o;
  o.kind = PhantomKind::kPerfusionGrid;
  o.seed = seed;
  o.threads = 2;
  return o;
}

TEST(PerfusionGrid, BlocksHoldTheirTruthAndFollowTheIndicatorDilutionFormula) {
  PhantomOptions o = grid_options(1);
  o.noise = 0;
  const PhantomStudy study = make_phantom_study(o, 0);
  EXPECT_EQ(study.id, "perfusion_grid_00000");
  EXPECT_EQ(study.label_map, "blocks");
  ASSERT_EQ(study.series.size(), 5u);
  const Volume& perfusion = study.series[0].second;
  EXPECT_EQ(study.series[0].first, "perfusion");
  EXPECT_EQ(perfusion.voxels.sizes(), (std::vector<std::int64_t>{40, 8, 80, 96}));
  EXPECT_EQ(perfusion.type, VoxelType::kInt16);
  EXPECT_DOUBLE_EQ(perfusion.frame_times_s[1], 1.5);
  EXPECT_EQ(perfusion.geometry.spacing, (std::array<double, 3>{2, 2, 5}));
  std::map<std::string, at::Tensor> maps;
  for (std::size_t s = 1; s < study.series.size(); ++s) {
    EXPECT_EQ(study.series[s].second.type, VoxelType::kFloat32);
    EXPECT_TRUE(same_grid(study.series[s].second, perfusion));
    maps[study.series[s].first] = study.series[s].second.voxels;
  }
  const auto truth = truth_of(study);
  const auto aif = truth.at("perfusion").at("arterial_input");
  const double factor = truth.at("perfusion").at("constants").at("tissue_factor");
  const auto& blocks = truth.at("blocks");
  ASSERT_EQ(blocks.size(), 140u);
  const at::Tensor labels = study.labels.voxels;
  std::set<std::tuple<double, double, double>> levels;
  for (const auto& block : blocks) {
    const int label = block.at("label");
    SCOPED_TRACE("block " + std::to_string(label));
    const auto origin = block.at("origin_zyx").get<std::vector<std::int64_t>>();
    const auto size = block.at("size_zyx").get<std::vector<std::int64_t>>();
    using at::indexing::Slice;
    auto box = [&](const at::Tensor& v) {
      return v.index({Slice(origin[0], origin[0] + size[0]), Slice(origin[1], origin[1] + size[1]),
                      Slice(origin[2], origin[2] + size[2])});
    };
    EXPECT_TRUE((box(labels) == label).all().item<bool>());
    EXPECT_EQ((labels == label).sum().item<std::int64_t>(), size[0] * size[1] * size[2]);
    const double cbf = block.at("cbf_ml_100g_min"), cbv = block.at("cbv_ml_100g"), mtt = block.at("mtt_s");
    const double delay = block.at("delay_s");
    levels.insert({cbv, mtt, delay});
    EXPECT_NEAR(cbf, 60 * cbv / mtt, 1e-9);
    EXPECT_DOUBLE_EQ(block.at("tmax_s").get<double>(), delay);
    for (const auto& [name, want] : {std::pair<const char*, double>{"truth_cbf", cbf},
                                     {"truth_cbv", cbv},
                                     {"truth_mtt", mtt},
                                     {"truth_delay", delay}}) {
      EXPECT_TRUE(at::allclose(box(maps[name]), at::full({}, want, at::kFloat), 1e-6, 1e-6)) << name;
    }
    // Every voxel of the block: 35 HU + (ρ/k_H) CBF ∫ AIF(τ − delay) e^(−(t − τ)/MTT) dτ, rounded.
    const at::Tensor voxels =
        perfusion.voxels.index({Slice(), Slice(origin[0], origin[0] + size[0]), Slice(origin[1], origin[1] + size[1]),
                                Slice(origin[2], origin[2] + size[2])});
    for (std::int64_t t = 0; t < 40; ++t) {
      const double want = 35 + factor * cbf / 6000 * convolved(aif, delay, mtt, perfusion.frame_times_s[t]);
      const at::Tensor frame = voxels.select(0, t).to(at::kDouble);
      ASSERT_LE((frame - want).abs().max().item<double>(), 0.5 + 1e-3) << "frame " << t;
    }
    if (mtt <= 6) {  // captured within the 58.5 s acquisition
      EXPECT_NEAR(block.at("cbv_sampled_ml_100g").get<double>(), cbv, 0.02 * cbv);
    }
  }
  EXPECT_EQ(levels.size(), 140u);  // every CBV × MTT × delay once
  EXPECT_EQ((labels > 0).sum().item<std::int64_t>(), 140 * 128);
  for (const auto& [name, map] : maps) EXPECT_EQ(map.index({labels == 0}).abs().max().item<float>(), 0.f) << name;
  EXPECT_NEAR(maps["truth_cbf"].max().item<double>(), 87.5, 0.05);
  EXPECT_NEAR(maps["truth_cbf"].index({labels > 0}).min().item<double>(), 2.5, 1e-5);

  // Artery: 40 HU + AIF; vein: 40 HU + the AIF delayed 5 s and dispersed (exponential of mean
  // 2.5 s, same area); both through every slice. The frame: bone 1000 HU around a 35 HU inside.
  auto at_box = [&](const nlohmann::json& b, std::int64_t t) {
    const auto origin = b.at("origin_zyx").get<std::vector<std::int64_t>>();
    const auto size = b.at("size_zyx").get<std::vector<std::int64_t>>();
    EXPECT_EQ(size[0], 8);
    using at::indexing::Slice;
    return perfusion.voxels.select(0, t).index(
        {Slice(), Slice(origin[1], origin[1] + size[1]), Slice(origin[2], origin[2] + size[2])});
  };
  const auto artery = truth.at("perfusion").at("artery"), vein = truth.at("perfusion").at("venous_output");
  const double dispersion = vein.at("dispersion_mean_s"), venous_delay = vein.at("delay_s");
  double arterial_sum = 0, venous_sum = 0;
  for (std::int64_t t = 0; t < 40; ++t) {
    const double time = perfusion.frame_times_s[t];
    const double a = gamma_variate(aif, time), v = convolved(aif, venous_delay, dispersion, time) / dispersion;
    EXPECT_LE((at_box(artery, t).to(at::kDouble) - (40 + a)).abs().max().item<double>(), 0.5 + 1e-3);
    EXPECT_LE((at_box(vein, t).to(at::kDouble) - (40 + v)).abs().max().item<double>(), 0.5 + 1e-3);
    arterial_sum += a, venous_sum += v;
  }
  EXPECT_NEAR(venous_sum, arterial_sum, 0.01 * arterial_sum);
  EXPECT_LT(vein.at("delay_s").get<double>(), 6.0);
  const at::Tensor first = perfusion.voxels.select(0, 0);
  EXPECT_EQ(first.index({0, 0, 0}).item<int>(), -1000);
  EXPECT_EQ(first.index({0, 3, 40}).item<int>(), 1000);
  EXPECT_EQ(first.index({0, 6, 40}).item<int>(), 35);
}

TEST(PerfusionGrid, SameBytesForAnyThreadCountAndTheDocumentedNoise) {
  PhantomOptions o = grid_options(5);
  o.perfusion_frames = 12;
  o.threads = 1;
  const PhantomStudy one = make_phantom_study(o, 2);
  o.threads = 3;
  const PhantomStudy three = make_phantom_study(o, 2);
  EXPECT_EQ(one.metadata_json, three.metadata_json);
  for (std::size_t s = 0; s < one.series.size(); ++s) {
    EXPECT_TRUE(at::equal(one.series[s].second.voxels, three.series[s].second.voxels)) << one.series[s].first;
  }
  EXPECT_TRUE(at::equal(one.labels.voxels, three.labels.voxels));
  EXPECT_EQ(one.series[0].second.voxels.size(0), 12);
  // Another study: other noise, the same layout and truth.
  const PhantomStudy other = make_phantom_study(o, 3);
  EXPECT_FALSE(at::equal(one.series[0].second.voxels, other.series[0].second.voxels));
  EXPECT_TRUE(at::equal(one.series[1].second.voxels, other.series[1].second.voxels));
  // Gaussian σ 15 HU at --noise 1 for a 1 x 1 x 5 mm voxel: 7.5 HU on the grid's 2 x 2 x 5 mm
  // (the background, 35 HU before and after contrast).
  const at::Tensor background = (one.labels.voxels == 0) & (one.series[0].second.voxels.select(0, 0) > -500) &
                                (one.series[0].second.voxels.select(0, 0) < 500);
  const at::Tensor values = one.series[0].second.voxels.select(0, 0).index({background}).to(at::kDouble);
  ASSERT_GT(values.numel(), 5000);
  EXPECT_NEAR(values.std().item<double>(), 7.5, 0.3);
  const auto description = describe_phantom_kind(PhantomKind::kPerfusionGrid);
  EXPECT_EQ(description.series[0].noise_sigma, 15);
  EXPECT_EQ(description.fixed_shape_zyx, phantom_shape(o, 0));
  EXPECT_EQ(phantom_label_table(PhantomKind::kPerfusionGrid).size(), 140u);
  EXPECT_EQ(phantom_kind_from_name("perfusion-grid", "--kind"), PhantomKind::kPerfusionGrid);
}

TEST(Phantom, SameBytesForAnyThreadCount) {
  for (const PhantomKind kind : {PhantomKind::kHeadNeck, PhantomKind::kChestCardiac}) {
    PhantomOptions o = options_for(kind, 11, 48);
    o.shape_zyx = {40, 52, 48};
    o.threads = 1;
    const PhantomStudy one = make_phantom_study(o, 3);
    o.threads = 3;
    const PhantomStudy three = make_phantom_study(o, 3);
    EXPECT_EQ(one.id, three.id);
    EXPECT_EQ(one.metadata_json, three.metadata_json);
    EXPECT_TRUE(at::equal(one.labels.voxels, three.labels.voxels));
    ASSERT_EQ(one.series.size(), three.series.size());
    for (std::size_t s = 0; s < one.series.size(); ++s) {
      EXPECT_TRUE(at::equal(one.series[s].second.voxels, three.series[s].second.voxels)) << one.series[s].first;
    }
    // A different study index is a different subject.
    const PhantomStudy other = make_phantom_study(o, 4);
    EXPECT_FALSE(at::equal(one.labels.voxels, other.labels.voxels));
  }
}

TEST(Phantom, MixedDatasetsDrawEveryKindAndKeepOneLabelTable) {
  PhantomOptions o;
  o.kind = PhantomKind::kMixed;
  std::map<PhantomKind, int> kinds;
  for (std::int64_t i = 0; i < 40; ++i) ++kinds[phantom_study_kind(o, i)];
  EXPECT_EQ(kinds.size(), 4u);
  const LabelTable all = phantom_label_table(PhantomKind::kMixed);
  for (const PhantomKind kind : phantom_study_kinds()) {
    for (const auto& [id, name] : phantom_label_table(kind)) EXPECT_EQ(all.at(id), name);
  }
}

TEST(Phantom, GeometryFollowsShapeAndSpacing) {
  PhantomOptions o = options_for(PhantomKind::kMsk, 1, 32);
  o.shape_zyx = {24, 32, 40};
  o.spacing_xyz = {10, 9, 0};  // z from the field of view
  o.framing = PhantomFraming::kCentred;
  const PhantomStudy study = make_phantom_study(o, 0);
  const Geometry& g = study.series.front().second.geometry;
  EXPECT_DOUBLE_EQ(g.spacing[0], 10);
  EXPECT_DOUBLE_EQ(g.spacing[1], 9);
  EXPECT_DOUBLE_EQ(g.spacing[2], 480.0 / 24);
  EXPECT_DOUBLE_EQ(g.origin[0], -0.5 * 39 * 10);  // the field of view is centred on the body
  EXPECT_EQ(study.labels.voxels.sizes(), (std::vector<std::int64_t>{24, 32, 40}));
  EXPECT_TRUE(g.matches(study.labels.geometry));
}

TEST(Phantom, ScanFramingDrawsTheFieldOfViewPerStudyAroundTheSameBody) {
  PhantomOptions o = options_for(PhantomKind::kChestCardiac, 11, 64);
  o.noise = 0;
  const auto d = describe_phantom_kind(PhantomKind::kChestCardiac);
  std::set<std::int64_t> widths;
  std::set<std::string> arms;
  int tables_in_view = 0;
  for (std::int64_t i = 0; i < 6; ++i) {
    SCOPED_TRACE(i);
    const PhantomStudy study = make_phantom_study(o, i);
    const Volume& ct = study.series.front().second;
    const auto& h = ct.geometry.spacing;
    // The spacing is the kind's default field of view over --shape; the grid follows the drawn field of view.
    EXPECT_DOUBLE_EQ(h[0], 400.0 / 64);
    EXPECT_DOUBLE_EQ(h[2], 300.0 / 64);
    const auto shape = phantom_shape(o, i);
    EXPECT_EQ(ct.voxels.sizes(), (std::vector<std::int64_t>{shape[0], shape[1], shape[2]}));
    const nlohmann::json framing = truth_of(study).at("framing");
    const double fov_x = framing.at("field_of_view_mm")[0], fov_z = framing.at("field_of_view_mm")[2];
    EXPECT_GE(fov_x, d.fov_x_range_mm[0]);
    EXPECT_LE(fov_x, d.fov_x_range_mm[1]);
    EXPECT_GE(fov_z, d.fov_z_range_mm[0]);
    EXPECT_LE(fov_z, d.fov_z_range_mm[1]);
    EXPECT_NEAR(static_cast<double>(shape[2]) * h[0], fov_x, h[0]);
    EXPECT_NEAR(static_cast<double>(shape[0]) * h[2], fov_z, h[2]);
    widths.insert(shape[2]);
    arms.insert(framing.at("arms").get<std::string>());

    // The table: label 0 voxels above the body threshold (its carbon-fibre shell, partial
    // volume) from the table's top backwards, when the field of view reaches that far.
    const at::Tensor labels = study.labels.voxels;
    const double table_top_y = framing.at("table").at("top")[1];
    const auto top_row = static_cast<std::int64_t>(std::floor((table_top_y - ct.geometry.origin[1]) / h[1]));
    at::Tensor table = (labels == 0) & (ct.voxels > kCtBodyThreshold);
    table.slice(1, 0, std::clamp<std::int64_t>(top_row, 0, shape[1])).fill_(false);
    if (top_row + 2 < shape[1]) {
      EXPECT_GT(table.sum().item<std::int64_t>(), 0);
      ++tables_in_view;
    }

    // The body crop (threshold and largest component) holds every organ and none of the table.
    const Box box = body_box(ct.voxels, body_threshold(ct), 0);
    at::Tensor inside = at::zeros_like(labels, at::kBool);
    inside.slice(0, box.start_zyx[0], box.start_zyx[0] + box.size_zyx[0])
        .slice(1, box.start_zyx[1], box.start_zyx[1] + box.size_zyx[1])
        .slice(2, box.start_zyx[2], box.start_zyx[2] + box.size_zyx[2])
        .fill_(true);
    const at::Tensor organs = labels >= 2;
    EXPECT_EQ((organs & inside).sum().item<std::int64_t>(), organs.sum().item<std::int64_t>());
    EXPECT_LE((table & inside).sum().item<std::int64_t>(), table.sum().item<std::int64_t>() / 100);
  }
  EXPECT_GE(widths.size(), 3u) << "the field of view should vary between studies";
  EXPECT_EQ(arms.size(), 2u) << "arms at the sides in some studies, raised in others";
  EXPECT_GE(tables_in_view, 3);

  // --fov fixes the field of view (y in the kind's proportion); --framing centred is the old grid.
  o.fov_xyz = {700, 0, 0};
  const auto wide = phantom_shape(o, 0);
  EXPECT_EQ(wide[2], 112);
  EXPECT_EQ(wide[1], 112);
  o.fov_xyz = {0, 0, 0};
  o.framing = PhantomFraming::kCentred;
  EXPECT_EQ(phantom_shape(o, 3), (std::array<std::int64_t, 3>{64, 64, 64}));
}

TEST(Phantom, MrBodyThresholdIsAboveTheBackgroundNoise) {
  PhantomOptions o = options_for(PhantomKind::kAbdomenMr, 5, 48);
  const PhantomStudy study = make_phantom_study(o, 0);
  const Volume& t1 = study.series.front().second;
  const double threshold = body_threshold(t1);
  const at::Tensor air = core_of(study.labels.voxels, 0);
  const at::Tensor background = t1.voxels.index({air}).to(at::kFloat);
  // Rician background at sigma 20: the threshold clears nearly all of it.
  EXPECT_LT((background > threshold).to(at::kFloat).mean().item<double>(), 0.001);
  const Box box = body_box(t1.voxels, threshold, 0);
  const at::Tensor organs = study.labels.voxels >= 2;
  const auto nz = at::nonzero(organs);
  for (int axis = 0; axis < 3; ++axis) {
    EXPECT_LE(box.start_zyx[axis], nz.select(1, axis).min().item<std::int64_t>());
    EXPECT_GE(box.start_zyx[axis] + box.size_zyx[axis] - 1, nz.select(1, axis).max().item<std::int64_t>());
  }
  // Front to back the field of view is wider than the body (the arms may reach its sides).
  EXPECT_LT(box.size_zyx[1], t1.voxels.size(1)) << "the crop should be tighter than the whole field of view";
}

TEST(Phantom, BadOptionsNameTheOption) {
  PhantomOptions o;
  o.shape_zyx = {4, 64, 64};
  EXPECT_THROW(
      try { o.validate(); } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("--shape"), std::string::npos);
        throw;
      },
      InputError);
  o = PhantomOptions{};
  o.perfusion_frames = 1;
  EXPECT_THROW(o.validate(), InputError);
  o = PhantomOptions{};
  o.noise = -1;
  EXPECT_THROW(o.validate(), InputError);
  o = PhantomOptions{};
  o.fov_xyz = {20, 0, 0};
  EXPECT_THROW(o.validate(), InputError);
  o.fov_xyz = {400, 0, 0};
  o.framing = PhantomFraming::kCentred;
  EXPECT_THROW(o.validate(), InputError);
  EXPECT_THROW(phantom_framing_from_name("tight", "--framing"), InputError);
  EXPECT_THROW(phantom_ischemia_from_name("huge", "--ischemia"), InputError);
  o = PhantomOptions{};
  o.ischemia = PhantomIschemia::kWide;  // the default kind, chest-cardiac, has no lesion to draw
  EXPECT_THROW(o.validate(), InputError);
  o.kind = PhantomKind::kHeadNeck;
  EXPECT_NO_THROW(o.validate());
  EXPECT_THROW(phantom_kind_from_name("liver", "--kind"), InputError);
  EXPECT_EQ(phantom_kind_from_name("abdomen-mr", "--kind"), PhantomKind::kAbdomenMr);
}

}  // namespace
}  // namespace vitruvian::data
