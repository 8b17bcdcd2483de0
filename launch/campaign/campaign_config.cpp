// The campaign's keys, their checks and their YAML.
#include "launch/campaign/campaign_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "core/byte_size.h"
#include "core/errors.h"
#include "models/precision.h"
#include "models/stitcher.h"

namespace vitruvian::campaign {

void RouteConfig::visit(ConfigVisitor& v) {
  v.field("name", name, "the label map written for the route");
  v.field("model", model, "an exported model folder (model.pt + model.json)");
  v.field("labels", labels, "instead of a model: an existing label map of the study to measure");
  v.field("analysis", analysis, "instead of a model: an analysis that runs no network (perfusion)");
  if (analysis == "perfusion") v.section("perfusion", [&](ConfigVisitor& p) { perfusion.visit(p); });
  v.field("series", series, "the series fed to the model, in channel order (default: the card's)");
  v.field("modality", modality, "instead of series: the study's first 3D series of this modality");
  v.field("task", task, "only studies whose metadata names this task or phantom kind");
  v.field("largest_component", largest_component, "classes kept to their largest component (all: every class)");
  v.field("fill_holes", fill_holes, "classes whose enclosed background is filled (all: every class)");
  v.field("lesions", lesions, "classes reported as lesions (components with sizes)");
  v.field("crop", crop,
          "model routes: body (the network runs on the body's box) or none (the whole grid); empty: the model "
          "card's rule, body when it has none");
  v.field("crop_margin_mm", crop_margin_mm,
          "the body's box grown by this much (mm) on every side; -1: the model card's margin, else 10");
  v.field("truth", truth, "label map with the truth for Dice (default: the card's; none: no Dice)");
}

std::string RouteConfig::where() const { return origin.empty() ? "route " + name : origin; }

void CalciumConfig::visit(ConfigVisitor& v) {
  v.field("series", series, "the non-contrast CT series (empty: no calcium score)");
  v.field("arteries", arteries, "structures (from any route) that are coronary arteries");
  v.field("region", region, "without segmented arteries: score around this structure");
  v.field("artery_margin_mm", artery_margin_mm, "calcium counted within this distance of an artery");
  v.field("region_margin_mm", region_margin_mm, "or within this distance of the region structure");
}

void SourceConfig::visit(ConfigVisitor& v) {
  v.section("pacs", [&](ConfigVisitor& p) { pacs.visit(p); });
}

const std::vector<std::string>& output_names() {
  static const std::vector<std::string> names{"hdf5", "nifti", "thumbnail", "dicom_seg", "dicom_pmap", "dicom_sr"};
  return names;
}

void CampaignConfig::visit(ConfigVisitor& v) {
  v.field("input", inputs, "HDF5 datasets or shard indexes, NIfTI files or folders of them, DICOM folders");
  v.field("output", output, "the campaign's folder");
  v.field("studies", studies, "only these study ids");
  v.field("series_name", series_name, "series name of plain NIfTI inputs");
  v.field("modality", modality, "modality of plain NIfTI inputs (CT or MR)");
  v.field("overlap", overlap, "window overlap, [0, 1)");
  v.field("batch", batch, "windows per forward call");
  v.field("mirror_axes", mirror_axes, "test-time mirroring along any of zyx");
  v.field("accumulation", accumulation, "stitching accumulator: fp32 or fp16");
  v.field("precision", precision, "forward passes: fp32, bf16 or fp16");
  v.field("channels_last", channels_last, "channels-last 3D weights and windows");
  v.field("engine", engine, "CPU forward passes: auto or libtorch");
  v.field("memory_limit", memory_limit, "per-rank memory budget for a study (e.g. 3G)");
  v.field("outputs", outputs, "per study besides report.json: hdf5, nifti, thumbnail, dicom_seg, dicom_pmap, dicom_sr");
  v.items<RouteConfig>("routes", routes, [](ConfigVisitor& item, RouteConfig& r) { r.visit(item); },
                       "a list of routes (mappings with name and model or labels)");
  v.section("calcium", [&](ConfigVisitor& c) { calcium.visit(c); });
  v.section("source", [&](ConfigVisitor& c) { source.visit(c); });
  v.section("store_to", [&](ConfigVisitor& c) { store_to.visit(c); });
  v.field("claim_timeout_s", claim_timeout_s,
          "several jobs on one output folder: a study claim silent this long (s) is taken over");
}

namespace {

void validate_routes(const std::vector<RouteConfig>& routes) {
  if (routes.empty()) throw ConfigError("routes", "no routes: give a model (--model) or a list of routes");
  std::set<std::string> names;
  for (const auto& r : routes) {
    if (!r.model.empty() + !r.labels.empty() + !r.analysis.empty() != 1) {
      throw ConfigError(r.where(), "a route needs one of 'model' (a folder), 'labels' (a label map name) or 'analysis' (perfusion)");
    }
    if (!r.analysis.empty() && r.analysis != "perfusion") {
      throw ConfigError(r.where(), "analysis '" + r.analysis + "'; expected perfusion");
    }
    if (r.analysis == "perfusion") r.perfusion.validate(r.where());
    if (!r.crop.empty() && r.crop != "body" && r.crop != "none")
      throw ConfigError(r.where(), "crop '" + r.crop + "'; expected body or none (or nothing: the model card's)");
    if (!(r.crop_margin_mm >= 0 && r.crop_margin_mm <= 500) && r.crop_margin_mm != kCropMarginFromCard) {
      throw ConfigError(r.where(), fmt::format("crop_margin_mm {}; expected 0..500 mm (or -1: the model card's)",
                                               r.crop_margin_mm));
    }
    if (r.name.empty()) throw ConfigError(r.where(), "a route needs a 'name' (the label map it writes)");
    if (!names.insert(r.name).second) throw ConfigError(r.where(), "route name '" + r.name + "' is used twice");
    if (r.name.find_first_of("/\\ .") != std::string::npos) {
      throw ConfigError(r.where(), "route name '" + r.name + "' must be a plain word");
    }
  }
}

}  // namespace

void CampaignConfig::validate() const {
  if (inputs.empty() && !source.pacs.enabled()) {
    throw ConfigError("input", "no inputs: give --input (or 'input' or 'source.pacs' in the campaign file)");
  }
  if (source.pacs.enabled()) {
    source.pacs.validate("source.pacs");
    source.pacs.query.validate("source.pacs.query");
  }
  if (store_to.enabled()) store_to.validate("store_to");
  if (output.empty()) throw ConfigError("output", "no output folder: give --out (or 'output' in the campaign file)");
  if (!(overlap >= 0 && overlap < 1)) throw ConfigError("overlap", fmt::format("overlap {}; expected [0, 1)", overlap));
  if (batch < 1 || batch > 1024) throw ConfigError("batch", fmt::format("batch {}; expected 1..1024", batch));
  if (mirror_axes.find_first_not_of("zyx") != std::string::npos) {
    throw ConfigError("mirror_axes", "mirror_axes '" + mirror_axes + "'; expected any of z, y, x");
  }
  models::accumulation_from_name(accumulation, "accumulation");
  models::precision_from_name(precision, "precision");
  if (engine != "auto" && engine != "libtorch") throw ConfigError("engine", "engine '" + engine + "'; expected auto or libtorch");
  parse_byte_size(memory_limit, "memory_limit");
  for (const auto& o : outputs) {
    if (std::find(output_names().begin(), output_names().end(), o) == output_names().end()) {
      throw ConfigError("outputs", fmt::format("'{}' is not an output; expected any of {}", o, fmt::join(output_names(), ", ")));
    }
  }
  validate_routes(routes);
  if (!(claim_timeout_s >= 0.5 && claim_timeout_s <= 86400)) {
    throw ConfigError("claim_timeout_s",
                      fmt::format("claim_timeout_s {}; expected 0.5..86400 seconds", claim_timeout_s));
  }
  if (!(calcium.artery_margin_mm >= 0 && calcium.artery_margin_mm <= 50 && calcium.region_margin_mm >= 0 &&
        calcium.region_margin_mm <= 50)) {
    throw ConfigError("calcium", "calcium margins must be 0..50 mm");
  }
}

std::string CampaignConfig::settings_yaml() const {
  CampaignConfig settings = *this;
  settings.inputs.clear();
  settings.output.clear();
  settings.studies.clear();
  settings.source = SourceConfig{};
  settings.store_to = pacs::PacsEndpoint{};
  // The claim timeout says how jobs share the folder, not what a study's outputs are: left out,
  // so campaigns made before the key existed keep their fingerprint.
  std::string text = settings.yaml();
  const auto at = text.find("\nclaim_timeout_s:");
  if (at != std::string::npos) text.erase(at + 1, text.find('\n', at + 1) - at);
  return text;
}

std::string CampaignConfig::yaml() const {
  CampaignConfig copy = *this;  // visit() takes its fields by reference
  ConfigWriter writer;
  writer.add("", [&](ConfigVisitor& v) { copy.visit(v); });
  return writer.str();
}

void read_campaign(ConfigSources& sources, CampaignConfig& config) {
  sources.read("", [&](ConfigVisitor& v) { config.visit(v); });
  for (std::size_t i = 0; i < config.routes.size(); ++i) {
    config.routes[i].origin = sources.origin_of("routes." + std::to_string(i));
  }
}

}  // namespace vitruvian::campaign
