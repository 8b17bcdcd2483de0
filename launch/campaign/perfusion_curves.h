// The arterial input and venous output of a report's `perfusion` section as an SVG line plot:
// full size on the study page, small on the campaign page.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vitruvian::campaign {

/// The AIF (scaled by the venous output, as deconvolved) and the VOF of `perfusion` (the report's
/// section: `times_s`, `arterial_input`, `venous_output`) over time, `width` × `height` px. Below
/// 300 px wide the plot is compact: two ticks per axis and short names.
std::string perfusion_curves_svg(const nlohmann::json& perfusion, double width, double height);

}  // namespace vitruvian::campaign
