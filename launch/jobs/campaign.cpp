// Campaign files with yaml-cpp: every key checked against the known ones, errors with file:line.
#include "launch/jobs/campaign.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <set>

#include "core/errors.h"
#include "core/yaml_keys.h"
#include "launch/jobs/arguments.h"
#include "models/precision.h"
#include "models/stitcher.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;

template <typename T>
void read(const fs::path& file, const YAML::Node& map, const char* key, T& value) {
  const YAML::Node node = map[key];
  if (!node) return;
  try {
    value = node.as<T>();
  } catch (const YAML::Exception&) {
    throw ConfigError(yaml_where(file, node), fmt::format("'{}' has a value of the wrong type", key));
  }
}

/// A text or a list of texts.
void read_list(const fs::path& file, const YAML::Node& map, const char* key, std::vector<std::string>& value) {
  const YAML::Node node = map[key];
  if (!node) return;
  if (node.IsScalar()) {
    value = {node.as<std::string>()};
    return;
  }
  read(file, map, key, value);
}

fs::path resolve(const fs::path& file, const std::string& path) {
  const fs::path p(path);
  return p.is_absolute() || path.empty() ? p : (file.parent_path() / p).lexically_normal();
}

}  // namespace

CampaignConfig read_campaign(const fs::path& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    throw ConfigError(path.string(), "cannot read the campaign file");
  } catch (const YAML::Exception& e) {
    throw ConfigError(path.string(), std::string("not valid YAML: ") + e.what());
  }
  CampaignConfig c;
  check_yaml_keys(path, root,
            {"input", "output", "studies", "series_name", "modality", "overlap", "batch", "mirror_axes", "accumulation",
             "precision", "channels_last", "engine", "memory_limit", "write_nifti", "thumbnails", "routes", "calcium"},
            "the campaign");
  std::vector<std::string> inputs;
  read_list(path, root, "input", inputs);
  for (const auto& i : inputs) c.inputs.push_back(resolve(path, i));
  std::string output;
  read(path, root, "output", output);
  c.output = resolve(path, output);
  read_list(path, root, "studies", c.studies);
  read(path, root, "series_name", c.series_name);
  read(path, root, "modality", c.modality);
  read(path, root, "overlap", c.overlap);
  read(path, root, "batch", c.batch);
  read(path, root, "mirror_axes", c.mirror_axes);
  read(path, root, "accumulation", c.accumulation);
  read(path, root, "precision", c.precision);
  read(path, root, "channels_last", c.channels_last);
  read(path, root, "engine", c.engine);
  read(path, root, "memory_limit", c.memory_limit);
  read(path, root, "write_nifti", c.write_nifti);
  read(path, root, "thumbnails", c.thumbnails);
  if (const YAML::Node routes = root["routes"]) {
    if (!routes.IsSequence()) throw ConfigError(yaml_where(path, routes), "routes must be a list");
    for (const auto& node : routes) {
      check_yaml_keys(path, node,
                {"name", "model", "labels", "series", "modality", "task", "largest_component", "fill_holes", "lesions", "truth"},
                "a route");
      Route r;
      r.origin = yaml_where(path, node);
      read(path, node, "name", r.name);
      std::string model;
      read(path, node, "model", model);
      r.model = resolve(path, model);
      read(path, node, "labels", r.labels);
      read_list(path, node, "series", r.series);
      read(path, node, "modality", r.modality);
      read(path, node, "task", r.task);
      read_list(path, node, "largest_component", r.largest_component);
      read_list(path, node, "fill_holes", r.fill_holes);
      read_list(path, node, "lesions", r.lesions);
      read(path, node, "truth", r.truth);
      c.routes.push_back(r);
    }
  }
  if (const YAML::Node calcium = root["calcium"]) {
    check_yaml_keys(path, calcium, {"series", "arteries", "region", "artery_margin_mm", "region_margin_mm"}, "calcium");
    read(path, calcium, "series", c.calcium.series);
    read_list(path, calcium, "arteries", c.calcium.arteries);
    read(path, calcium, "region", c.calcium.region);
    read(path, calcium, "artery_margin_mm", c.calcium.artery_margin_mm);
    read(path, calcium, "region_margin_mm", c.calcium.region_margin_mm);
  }
  validate_campaign(c, path.string());
  return c;
}

void validate_campaign(const CampaignConfig& c, const std::string& source) {
  if (!(c.overlap >= 0 && c.overlap < 1)) throw ConfigError(source, fmt::format("overlap {}; expected [0, 1)", c.overlap));
  if (c.batch < 1 || c.batch > 1024) throw ConfigError(source, fmt::format("batch {}; expected 1..1024", c.batch));
  if (c.mirror_axes.find_first_not_of("zyx") != std::string::npos) {
    throw ConfigError(source, "mirror_axes '" + c.mirror_axes + "'; expected any of z, y, x");
  }
  models::accumulation_from_name(c.accumulation, source + ": accumulation");
  models::precision_from_name(c.precision, source + ": precision");
  if (c.engine != "auto" && c.engine != "libtorch") throw ConfigError(source, "engine '" + c.engine + "'; expected auto or libtorch");
  parse_size(c.memory_limit, source + ": memory_limit");
  if (c.routes.empty()) throw ConfigError(source, "no routes: give a model (--model) or a list of routes");
  std::set<std::string> names;
  for (const auto& r : c.routes) {
    const std::string at = r.origin.empty() ? source : r.origin;
    if (r.model.empty() == r.labels.empty()) throw ConfigError(at, "a route needs either 'model' (a folder) or 'labels' (a label map name)");
    if (r.name.empty()) throw ConfigError(at, "a route needs a 'name' (the label map it writes)");
    if (!names.insert(r.name).second) throw ConfigError(at, "route name '" + r.name + "' is used twice");
    if (r.name.find_first_of("/\\ .") != std::string::npos) throw ConfigError(at, "route name '" + r.name + "' must be a plain word");
  }
  if (!(c.calcium.artery_margin_mm >= 0 && c.calcium.artery_margin_mm <= 50 && c.calcium.region_margin_mm >= 0 &&
        c.calcium.region_margin_mm <= 50)) {
    throw ConfigError(source, "calcium margins must be 0..50 mm");
  }
}

std::string campaign_yaml(const CampaignConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "input" << YAML::Value << YAML::BeginSeq;
  for (const auto& i : c.inputs) out << i.string();
  out << YAML::EndSeq;
  out << YAML::Key << "output" << YAML::Value << c.output.string();
  if (!c.studies.empty()) out << YAML::Key << "studies" << YAML::Value << YAML::Flow << c.studies;
  out << YAML::Key << "series_name" << YAML::Value << c.series_name;
  out << YAML::Key << "modality" << YAML::Value << c.modality;
  out << YAML::Key << "overlap" << YAML::Value << c.overlap;
  out << YAML::Key << "batch" << YAML::Value << c.batch;
  out << YAML::Key << "mirror_axes" << YAML::Value << c.mirror_axes;
  out << YAML::Key << "accumulation" << YAML::Value << c.accumulation;
  out << YAML::Key << "precision" << YAML::Value << c.precision;
  out << YAML::Key << "channels_last" << YAML::Value << c.channels_last;
  out << YAML::Key << "engine" << YAML::Value << c.engine;
  out << YAML::Key << "memory_limit" << YAML::Value << c.memory_limit;
  out << YAML::Key << "write_nifti" << YAML::Value << c.write_nifti;
  out << YAML::Key << "thumbnails" << YAML::Value << c.thumbnails;
  out << YAML::Key << "routes" << YAML::Value << YAML::BeginSeq;
  for (const auto& r : c.routes) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << r.name;
    if (!r.model.empty()) out << YAML::Key << "model" << YAML::Value << r.model.string();
    if (!r.labels.empty()) out << YAML::Key << "labels" << YAML::Value << r.labels;
    if (!r.series.empty()) out << YAML::Key << "series" << YAML::Value << YAML::Flow << r.series;
    if (!r.modality.empty()) out << YAML::Key << "modality" << YAML::Value << r.modality;
    if (!r.task.empty()) out << YAML::Key << "task" << YAML::Value << r.task;
    if (!r.largest_component.empty()) out << YAML::Key << "largest_component" << YAML::Value << YAML::Flow << r.largest_component;
    if (!r.fill_holes.empty()) out << YAML::Key << "fill_holes" << YAML::Value << YAML::Flow << r.fill_holes;
    if (!r.lesions.empty()) out << YAML::Key << "lesions" << YAML::Value << YAML::Flow << r.lesions;
    if (!r.truth.empty()) out << YAML::Key << "truth" << YAML::Value << r.truth;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  if (!c.calcium.series.empty()) {
    out << YAML::Key << "calcium" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "series" << YAML::Value << c.calcium.series;
    out << YAML::Key << "arteries" << YAML::Value << YAML::Flow << c.calcium.arteries;
    out << YAML::Key << "region" << YAML::Value << c.calcium.region;
    out << YAML::Key << "artery_margin_mm" << YAML::Value << c.calcium.artery_margin_mm;
    out << YAML::Key << "region_margin_mm" << YAML::Value << c.calcium.region_margin_mm;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace vitruvian::jobs
