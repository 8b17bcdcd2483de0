// A report's `perfusion` section summed up for people: the triage in a few phrases (the campaign
// page and `vitruvian perfusion`'s lines) and the arterial and venous curves as an SVG plot (full
// size on the study page, small on the campaign page).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vitruvian::campaign {

/// The triage of a report's `perfusion` section, phrase by phrase.
struct PerfusionTriagePhrases {
  std::string core;          ///< "core 9.8 mL"
  std::string hypoperfused;  ///< "Tmax>6s 48.1 mL"
  std::string mismatch;      ///< "mismatch 38.3 mL (ratio 4.9)", or "(no core)"
  std::string side;          ///< "lesion left", or "lesion none"
  std::string verdict;       ///< DEFUSE-3: "eligible" or "not eligible"
};
PerfusionTriagePhrases perfusion_triage_phrases(const nlohmann::json& perfusion);

/// The AIF (scaled by the venous output, as deconvolved) and the VOF of `perfusion` (the report's
/// section: `times_s`, `arterial_input`, `venous_output`) over time, `width` × `height` px. Below
/// 300 px wide the plot is compact: two ticks per axis and short names.
std::string perfusion_curves_svg(const nlohmann::json& perfusion, double width, double height);

}  // namespace vitruvian::campaign
