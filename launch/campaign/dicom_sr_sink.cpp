// report.sr.dcm: the study's measurements (from report.json, the same numbers) as a DICOM SR
// TID 1500 Measurement Report referencing the routes' SEG segments; a perfusion route's triage
// (hypoperfused volume; mismatch, side, DEFUSE-3 as qualitative evaluations) as a group of its own.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "data/dicom_sr.h"
#include "launch/campaign/dicom_results.h"
#include "launch/campaign/sink.h"

namespace vitruvian::campaign {
namespace {

using json = nlohmann::json;
using data::CodedConcept;
using data::SrMeasurement;

const CodedConcept kVolume{"118565006", "SCT", "Volume"};
const CodedConcept kLongAxis{"103339001", "SCT", "Long Axis"};
const CodedConcept kMean{"373098007", "SCT", "Mean"};
const CodedConcept kAttenuation{"112031", "DCM", "Attenuation Coefficient"};
const CodedConcept kSignal{"110852", "DCM", "MR signal intensity"};
const CodedConcept kCalciumScore{"112058", "DCM", "Calcium score"};
const CodedConcept kAgatston{"112055", "DCM", "Agatston scoring method"};
const CodedConcept kCalcium{"112145", "DCM", "Calcium"};
const CodedConcept kMl{"ml", "UCUM", "milliliter"};
const CodedConcept kMm{"mm", "UCUM", "millimeter"};
const CodedConcept kMm3{"mm3", "UCUM", "cubic millimeter"};
const CodedConcept kHu{"[hnsf'U]", "UCUM", "Hounsfield unit"};
const CodedConcept kNoUnits{"1", "UCUM", "no units"};

/// The segment of `name` in a route's SEG (0 when the route has no SEG or no such segment).
std::uint16_t segment_of(const SegPlan& plan, const std::string& name) {
  const auto it = plan.number_of.find(name);
  return it == plan.number_of.end() ? 0 : it->second;
}

/// A group on `plan`'s SEG (or of no segment when the SEG is not written).
data::SrGroup group_on(const SegPlan& plan, bool with_seg, const std::string& name, const std::string& tracking) {
  data::SrGroup g;
  g.tracking_id = tracking;
  g.tracking_uid = derived_uid({plan.sop_instance_uid, tracking});
  g.finding = data::anatomy_code(name).type;
  g.segment = with_seg ? segment_of(plan, name) : 0;
  g.segmentation_uid = plan.sop_instance_uid;
  g.source_series_uid = plan.source.series_uid;
  g.algorithm_version = software_version() + " " + plan.algorithm_version;
  return g;
}

/// Per structure: volume and mean intensity; per lesion: volume and long axis.
void structure_groups(const SegPlan& plan, bool with_seg, const json& route, std::vector<data::SrGroup>& groups) {
  const RouteResult& r = *plan.result;
  const bool ct = plan.source.modality == "CT";
  const json structures = route.value("structures", json::object());
  for (const auto& [name, s] : structures.items()) {
    if (s.value("voxels", 0) == 0) continue;
    data::SrGroup g = group_on(plan, with_seg, name, fmt::format("{} {}", r.route->name, name));
    g.measurements.push_back({kVolume, s.at("volume_ml").get<double>(), kMl, std::nullopt, std::nullopt});
    if (const auto it = s.find("intensity"); it != s.end() && it->contains(r.reference)) {
      g.measurements.push_back({ct ? kAttenuation : kSignal, (*it)[r.reference].at("mean").get<double>(),
                                ct ? kHu : kNoUnits, kMean, std::nullopt});
    }
    groups.push_back(g);
    if (!s.contains("lesions")) continue;
    const json& items = s["lesions"]["items"];
    for (std::size_t k = 0; k < items.size(); ++k) {
      data::SrGroup l = group_on(plan, with_seg, name, fmt::format("{} {} lesion {}", r.route->name, name, k + 1));
      l.measurements.push_back({kVolume, items[k].at("volume_ml").get<double>(), kMl, std::nullopt, std::nullopt});
      l.measurements.push_back(
          {kLongAxis, items[k].at("axial_diameter_mm").get<double>(), kMm, std::nullopt, std::nullopt});
      groups.push_back(l);
    }
  }
}

/// A perfusion route's triage as text: the mismatch, the lesion's side and the DEFUSE-3 verdict
/// with each criterion (the same numbers as report.json's `perfusion`).
std::vector<std::string> perfusion_evaluations(const json& p) {
  const json& v = p.at("volumes_ml");
  const json& d = p.at("defuse3");
  const json& ratio = p.at("mismatch_ratio");
  const json side = p.value("side", json());
  const std::string ratio_text = ratio.is_number() ? fmt::format("{:.1f}", ratio.get<double>()) : "none (no core)";
  auto criterion = [&](const char* key, const char* what, const char* unit) {
    const json& c = d.at(key);
    const std::string value =
        c.at("value").is_number() ? fmt::format("{:.1f}{}", c.at("value").get<double>(), unit) : "none (no core)";
    return fmt::format("{} {} {} ({})", what, value, c.at("limit").get<std::string>(),
                       c.at("met").get<bool>() ? "met" : "not met");
  };
  return {fmt::format("Mismatch: {:.1f} mL, ratio {}", v.at("mismatch").get<double>(), ratio_text),
          fmt::format("Lesion side: {}", side.is_string() ? side.get<std::string>() : "none"),
          fmt::format("DEFUSE-3: {}; {}; {}; {}", d.at("eligible").get<bool>() ? "eligible" : "not eligible",
                      criterion("core_ml", "core", " mL"), criterion("mismatch_ratio", "mismatch ratio", ""),
                      criterion("mismatch_ml", "mismatch", " mL"))};
}

/// A perfusion route's triage as a group of its own (TID 1501, no segment: the hypoperfused
/// tissue is no class of the label map): the volume with Tmax above the threshold, and the
/// mismatch, side and DEFUSE-3 verdict as qualitative evaluations, from the route's own
/// `perfusion` section (the one report.json holds). Nothing for other routes.
void add_perfusion_triage(const SegPlan& plan, std::vector<data::SrGroup>& groups) {
  const json& sections = plan.result->sections;
  const auto it = sections.find("perfusion");
  if (it == sections.end()) return;
  const std::string& route = plan.result->route->name;
  data::SrGroup g;
  g.tracking_id = fmt::format("{} Tmax > {:g} s", route, it->at("thresholds").at("tmax_s").get<double>());
  g.tracking_uid = derived_uid({plan.sop_instance_uid, g.tracking_id});
  g.finding = data::anatomy_code("ischemic_penumbra").type;  // Ischemia: the hypoperfused tissue
  g.algorithm_version = software_version() + " " + plan.algorithm_version;
  // To the microlitre, as the structures' volumes (a DS holds 16 characters).
  const double hypoperfused = std::round(it->at("volumes_ml").at("hypoperfused").get<double>() * 1e6) / 1e6;
  g.measurements.push_back({kVolume, hypoperfused, kMl, std::nullopt, std::nullopt});
  g.evaluations = perfusion_evaluations(*it);
  groups.push_back(g);
}

std::vector<SrMeasurement> calcium_measurements(const json& score) {
  return {{kCalciumScore, score.at("agatston").get<double>(), kNoUnits, std::nullopt, kAgatston},
          {kVolume, score.at("volume_mm3").get<double>(), kMm3, std::nullopt, std::nullopt}};
}

/// Per artery (on the artery's segment, from the first route that has the class) and in total;
/// on a grid too coarse for Agatston's definition, each group says the score is an estimate.
void calcium_groups(const std::vector<SegPlan>& plans, bool with_seg, const json& calcium,
                    const data::DicomSeriesIdentity& study, std::vector<data::SrGroup>& groups) {
  std::vector<std::string> evaluations;
  if (calcium.value("estimate", false)) evaluations.push_back("Estimate: " + calcium.value("estimate_why", std::string()));
  const json arteries = calcium.value("arteries", json::object());
  for (const auto& [artery, score] : arteries.items()) {
    const auto plan = std::find_if(plans.begin(), plans.end(), [&](const SegPlan& p) {
      const auto& names = p.result->classes.names;
      return std::find(names.begin() + 1, names.end(), artery) != names.end();
    });
    data::SrGroup g;
    if (plan != plans.end()) {
      g = group_on(*plan, with_seg, artery, "calcium " + artery);
    } else {
      g.tracking_id = "calcium " + artery;
      g.tracking_uid = derived_uid({study.study.study_uid, g.tracking_id});
      g.finding = data::anatomy_code(artery).type;
    }
    g.measurements = calcium_measurements(score);
    g.evaluations = evaluations;
    groups.push_back(g);
  }
  data::SrGroup total;
  total.tracking_id = "calcium total";
  // Named after the first route without maps (a perfusion route's SEG never holds arteries).
  const auto first = std::find_if(plans.begin(), plans.end(), [](const SegPlan& p) { return p.result->maps.empty(); });
  total.tracking_uid =
      derived_uid({study.study.study_uid, "calcium total", first == plans.end() ? "" : first->sop_instance_uid});
  total.finding = kCalcium;
  total.measurements = calcium_measurements(calcium.at("total"));
  total.evaluations = evaluations;
  groups.push_back(total);
}

/// The study's series to name the patient and study from: the first route's reference, else
/// the first series with a DICOM identity.
const data::DicomSeriesIdentity& study_identity(const FinishedStudy& f) {
  if (!f.results.empty()) {
    if (const auto* id = f.study.dicom_identity(f.results.front().reference)) return *id;
  }
  for (const auto& s : f.study.info().series) {
    if (const auto* id = f.study.dicom_identity(s.name)) return *id;
  }
  throw InputError(
      f.study.input(),
      fmt::format("study {} did not come from DICOM; the DICOM SR output needs DICOM input", f.study.id()));
}

}  // namespace

void DicomSrSink::write(FinishedStudy& f, const std::filesystem::path& dir) const {
  const data::DicomSeriesIdentity& study = study_identity(f);
  std::vector<SegPlan> plans;
  for (std::size_t i = 0; i < f.results.size(); ++i) {
    plans.push_back(plan_seg(f, i, name()));
  }
  std::vector<data::SrGroup> groups;
  data::SrDescription d;
  d.source = study;
  for (const SegPlan& plan : plans) {
    const bool written = with_seg_ && !plan.segments.empty();
    structure_groups(plan, written, f.report["routes"][plan.result->route->name], groups);
    add_perfusion_triage(plan, groups);
    if (written) d.segmentations.emplace_back(plan.series_uid, plan.sop_instance_uid);
  }
  if (const auto it = f.report.find("calcium"); it != f.report.end() && it->is_object()) {
    calcium_groups(plans, with_seg_, *it, study, groups);
  }
  const std::string fingerprint = f.report.value("campaign_fingerprint", "");
  d.sop_instance_uid = derived_uid({study.study.study_uid, "sr instance", fingerprint});
  d.series_uid = derived_uid({study.study.study_uid, "sr series", fingerprint});
  d.series_number = "1000";  // the SEGs are 1001, 1002, ... in route order
  d.device_uid = derived_uid({"Vitruvian", software_version()});
  d.software_version = software_version();
  data::write_dicom_sr(dir / "report.sr.dcm", d, groups);
}

}  // namespace vitruvian::campaign
