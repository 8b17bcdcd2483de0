// Fingerprint → models::make_plan → a train config with the fingerprint and the decisions as
// comments.
#include "launch/jobs/plan.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>

#include "core/atomic_file.h"
#include "core/byte_size.h"
#include "core/config.h"
#include "core/errors.h"
#include "data/preprocess.h"
#include "data/volume_store.h"
#include "launch/jobs/arguments.h"
#include "launch/jobs/train.h"
#include "models/class_map.h"
#include "models/plan.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;


double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(std::floor(q * static_cast<double>(v.size() - 1)))];
}

/// The grid of the first channel over the dataset: spacings, the target spacing, shapes.
struct GridFingerprint {
  std::array<double, 3> spacing{}, target{};  ///< median and planned spacing, zyx mm
  std::array<std::int64_t, 3> median_shape{};   ///< at the target spacing
  double dataset_voxels = 0;                    ///< all studies at the target spacing
  bool resample = false;                        ///< spacings differ between studies
  std::vector<std::string> decisions;
};

GridFingerprint grid_fingerprint(const data::VolumeStore& store, const std::string& channel, const std::string& dataset) {
  std::array<std::vector<double>, 3> spacings, shapes;
  for (const auto& study : store.studies()) {
    const data::SeriesInfo* s = study.find_series(channel);
    if (s == nullptr) throw InputError(dataset, "study '" + study.id + "' has no series '" + channel + "'");
    for (int a = 0; a < 3; ++a) {
      spacings[a].push_back(s->geometry.spacing[2 - a]);  // zyx
      shapes[a].push_back(static_cast<double>(s->shape[s->shape.size() - 3 + a]));
    }
  }
  GridFingerprint g;
  for (int a = 0; a < 3; ++a) g.spacing[a] = median(spacings[a]);
  g.target = g.spacing;
  const double finest = *std::min_element(g.spacing.begin(), g.spacing.end());
  const int coarsest = static_cast<int>(std::max_element(g.spacing.begin(), g.spacing.end()) - g.spacing.begin());
  if (g.spacing[coarsest] > 3 * finest) {
    g.target[coarsest] = percentile(spacings[coarsest], 0.1);
    g.decisions.push_back(fmt::format("anisotropic data: the coarse axis takes the 10th percentile of its spacings, {:.3g} mm",
                                      g.target[coarsest]));
  }
  for (int a = 0; a < 3; ++a) {
    for (const double h : spacings[a]) g.resample = g.resample || std::abs(h - g.target[a]) > 0.01 * g.target[a];
    g.median_shape[a] = static_cast<std::int64_t>(std::lround(median(shapes[a]) * g.spacing[a] / g.target[a]));
  }
  for (std::size_t i = 0; i < shapes[0].size(); ++i) {
    double v = 1;
    for (int a = 0; a < 3; ++a) v *= shapes[a][i] * spacings[a][i] / g.target[a];
    g.dataset_voxels += v;
  }
  return g;
}

/// Intensities (foreground of the first 20 studies) per channel and class frequencies: each
/// study's label map read once. {"intensities": ..., "class_frequency": ...}
json intensities_and_frequencies(const data::VolumeStore& store, const std::vector<std::string>& channels,
                                 const std::string& label_map, const models::ClassMap& classes) {
  json intensities = json::object(), frequencies = json::object();
  std::mt19937_64 rng(0);
  const at::Tensor lookup = classes.lookup();
  at::Tensor class_voxels = at::zeros({classes.size()}, at::kLong);
  std::vector<std::vector<double>> values(channels.size());
  const std::size_t sample = std::min<std::size_t>(store.studies().size(), 20);
  for (std::size_t i = 0; i < sample; ++i) {
    const auto& study = store.studies()[i];
    const at::Tensor label = store.read_label(study.id, label_map).voxels;
    class_voxels += at::bincount(lookup.index({label.to(at::kLong).flatten()}), {}, class_voxels.numel());
    for (std::size_t ch = 0; ch < channels.size(); ++ch) {
      const auto part = data::sample_foreground_intensities(store.read_series(study.id, channels[ch]).voxels, label, 5000, rng);
      values[ch].insert(values[ch].end(), part.begin(), part.end());
    }
  }
  const data::StudyInfo& first = store.studies().front();
  for (std::size_t ch = 0; ch < channels.size(); ++ch) {
    const auto stats = data::intensity_stats(values[ch]);
    const data::SeriesInfo* info = first.find_series(channels[ch]);
    intensities[channels[ch]] = {{"modality", info != nullptr ? info->modality : ""},
                                 {"mean", stats.mean}, {"std", stats.std}, {"p0_5", stats.lower}, {"p99_5", stats.upper}};
  }
  const double total_voxels = std::max(1.0, class_voxels.sum().item<double>());
  for (std::size_t k = 1; k < classes.names.size(); ++k) {
    frequencies[classes.names[k]] = class_voxels[static_cast<std::int64_t>(k)].item<double>() / total_voxels;
  }
  return {{"intensities", intensities}, {"class_frequency", frequencies}};
}

/// The training config the plan gives.
TrainConfig planned_config(const PlanOptions& options, const std::vector<std::string>& channels,
                           const models::ClassMap& classes, const models::Plan& plan) {
  TrainConfig config;
  config.dataset = options.dataset;
  config.channels = channels;
  config.label_map = options.label_map;
  config.classes = options.classes.empty() ? std::vector<std::string>(classes.names.begin() + 1, classes.names.end())
                                           : options.classes;
  config.validation_studies = options.validation_studies;
  config.patch = {plan.patch_zyx[0], plan.patch_zyx[1], plan.patch_zyx[2]};
  config.batch_size = plan.batch_size;
  config.model.name = options.model;
  config.model.stages = static_cast<int>(plan.strides.size());
  config.model.strides.clear();
  config.model.kernels.clear();
  for (std::size_t s = 1; s < plan.strides.size(); ++s) config.model.strides.insert(config.model.strides.end(), plan.strides[s].begin(), plan.strides[s].end());
  for (const auto& k : plan.kernels) config.model.kernels.insert(config.model.kernels.end(), k.begin(), k.end());
  config.run_dir = "runs/" + options.task;
  return config;
}

/// The plan as YAML (its decisions as comments) and its fingerprint beside it.
void write_plan(const PlanOptions& options, TrainConfig config, const std::vector<std::string>& decisions,
                const json& fingerprint) {
  ConfigWriter writer;
  writer.add("", [&](ConfigVisitor& v) { config.visit(v); });
  std::string yaml = fmt::format("# Plan for {} (vitruvian plan; rules in docs/PLANS.md)\n", options.dataset);
  for (const auto& d : decisions) yaml += "# - " + d + "\n";
  yaml += writer.str();
  write_file_atomic(options.output, yaml);
  fs::path fingerprint_path(options.output);
  fingerprint_path.replace_extension(".fingerprint.json");
  write_file_atomic(fingerprint_path, fingerprint.dump(2) + "\n");
}

}  // namespace

ExitCode run_plan(const JobContext& context, const PlanOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  if (options.output.empty()) throw InputError("plan", "no output; give -o PLAN.yaml");
  refuse_existing(options.output, options.force);
  const double budget = parse_byte_size(options.memory, "--memory");
  const data::VolumeStore store(options.dataset);
  if (store.studies().empty()) throw InputError(options.dataset, "has no studies to plan from");
  std::vector<std::string> channels = options.channels;
  if (channels.empty()) channels.push_back(store.studies().front().series.front().name);

  GridFingerprint grid = grid_fingerprint(store, channels.front(), options.dataset);
  const auto classes = models::ClassMap::from_labels(options.classes, store.label_table(), options.dataset);
  const json measured = intensities_and_frequencies(store, channels, options.label_map, classes);
  models::PlanInput input;
  input.spacing_zyx = grid.target;
  input.median_shape_zyx = grid.median_shape;
  input.in_channels = static_cast<std::int64_t>(channels.size());
  input.classes = classes.size();
  input.memory_bytes = budget;
  input.dataset_voxels = grid.dataset_voxels;
  const models::Plan plan = models::make_plan(input);

  std::vector<std::string>& decisions = grid.decisions;
  decisions.insert(decisions.end(), plan.notes.begin(), plan.notes.end());
  if (grid.resample) {
    decisions.push_back(fmt::format("spacings differ between studies: resample first with `vitruvian preprocess {} -o "
                                    "resampled.h5 --channels {} --label {} --spacing {:.4g},{:.4g},{:.4g}` and train on that",
                                    options.dataset, fmt::join(channels, ","), options.label_map, grid.target[2], grid.target[1],
                                    grid.target[0]));
  }
  const json fingerprint = {{"dataset", options.dataset},
                            {"studies", store.studies().size()},
                            {"median_spacing_zyx_mm", grid.spacing},
                            {"target_spacing_zyx_mm", grid.target},
                            {"median_shape_zyx", grid.median_shape},
                            {"intensities", measured["intensities"]},
                            {"class_frequency", measured["class_frequency"]},
                            {"memory_budget_bytes", budget},
                            {"estimated_training_bytes", plan.estimated_bytes},
                            {"decisions", decisions}};
  write_plan(options, planned_config(options, channels, classes, plan), decisions, fingerprint);
  std::cout << fmt::format("plan: patch {}x{}x{}, batch {}, {} stages, estimated {:.2f} GB of {:.2f} GB -> {}\n", plan.patch_zyx[0],
                           plan.patch_zyx[1], plan.patch_zyx[2], plan.batch_size, plan.strides.size(), plan.estimated_bytes / 1e9,
                           budget / 1e9, options.output);
  for (const auto& d : decisions) std::cout << "  " << d << "\n";
  return ExitCode::kOk;
}

namespace {

CLI::App* add_plan_command(CLI::App& app, PlanOptions& o) {
  CLI::App* plan = add_verb_command(
      app, "plan", "Fingerprint a dataset and write a training config (patch, batch, network stages) that fits a memory budget");
  plan->add_option("dataset", o.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  plan->add_option("--task", o.task, "Task name (the run folder runs/<task>)")->capture_default_str();
  plan->add_option("--channels", o.channels, "Input series (default: the first study's first)")->delimiter(',');
  plan->add_option("--label-map", o.label_map, "Label map to learn")->capture_default_str();
  plan->add_option("--classes", o.classes, "Label names to learn (default: all)")->delimiter(',');
  plan->add_option("--memory", o.memory, "Memory budget per rank: 8G, 512M, ...")->capture_default_str();
  plan->add_option("--model", o.model, "unet, resenc_unet or sk_unet")->capture_default_str();
  plan->add_option("--validation-studies", o.validation_studies, "Studies held out")->capture_default_str();
  plan->add_option("-o,--output", o.output, "The config to write (YAML)")->required();
  plan->add_flag("--force", o.force, "Replace an existing output");
  return plan;
}

}  // namespace

std::unique_ptr<Verb> make_plan_verb() { return make_options_verb(add_plan_command, run_plan); }

}  // namespace vitruvian::jobs
