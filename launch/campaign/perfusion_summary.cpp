// The triage's phrases and the arterial and venous curves as SVG, shared by the study page, the
// campaign page and `vitruvian perfusion`.
#include "launch/campaign/perfusion_summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace vitruvian::campaign {

PerfusionTriagePhrases perfusion_triage_phrases(const nlohmann::json& p) {
  const nlohmann::json& v = p.at("volumes_ml");
  const nlohmann::json& ratio = p.at("mismatch_ratio");
  return {fmt::format("core {:.1f} mL", v.at("core").get<double>()),
          fmt::format("Tmax>{:g}s {:.1f} mL", p.at("thresholds").at("tmax_s").get<double>(),
                      v.at("hypoperfused").get<double>()),
          fmt::format("mismatch {:.1f} mL ({})", v.at("mismatch").get<double>(),
                      ratio.is_null() ? "no core" : fmt::format("ratio {:.1f}", ratio.get<double>())),
          fmt::format("lesion {}", p.at("side").is_null() ? "none" : p.at("side").get<std::string>()),
          p.at("defuse3").at("eligible").get<bool>() ? "eligible" : "not eligible"};
}

std::string perfusion_curves_svg(const nlohmann::json& p, double width, double height) {
  using json = nlohmann::json;
  const bool compact = width < 300;
  const double left = compact ? 30 : 50, bottom = compact ? 16 : 36, top_px = compact ? 6 : 12,
               right = compact ? 6 : 12;
  const int font = compact ? 9 : 11, ticks = compact ? 1 : 5;
  const auto& times = p.at("times_s");
  const json& aif = p.at("arterial_input");
  const json& vof = p.at("venous_output");
  double top = 1;
  for (const json* c : {&aif, &vof}) {
    if (c->value("found", false)) {
      for (const auto& v : c->at("curve_hu"))
        top = std::max(top, v.get<double>() * (c == &aif ? aif.value("scale", 1.0) : 1.0));
    }
  }
  top = std::ceil(top / 50) * 50;
  const double t_end = std::max(1.0, times.back().get<double>());
  const auto px = [&](double t) { return left + (width - left - right) * t / t_end; };
  const auto py = [&](double hu) { return height - bottom - (height - bottom - top_px) * hu / top; };
  std::ostringstream s;
  s << fmt::format(
      "<svg width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"arterial input and venous output\" "
      "style=\"background:#fff;border:1px solid #ccc\">",
      width, height);
  s << fmt::format(
      "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#333\"/><line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" "
      "y2=\"{1}\" stroke=\"#333\"/>",
      left, height - bottom, width - right, top_px);
  for (int k = 0; k <= ticks; ++k) {
    const double t = t_end * k / ticks, hu = top * k / ticks;
    s << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"middle\">{:.0f}{}</text>",
                     std::min(px(t), width - right - (compact ? 8 : 0)), height - bottom + font + 3, font, t,
                     compact && k == ticks ? " s" : "");
    s << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"end\">{:.0f}</text>", left - 4,
                     py(hu) + 4, font, hu);
  }
  if (compact) {
    s << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\">HU</text>", left + 4, top_px + font, font);
  } else {
    s << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"middle\">time (s)</text>",
                     (left + width) / 2, height - 4);
    s << fmt::format(
        "<text x=\"12\" y=\"{:.1f}\" font-size=\"12\" transform=\"rotate(-90 12 {:.1f})\" text-anchor=\"middle\">"
        "enhancement (HU)</text>",
        (height - bottom) / 2, (height - bottom) / 2);
  }
  const auto line = [&](const json& c, double scale, const char* colour, const char* name, int row) {
    if (!c.value("found", false)) return;
    std::string points;
    for (std::size_t i = 0; i < times.size(); ++i) {
      points +=
          fmt::format("{:.1f},{:.1f} ", px(times[i].get<double>()), py(c.at("curve_hu")[i].get<double>() * scale));
    }
    s << fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" points=\"{}\"/>", colour,
                     compact ? 1.5 : 2.0, points);
    s << fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"{}\" fill=\"{}\">{}</text>", width - (compact ? 40 : 170),
                     top_px + (font + 3) * row, font + 1, colour, name);
  };
  line(aif, aif.value("scale", 1.0), "#c00000", compact ? "AIF" : "arterial input (AIF)", 1);
  line(vof, 1.0, "#0050c0", compact ? "VOF" : "venous output (VOF)", 2);
  s << "</svg>";
  return s.str();
}

}  // namespace vitruvian::campaign
