// Phantoms: every label of every kind present with a plausible volume, intensities inside the
// documented ranges, coronaries connected and on the heart surface, recorded nodule and lesion
// counts equal to the label maps, perfusion curves in the right order, and the same bytes for
// any thread count.
#include "data/phantom.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <deque>
#include <map>

#include "core/errors.h"

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
  const PhantomStudy study = make_phantom_study(options_for(PhantomKind::kChestCardiac, 3), 0);
  const auto description = describe_phantom_kind(PhantomKind::kChestCardiac);
  const at::Tensor air = core_of(study.labels.voxels, 0);
  for (std::size_t s = 0; s < study.series.size(); ++s) {
    const at::Tensor values = study.series[s].second.voxels.index({air}).to(at::kDouble);
    ASSERT_GT(values.numel(), 10000);
    EXPECT_NEAR(values.mean().item<double>(), -1000, 1.0);
    EXPECT_NEAR(values.std().item<double>(), description.series[s].noise_sigma, 0.05 * description.series[s].noise_sigma);
  }
  // MR: Rician noise in the air is Rayleigh, mean sigma * sqrt(pi / 2).
  const PhantomStudy mr = make_phantom_study(options_for(PhantomKind::kAbdomenMr, 3), 0);
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
  o.perfusion_frames = 30;
  o.noise = 0;
  const PhantomStudy study = make_phantom_study(o, 0);
  const Volume& perfusion = study.series[1].second;
  ASSERT_EQ(perfusion.voxels.dim(), 4);
  ASSERT_EQ(perfusion.frame_times_s.size(), 30u);
  const double interval = perfusion.frame_times_s[1] - perfusion.frame_times_s[0];
  EXPECT_GE(interval, 1.0);
  EXPECT_LE(interval, 2.0);
  auto curve_of = [&](const std::string& label) {
    const at::Tensor core = core_of(study.labels.voxels, id_of(label));
    std::vector<double> curve;
    for (std::int64_t t = 0; t < perfusion.voxels.size(0); ++t) {
      curve.push_back(perfusion.voxels.select(0, t).index({core}).to(at::kDouble).mean().item<double>());
    }
    return curve;
  };
  auto peak = [](const std::vector<double>& c) { return std::max_element(c.begin(), c.end()) - c.begin(); };
  const auto brain = curve_of("brain"), penumbra = curve_of("ischemic_penumbra"), core = curve_of("ischemic_core");
  const auto artery = curve_of("carotid_arteries");
  EXPECT_GT(artery[peak(artery)] - artery[0], 150);  // the bolus reaches the carotids
  EXPECT_GT(brain[peak(brain)] - brain[0], 10);
  EXPECT_LT(core[peak(core)] - core[0], 0.5 * (brain[peak(brain)] - brain[0]));
  EXPECT_LT(peak(artery), peak(brain) + 1);
  EXPECT_GT(peak(penumbra), peak(brain));  // delayed time to peak
  EXPECT_GE(peak(core), peak(brain));
  const auto flows = truth_of(study).at("perfusion").at("tissue");
  EXPECT_GT(flows.at("core").at("time_to_peak_s").get<double>(), flows.at("brain").at("time_to_peak_s").get<double>());
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
  const PhantomStudy study = make_phantom_study(o, 0);
  const Geometry& g = study.series.front().second.geometry;
  EXPECT_DOUBLE_EQ(g.spacing[0], 10);
  EXPECT_DOUBLE_EQ(g.spacing[1], 9);
  EXPECT_DOUBLE_EQ(g.spacing[2], 480.0 / 24);
  EXPECT_DOUBLE_EQ(g.origin[0], -0.5 * 39 * 10);  // the field of view is centred on the body
  EXPECT_EQ(study.labels.voxels.sizes(), (std::vector<std::int64_t>{24, 32, 40}));
  EXPECT_TRUE(g.matches(study.labels.geometry));
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
  EXPECT_THROW(phantom_kind_from_name("liver", "--kind"), InputError);
  EXPECT_EQ(phantom_kind_from_name("abdomen-mr", "--kind"), PhantomKind::kAbdomenMr);
}

}  // namespace
}  // namespace vitruvian::data
