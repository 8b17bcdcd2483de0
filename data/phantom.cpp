// Phantom studies: the subject drawn from the seed, the kind's anatomy placed on it, rendered,
// and the ground truth recorded in the study metadata.
#include "data/phantom.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "data/phantom_framing.h"
#include "data/phantom_grid.h"
#include "data/phantom_perfusion.h"
#include "data/phantom_kinds.h"
#include "data/random.h"

namespace vitruvian::data {

using phantom::Vec3;

namespace {

constexpr std::uint64_t kPhantomStream = 0x7068616e746f6dull;  // "phantom"
constexpr int kGeneratorVersion = 4;

const std::vector<std::pair<PhantomKind, const char*>>& kind_names() {
  static const std::vector<std::pair<PhantomKind, const char*>> names = {
      {PhantomKind::kChestCardiac, "chest-cardiac"},   {PhantomKind::kHeadNeck, "head-neck"},
      {PhantomKind::kAbdomenMr, "abdomen-mr"},         {PhantomKind::kMsk, "msk"},
      {PhantomKind::kPerfusionGrid, "perfusion-grid"}, {PhantomKind::kMixed, "mixed"}};
  return names;
}

double rounded(double value, double step) { return std::round(value / step) * step; }

}  // namespace

std::string phantom_kind_name(PhantomKind kind) {
  for (const auto& [k, name] : kind_names()) {
    if (k == kind) return name;
  }
  return "unknown";
}

PhantomKind phantom_kind_from_name(const std::string& name, const std::string& source) {
  std::string known;
  for (const auto& [k, n] : kind_names()) {
    if (name == n) return k;
    known += known.empty() ? n : std::string(", ") + n;
  }
  throw InputError(source, "'" + name + "' is not a phantom kind; expected one of " + known);
}

std::string phantom_framing_name(PhantomFraming framing) {
  return framing == PhantomFraming::kScan ? "scan" : "centred";
}

PhantomFraming phantom_framing_from_name(const std::string& name, const std::string& source) {
  if (name == "scan") return PhantomFraming::kScan;
  if (name == "centred") return PhantomFraming::kCentred;
  throw InputError(source, "'" + name + "' is not a framing; expected scan or centred");
}

std::string phantom_ischemia_name(PhantomIschemia ischemia) {
  return ischemia == PhantomIschemia::kTypical ? "typical" : "wide";
}

PhantomIschemia phantom_ischemia_from_name(const std::string& name, const std::string& source) {
  if (name == "typical") return PhantomIschemia::kTypical;
  if (name == "wide") return PhantomIschemia::kWide;
  throw InputError(source, "'" + name + "' is not an ischaemia range; expected typical or wide");
}

const std::vector<PhantomKind>& phantom_study_kinds() {
  static const std::vector<PhantomKind> kinds = {PhantomKind::kChestCardiac, PhantomKind::kHeadNeck, PhantomKind::kAbdomenMr,
                                                 PhantomKind::kMsk};
  return kinds;
}

void PhantomOptions::validate() const {
  for (const auto n : shape_zyx) {
    if (n < 8 || n > 2048) {
      throw InputError("--shape", fmt::format("{} voxels along an axis; expected 8 to 2048", n));
    }
  }
  for (const double h : spacing_xyz) {
    if (!(h >= 0) || !std::isfinite(h)) throw InputError("--spacing", fmt::format("{} mm; expected a positive spacing", h));
  }
  if (perfusion_frames != 0 && (perfusion_frames < 2 || perfusion_frames > 200)) {
    throw InputError("--frames", fmt::format("{} perfusion frames; expected 2 to 200", perfusion_frames));
  }
  if (residue_order < 1 || residue_order > 16) {
    throw InputError("--residue-order", fmt::format("{}; expected an Erlang order from 1 to 16", residue_order));
  }
  if (residue_order != 1 && kind != PhantomKind::kPerfusionGrid) {
    throw InputError("--residue-order", "applies to --kind perfusion-grid only");
  }
  if (ischemia != PhantomIschemia::kTypical && kind != PhantomKind::kHeadNeck) {
    throw InputError("--ischemia", "applies to --kind head-neck only");
  }
  if (grid_delays_s != std::array<double, 4>{0, 1, 2, 3} && kind != PhantomKind::kPerfusionGrid) {
    throw InputError("--delays", "applies to --kind perfusion-grid only");
  }
  for (std::size_t i = 0; i < grid_delays_s.size(); ++i) {
    const double d = grid_delays_s[i];
    if (!(d >= -4 && d <= 10) || (i > 0 && !(d > grid_delays_s[i - 1]))) {
      throw InputError("--delays", fmt::format("{:g} s (slab {}); expected four increasing delays from -4 to 10 s (the "
                                               "arterial input arrives 5 s after the first frame)",
                                               d, i + 1));
    }
  }
  if (!(noise >= 0 && noise <= 10)) throw InputError("--noise", fmt::format("{}; expected a factor from 0 to 10", noise));
  if (!(deformation >= 0 && deformation <= 2)) {
    throw InputError("--deformation", fmt::format("{}; expected a factor from 0 to 2", deformation));
  }
  double finest = 1e30, coarsest = 0;
  for (const double h : spacing_xyz) {
    if (h > 0) finest = std::min(finest, h), coarsest = std::max(coarsest, h);
  }
  if (coarsest > 20 * finest) {
    throw InputError("--spacing", fmt::format("{:g} to {:g} mm; expected spacings within a factor of 20 of each other", finest,
                                              coarsest));
  }
  if (threads < 1) throw InputError("--threads", fmt::format("{}; expected at least 1 thread", threads));
  for (const double mm : fov_xyz) {
    if (mm == 0) continue;
    if (!(mm >= 50 && mm <= 2000)) throw InputError("--fov", fmt::format("{:g} mm; expected 50 to 2000 mm", mm));
    if (framing != PhantomFraming::kScan) {
      throw InputError("--fov", "a field of view needs scan framing; centred framing's grid is --shape x --spacing");
    }
  }
}

PhantomKind phantom_study_kind(const PhantomOptions& options, std::int64_t index) {
  if (options.kind != PhantomKind::kMixed) return options.kind;
  auto rng = seeded_rng({options.seed, static_cast<std::uint64_t>(index), kPhantomStream, 1});
  const auto& kinds = phantom_study_kinds();
  return kinds[uniform_below(rng, kinds.size())];
}

std::string phantom_study_id(const PhantomOptions& options, std::int64_t index) {
  std::string kind = phantom_kind_name(phantom_study_kind(options, index));
  std::replace(kind.begin(), kind.end(), '-', '_');
  return fmt::format("{}_{:05d}", kind, index);
}

std::array<double, 3> phantom_spacing(const PhantomOptions& options, std::int64_t index) {
  if (phantom_study_kind(options, index) == PhantomKind::kPerfusionGrid) return phantom::perfusion_grid_spacing();
  const auto& spec = phantom::kind_spec(phantom_study_kind(options, index));
  std::array<double, 3> spacing = options.spacing_xyz;
  const std::int64_t counts[3] = {options.shape_zyx[2], options.shape_zyx[1], options.shape_zyx[0]};
  for (int axis = 0; axis < 3; ++axis) {
    if (spacing[axis] == 0) spacing[axis] = spec.field_of_view[axis] / static_cast<double>(counts[axis]);
  }
  return spacing;
}

std::array<std::int64_t, 3> phantom_shape(const PhantomOptions& options, std::int64_t index) {
  const PhantomKind kind = phantom_study_kind(options, index);
  if (kind == PhantomKind::kPerfusionGrid) return phantom::perfusion_grid_shape();
  const phantom::Framing framing = phantom::draw_framing(options, index, kind);
  return phantom::framed_grid(framing, options.shape_zyx, phantom_spacing(options, index)).shape_zyx;
}

int phantom_frames(const PhantomOptions& options, PhantomKind kind) {
  if (options.perfusion_frames > 0) return options.perfusion_frames;
  return kind == PhantomKind::kPerfusionGrid ? phantom::kPerfusionGridFrames : 30;
}

namespace {

/// An anatomical study: the subject drawn, the kind's scene built on it and rendered; what was
/// drawn goes into `truth`.
PhantomStudy render_study(const PhantomOptions& options, std::int64_t index, PhantomKind kind, nlohmann::json& truth) {
  const phantom::KindSpec& spec = phantom::kind_spec(kind);
  const phantom::Framing framing = phantom::draw_framing(options, index, kind);
  const phantom::Grid grid = phantom::framed_grid(framing, options.shape_zyx, phantom_spacing(options, index));

  // The subject: size, girth and fat, position on the table, and a smooth deformation.
  auto rng = seeded_rng({options.seed, static_cast<std::uint64_t>(index), kPhantomStream, 2});
  auto draw = [&](double low, double high) { return low + (high - low) * uniform01(rng); };
  phantom::Subject subject;
  subject.scale = std::clamp(1.0 + 0.03 * normal01(rng), 0.94, 1.06);
  subject.girth = draw(0.9, 1.1);
  subject.fat_mm = 10 + 60 * (subject.girth - 0.9) + draw(-3, 3);
  subject.offset = Vec3{draw(-8, 8), draw(-8, 8), draw(-6, 6)};
  subject.yaw_rad = draw(-3, 3) * 3.14159265358979323846 / 180.0;
  phantom::Placement placement;
  placement.scale = subject.scale;
  placement.yaw_rad = subject.yaw_rad;
  placement.offset = subject.offset;
  placement.max_gradient_factor = options.deformation;
  for (auto& terms : placement.displacement) {
    for (int n = 0; n < 3; ++n) {
      phantom::Placement::Term term;
      // Amplitudes 1–2.5 mm, wavelengths 200–400 mm: organs bend, and the deformation's
      // gradient stays below 3 · 2.5 · 2π / 200 ≈ 0.24 (thin tubes stay whole; see Builder).
      term.amplitude = options.deformation * draw(1.0, 2.5) * (draw(0, 1) < 0.5 ? -1 : 1);
      for (int axis = 0; axis < 3; ++axis) {
        term.omega[axis] = 6.283185307179586 / draw(200, 400);
        term.phase[axis] = draw(0, 6.283185307179586);
      }
      terms.push_back(term);
    }
  }

  phantom::Builder builder(spec, rng, subject, placement, grid);
  builder.ischemia = options.ischemia;
  for (const phantom::SeriesSpec& s : spec.series) {
    phantom::SeriesModel model;
    model.name = s.name;
    model.modality = s.modality;
    model.type = s.type;
    model.noise_sigma = s.noise_sigma * options.noise;
    // A perfusion series' σ is for a reference voxel and scales with the grid's (as CT noise does).
    if (s.four_d) model.noise_sigma = phantom::perfusion_noise_sigma(model.noise_sigma, grid.spacing_xyz);
    model.rician = s.rician;
    model.bias_amplitude = s.bias_amplitude;
    model.bias_field = s.bias_field;
    if (s.four_d) {
      model.frame_times_s.assign(static_cast<std::size_t>(phantom_frames(options, kind)), 0.0);
      for (auto& curve : model.curves) curve.assign(model.frame_times_s.size(), 0.f);
    }
    builder.models.push_back(std::move(model));
  }
  for (const phantom::TissueSpec& t : spec.tissues) {
    phantom::Material m{t.name, phantom::label_id(t.label), {}, t.enhancement};
    for (const auto& [low, high] : t.ranges) m.values.push_back(static_cast<float>(draw(low, high)));
    builder.scene.materials.push_back(std::move(m));
  }
  spec.build(builder);
  phantom::add_surroundings(builder, framing);

  const std::uint64_t noise_seed = seeded_rng({options.seed, static_cast<std::uint64_t>(index), kPhantomStream, 3})();
  phantom::Rendered rendered = phantom::render(builder.scene, placement, grid, builder.models, noise_seed, options.threads);

  PhantomStudy study;
  Geometry geometry;
  geometry.spacing = grid.spacing_xyz;
  geometry.origin = grid.origin_xyz;
  for (std::size_t s = 0; s < builder.models.size(); ++s) {
    Volume volume;
    volume.voxels = std::move(rendered.series[s]);
    volume.type = builder.models[s].type;
    volume.geometry = geometry;
    volume.modality = builder.models[s].modality;
    volume.frame_times_s = builder.models[s].frame_times_s;
    study.series.emplace_back(builder.models[s].name, std::move(volume));
  }
  study.labels.voxels = std::move(rendered.labels);
  study.labels.type = VoxelType::kUInt8;
  study.labels.geometry = geometry;

  // Ground truth: what was drawn, and the label volumes as rendered.
  truth = std::move(builder.truth);
  const double voxel_ml = grid.spacing_xyz[0] * grid.spacing_xyz[1] * grid.spacing_xyz[2] / 1000.0;
  const auto& counts_data = rendered.label_counts;
  nlohmann::json volumes = nlohmann::json::object();
  for (const auto& [id, name] : phantom::all_labels()) {
    if (counts_data[id] > 0) volumes[name] = rounded(static_cast<double>(counts_data[id]) * voxel_ml, 1e-3);
  }
  truth["label_volumes_ml"] = volumes;
  truth["subject"] = {{"scale", subject.scale},
                      {"girth", subject.girth},
                      {"fat_mm", subject.fat_mm},
                      {"offset_mm", {subject.offset.x, subject.offset.y, subject.offset.z}},
                      {"yaw_deg", subject.yaw_rad * 180.0 / 3.14159265358979323846},
                      {"max_deformation_mm", placement.max_displacement() * subject.scale}};
  nlohmann::json noise = nlohmann::json::object();
  for (const auto& model : builder.models) {
    noise[model.name] = {{"model", model.rician ? "rician" : "gaussian"}, {"sigma", model.noise_sigma}};
  }
  truth["noise"] = noise;
  if (framing.scan) {
    truth["framing"]["field_of_view_mm"] = {framing.fov.x, framing.fov.y, framing.fov.z};
    truth["framing"]["grid_centre_mm"] = {framing.centre.x, framing.centre.y, framing.centre.z};
  }
  return study;
}

}  // namespace

PhantomStudy make_phantom_study(const PhantomOptions& options, std::int64_t index) {
  options.validate();
  const PhantomKind kind = phantom_study_kind(options, index);
  nlohmann::json truth;
  PhantomStudy study = kind == PhantomKind::kPerfusionGrid ? phantom::make_perfusion_grid(options, index, truth)
                                                           : render_study(options, index, kind, truth);
  study.id = phantom_study_id(options, index);
  study.kind = kind;
  truth["generator"] = {{"name", "vitruvian phantom"},
                        {"version", kGeneratorVersion},
                        {"kind", phantom_kind_name(kind)},
                        {"seed", options.seed},
                        {"index", index},
                        {"noise", options.noise},
                        {"framing", phantom_framing_name(options.framing)},
                        {"deformation", options.deformation}};
  study.metadata_json = nlohmann::json{{"phantom", truth}}.dump();
  return study;
}

Volume& PhantomStudy::series_named(const std::string& name) {
  for (auto& [series, volume] : series) {
    if (series == name) return volume;
  }
  throw InputError(id, fmt::format("no series '{}' in this {} phantom", name, phantom_kind_name(kind)));
}

LabelTable phantom_label_table(PhantomKind kind) {
  if (kind == PhantomKind::kPerfusionGrid) return phantom::perfusion_grid_labels();
  std::vector<std::string> wanted;
  for (const PhantomKind k : phantom_study_kinds()) {
    if (kind != PhantomKind::kMixed && k != kind) continue;
    const auto& labels = phantom::kind_spec(k).labels;
    wanted.insert(wanted.end(), labels.begin(), labels.end());
  }
  LabelTable table;
  for (const auto& [id, name] : phantom::all_labels()) {
    if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) table[id] = name;
  }
  return table;
}

PhantomKindDescription describe_phantom_kind(PhantomKind kind) {
  if (kind == PhantomKind::kPerfusionGrid) return phantom::describe_perfusion_grid();
  const phantom::KindSpec& spec = phantom::kind_spec(kind);
  PhantomKindDescription d;
  d.kind = kind;
  d.field_of_view_mm = {spec.field_of_view.x, spec.field_of_view.y, spec.field_of_view.z};
  d.fov_x_range_mm = {spec.framing.fov_x_low, spec.framing.fov_x_high};
  d.fov_z_range_mm = {spec.framing.fov_z_low, spec.framing.fov_z_high};
  d.arms_down_share = spec.framing.arms_down;
  for (const auto& s : spec.series) {
    d.series.push_back(
        {s.name, s.modality, voxel_type_name(s.type), s.noise_sigma, s.rician ? "rician" : "gaussian", s.four_d, s.bias_amplitude});
  }
  const char* const enhancement[] = {"", "arterial", "tissue", "penumbra", "core", "venous"};
  auto tissues = spec.tissues;
  for (auto& t : phantom::surrounding_tissues(spec)) tissues.push_back(std::move(t));
  for (const auto& t : tissues) {
    d.tissues.push_back({t.name, t.label, phantom::label_id(t.label), t.ranges, enhancement[static_cast<int>(t.enhancement)]});
  }
  d.labels = spec.labels;
  d.optional_labels = spec.optional;
  d.focus_label = spec.focus;
  return d;
}

}  // namespace vitruvian::data
