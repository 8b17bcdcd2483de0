// What runs on a study. A Route takes a study and gives a label map with its class names and
// what it wants in the report; ModelRoute runs a network (through a Predictor), LabelRoute
// measures a label map the study already has. A route that runs no network (an analysis) is one
// new class here.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "data/anatomy_codes.h"
#include "data/volume.h"
#include "launch/campaign/body_crop.h"
#include "launch/campaign/campaign_config.h"
#include "launch/campaign/predictor.h"
#include "launch/campaign/study.h"

namespace vitruvian::campaign {

/// A 3D map a route computed on its label map's grid (a perfusion parameter), with what its
/// values are: the DICOM parametric map names them.
struct RouteMap {
  std::string name;  ///< its series name ("<route>_cbf")
  data::Volume volume;
  data::CodedConcept quantity;  ///< DCM 126390 "Absolute Regional Blood Flow", ...
  data::CodedConcept units;     ///< UCUM
  std::string label;            ///< short: "CBF"
};

/// A route's result on one study.
struct RouteResult {
  const RouteConfig* route = nullptr;
  std::string reference;  ///< series whose grid the label map is on
  data::Volume labels;    ///< class indices (uint8, or int32 holding kUInt16) on the reference grid
  /// The classes ([0] background) and the dataset label ids each stands for (Dice against a
  /// truth map); a label route's class c is label id c.
  models::ClassMap classes;
  std::string truth;  ///< the study's label map to compute Dice against ("" for none)
  bool from_model = false;
  nlohmann::json report = nlohmann::json::object();  ///< the route's part of the report
  /// Sections the route adds at the top level of the study's report (the perfusion analysis's
  /// `perfusion`).
  nlohmann::json sections = nlohmann::json::object();
  /// 3D series the route computed on the label map's grid (perfusion maps), written beside the
  /// label map; when there are any, labels.h5 binds the label map to the first of them instead
  /// of the reference series.
  std::vector<RouteMap> maps;
  /// sRGB display colours of classes, by name, where the route shows them in its own pictures
  /// (perfusion: core magenta, penumbra green); a DICOM SEG recommends them to viewers.
  std::map<std::string, std::array<std::uint8_t, 3>> colours;
  nlohmann::json timing = nlohmann::json::object();
};

class Route {
 public:
  explicit Route(RouteConfig config) : config_(std::move(config)) {}
  virtual ~Route() = default;
  const RouteConfig& config() const { return config_; }
  /// Whether the route runs on `study` (its task filter); routes that cannot run for lack of a
  /// series say why in run() instead.
  bool applies(const Study& study) const { return config_.task.empty() || config_.task == study.task(); }
  /// The route on `study`, or nothing with a note added to `notes` when the study lacks what it
  /// needs. Throws when the study's data is bad (the study fails).
  virtual std::optional<RouteResult> run(Study& study, nlohmann::json& notes) const = 0;
  /// What the route's results depend on besides its config (a model's checksum), for the
  /// campaign's fingerprint; "" when nothing.
  virtual std::string fingerprint() const { return ""; }

 private:
  RouteConfig config_;
};

/// Classes of `names` selected by a route's list ("all": every class but background).
/// ConfigError naming the route's origin for a name the classes lack.
std::set<std::int64_t> selected_classes(const std::vector<std::string>& list, const std::vector<std::string>& names,
                                        const std::string& what, const RouteConfig& route);

/// Runs an exported network on the series its card (or the route) names.
class ModelRoute final : public Route {
 public:
  /// ConfigError (naming the route) when its class lists name classes the model lacks.
  ModelRoute(RouteConfig config, Predictor predictor);
  std::optional<RouteResult> run(Study& study, nlohmann::json& notes) const override;
  std::string fingerprint() const override { return predictor_.model().checksum(); }

 private:
  /// The study's series fed to the model, in channel order; empty with a note when it lacks them.
  std::vector<std::string> channels_of(const Study& study, nlohmann::json& notes) const;

  Predictor predictor_;
  Postprocess post_;
  CropChoice crop_;  ///< the route's keys, else the model card's crop rule
};

/// Measures a label map the study holds (e.g. a reference segmentation), in the ids of the
/// study's label table.
class LabelRoute final : public Route {
 public:
  using Route::Route;
  std::optional<RouteResult> run(Study& study, nlohmann::json& notes) const override;
};

/// Analyses a study's 4D CT perfusion series (data/perfusion): CBF, CBV, MTT, Tmax and TTP maps,
/// the ischaemic core and penumbra as a label map, and the triage figures; runs no network. The
/// series is the route's first `series`, else the study's first 4D CT series. The per-voxel
/// deconvolution runs on the rank's device (runtime.device), the rest on the CPU.
class PerfusionRoute final : public Route {
 public:
  PerfusionRoute(RouteConfig config, c10::Device device) : Route(std::move(config)), device_(device) {}
  std::optional<RouteResult> run(Study& study, nlohmann::json& notes) const override;

 private:
  c10::Device device_;
};

/// The campaign's routes, each model loaded once on this rank (several routes may share one).
/// `log`: rank 0 says which engine runs each model.
std::vector<std::unique_ptr<Route>> make_routes(const CampaignConfig& config, const PredictorOptions& options, bool log);

/// What a finished study's outputs depend on besides its input: the campaign's settings (every
/// key but input, output and studies) and each route's fingerprint. A verified study made with
/// another fingerprint is redone.
std::string campaign_fingerprint(const CampaignConfig& config, const std::vector<std::unique_ptr<Route>>& routes);

}  // namespace vitruvian::campaign
