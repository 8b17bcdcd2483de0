// Line charts as inline SVG for the HTML pages the jobs write (training report, bench page):
// axes with ticks, linear or logarithmic on either axis, and a legend. No script, no external
// resource: the pages open from disk in any browser.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace vitruvian {

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  ///< (x, y); non-finite y (or y <= 0 on a log axis) is skipped
  std::string colour;                             ///< "#rrggbb"
  bool dashed = false;                            ///< a reference line rather than a measurement
};

struct ChartAxes {
  std::string x_label = "step";
  std::string y_label;
  bool log_x = false, log_y = false;
};

/// An SVG of `series` under `title` (text escaped).
std::string svg_line_chart(const std::string& title, const ChartAxes& axes, const std::vector<ChartSeries>& series);

/// `text` with <, >, & and " escaped for HTML and SVG.
std::string svg_escape(const std::string& text);

}  // namespace vitruvian
