// The model route (series selection, the Predictor, the route's report) and the label route.
#include "launch/campaign/route.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "core/checkpoint.h"
#include "core/errors.h"
#include "core/stopwatch.h"

namespace vitruvian::campaign {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

}  // namespace

std::set<std::int64_t> selected_classes(const std::vector<std::string>& list, const std::vector<std::string>& names,
                                        const std::string& what, const RouteConfig& route) {
  std::set<std::int64_t> out;
  for (const auto& item : list) {
    if (item == "all") {
      for (std::size_t c = 1; c < names.size(); ++c) out.insert(static_cast<std::int64_t>(c));
      continue;
    }
    const auto it = std::find(names.begin(), names.end(), item);
    if (it == names.end() || it == names.begin()) {
      throw ConfigError(route.where(), fmt::format("{} names '{}', which the route's classes do not have ({})", what, item,
                                                   fmt::join(names.begin() + 1, names.end(), ", ")));
    }
    out.insert(it - names.begin());
  }
  return out;
}

// ---- ModelRoute ----

ModelRoute::ModelRoute(RouteConfig config, Predictor predictor) : Route(std::move(config)), predictor_(std::move(predictor)) {
  const auto& names = predictor_.model().card().classes.names;
  post_.largest_component = selected_classes(this->config().largest_component, names, "largest_component", this->config());
  post_.fill_holes = selected_classes(this->config().fill_holes, names, "fill_holes", this->config());
  selected_classes(this->config().lesions, names, "lesions", this->config());
  crop_ = resolve_crop(this->config(), predictor_.model().card().crop);
}

std::vector<std::string> ModelRoute::channels_of(const Study& study, json& notes) const {
  const RouteConfig& route = config();
  const models::ModelCard& card = predictor_.model().card();
  std::vector<std::string> channels = route.series.empty() ? card.channel_names() : route.series;
  if (!route.modality.empty()) {
    channels.clear();
    for (const auto& s : study.info().series) {
      if (s.modality == route.modality && s.shape.size() == 3) {
        channels.push_back(s.name);
        break;
      }
    }
  }
  if (channels.size() != card.inputs.size() || channels.empty()) {
    notes.push_back(fmt::format("route {}: needs {} series ({}), found none to match", route.name, card.inputs.size(),
                                route.modality.empty() ? fmt::format("{}", fmt::join(card.channel_names(), ", ")) : route.modality));
    return {};
  }
  for (const auto& c : channels) {
    if (study.info().find_series(c) == nullptr) {
      notes.push_back(fmt::format("route {}: the study has no series '{}'", route.name, c));
      return {};
    }
  }
  return channels;
}

std::optional<RouteResult> ModelRoute::run(Study& study, json& notes) const {
  const std::vector<std::string> channels = channels_of(study, notes);
  if (channels.empty()) return std::nullopt;
  const auto start = Clock::now();
  const data::Volume& reference = study.series(channels[0]);
  std::optional<BodyCrop> crop;
  if (crop_.body && reference.frames() == 1) {
    // At least one window of the network (its patch at its spacing) in the reference's voxels.
    const models::ModelCard& card = predictor_.model().card();
    std::array<std::int64_t, 3> window{};
    for (int d = 0; d < 3; ++d) {
      const double model_mm = card.spacing[2 - d], study_mm = reference.geometry.spacing[2 - d];
      const double scale = model_mm > 0 && study_mm > 0 ? model_mm / study_mm : 1.0;
      window[d] = static_cast<std::int64_t>(std::ceil(static_cast<double>(card.patch[d]) * scale - 1e-6));
    }
    crop = body_crop(reference, crop_.margin_mm, window);
  }
  const bool cutting = crop && !crop->whole(reference);  // else the study runs as it is
  // With a crop, the series on the reference grid are cut to the box; the Predictor resamples
  // the others onto the cut reference.
  std::vector<data::Volume> cut;
  cut.reserve(channels.size());
  std::vector<std::pair<std::string, const data::Volume*>> inputs;
  for (const auto& name : channels) {
    const data::Volume& series = study.series(name);
    if (cutting && (&series == &reference || data::same_grid(series, reference))) {
      cut.push_back(data::crop(series, crop->box));
      inputs.emplace_back(name, &cut.back());
    } else {
      inputs.emplace_back(name, &series);
    }
  }
  Prediction p = predictor_.predict(inputs, post_, study.id(), config().name);
  if (cutting) p.labels = data::uncrop(p.labels, reference, crop->box);
  const double seconds = seconds_since(start);
  const models::ModelCard& card = predictor_.model().card();
  RouteResult r;
  r.route = &config();
  r.from_model = true;
  r.reference = channels[0];
  r.labels = std::move(p.labels);
  r.classes = card.classes;
  const std::string& truth = config().truth;
  r.truth = truth.empty() ? card.label_map : (truth == "none" ? "" : truth);
  r.report = {{"model", config().model.string()},
              {"model_dataset", card.dataset},
              {"model_step", card.step},
              {"series", channels},
              {"classes", card.classes.names},
              {"resampled_to_mm", p.resampled ? json(card.spacing) : json(nullptr)},
              {"postprocess", p.postprocess}};
  r.report["crop"] = crop ? crop->to_json() : json{{"mode", crop_.body ? "body" : "none"}};
  r.report["crop"]["from"] = crop_.from;
  if (crop) r.report["crop"]["margin_from"] = crop_.margin_from;
  r.timing = {{"model", config().model.string()},
              {"prepare_s", p.prepare_s},
              {"predict_s", p.predict_s},
              {"engine", p.engine},
              {"seconds", seconds},
              {"windows", p.windows},
              {"voxels", reference.voxels.numel()}};
  const auto voxels = static_cast<double>(reference.voxels.numel());
  r.timing["predicted_voxels"] = static_cast<std::int64_t>(std::llround(cutting ? crop->fraction * voxels : voxels));
  return r;
}

// ---- LabelRoute ----

std::optional<RouteResult> LabelRoute::run(Study& study, json& notes) const {
  const RouteConfig& route = config();
  const data::LabelInfo* label = study.info().find_label(route.labels);
  if (label == nullptr) {
    notes.push_back(fmt::format("route {}: the study has no label map '{}'", route.name, route.labels));
    return std::nullopt;
  }
  const auto start = Clock::now();
  RouteResult r;
  r.route = &route;
  r.reference = label->reference_series;
  r.labels = study.label(route.labels);
  const data::LabelTable& table = study.label_table();
  const std::int64_t top = std::max<std::int64_t>(r.labels.voxels.max().item<std::int64_t>(), table.empty() ? 0 : table.rbegin()->first);
  for (std::int64_t c = 0; c <= top; ++c) {
    const auto it = table.find(static_cast<int>(c));
    r.classes.names.push_back(c == 0 ? "background" : (it != table.end() ? it->second : fmt::format("label_{}", c)));
    r.classes.label_ids.push_back({c});
  }
  selected_classes(route.lesions, r.classes.names, "lesions", route);
  r.report = {{"labels", route.labels}, {"series", {r.reference}}};
  r.timing = {{"seconds", seconds_since(start)}, {"voxels", r.labels.voxels.numel()}};
  return r;
}

// ---- the campaign's routes ----

std::vector<std::unique_ptr<Route>> make_routes(const CampaignConfig& config, const PredictorOptions& options, bool log) {
  std::map<std::string, std::shared_ptr<const LoadedModel>> loaded;  // folder -> model, loaded once
  const auto band_placement = std::make_shared<models::BandPlacement>(options.device);
  std::vector<std::unique_ptr<Route>> routes;
  for (const auto& route : config.routes) {
    if (route.analysis == "perfusion") {
      routes.push_back(std::make_unique<PerfusionRoute>(route, options.device));
      continue;
    }
    if (route.model.empty()) {
      routes.push_back(std::make_unique<LabelRoute>(route));
      continue;
    }
    auto& model = loaded[route.model.string()];
    if (!model) model = std::make_shared<const LoadedModel>(route.model, options, log);
    if (log && route.crop == "none" && model->card().crop.rule == "body") {
      spdlog::warn("{}: crop none, but model {} was trained on studies cropped to the body (margin {} mm); it will see "
                   "whole fields of view it never saw in training",
                   route.where(), route.model.string(), model->card().crop.margin_mm);
    }
    routes.push_back(std::make_unique<ModelRoute>(route, Predictor(model, options, band_placement)));
  }
  return routes;
}

std::string campaign_fingerprint(const CampaignConfig& config, const std::vector<std::unique_ptr<Route>>& routes) {
  std::string text = config.settings_yaml();
  for (const auto& route : routes) {
    const std::string part = route->fingerprint();
    if (!part.empty()) text += route->config().name + " " + part + "\n";
  }
  return text_checksum(text);
}

}  // namespace vitruvian::campaign
