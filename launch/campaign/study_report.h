// A study's report (report.json), built from its route results: per route its own part plus,
// per structure, volume, box, centroid and intensities in every series on the label grid,
// lesions (components with sizes), Dice against the study's truth; the coronary calcium score
// (Agatston, per artery); the notes of everything that did not apply.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "launch/campaign/campaign_config.h"
#include "launch/campaign/route.h"
#include "launch/campaign/study.h"

namespace vitruvian::campaign {

class StudyReport {
 public:
  explicit StudyReport(CalciumConfig calcium) : calcium_(std::move(calcium)) {}

  /// The report of `study` given its route results (in route order) and the notes so far.
  /// Holds "study", "input", "task", "campaign_fingerprint", "series", "routes", "calcium"
  /// (when scored), "notes", and "timing" with "routes", "measure_s" (and "calcium_s"); the
  /// caller adds the read and write times when it writes the study.
  nlohmann::json build(Study& study, const std::vector<RouteResult>& results, nlohmann::json notes,
                       const std::string& fingerprint) const;

  /// Per class of one result: voxels, volume, box, centroid, intensities, lesions.
  static nlohmann::json structures(Study& study, const RouteResult& result);
  /// Dice per class against the study's truth map (`result.truth`), with the card's label
  /// grouping; null where the study has no such map.
  static nlohmann::json dice(Study& study, const RouteResult& result);
  /// The Agatston score from the non-contrast CT, or null with a note.
  nlohmann::json calcium(const std::vector<RouteResult>& results, const data::Volume& ct, nlohmann::json& notes) const;

 private:
  CalciumConfig calcium_;
};

/// `v` to `decimals` places (divided by an exact power of ten, so it prints as written).
double rounded(double v, int decimals);

}  // namespace vitruvian::campaign
