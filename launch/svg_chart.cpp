#include "launch/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace vitruvian {

std::string svg_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

namespace {

/// A tick's text: plain numbers, or sizes in powers of two for a log axis of bytes-like values.
std::string tick_text(double value) {
  if (std::fabs(value) >= 1e4 || (std::fabs(value) < 1e-2 && value != 0)) return fmt::format("{:.2g}", value);
  return fmt::format("{:.3g}", value);
}

}  // namespace

std::string svg_line_chart(const std::string& title, const ChartAxes& axes, const std::vector<ChartSeries>& series) {
  constexpr double W = 640, H = 300, left = 64, right = 170, top = 28, bottom = 40;
  auto fx = [&](double x) { return axes.log_x ? std::log10(x) : x; };
  auto fy = [&](double y) { return axes.log_y ? std::log10(y) : y; };
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!axes.log_x || x > 0) && (!axes.log_y || y > 0);
  };
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!usable(x, y)) continue;
      x0 = std::min(x0, fx(x)), x1 = std::max(x1, fx(x)), y0 = std::min(y0, fy(y)), y1 = std::max(y1, fy(y));
    }
  }
  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='11'>", W, H);
  svg += fmt::format("<text x='{}' y='16' font-size='13' font-weight='bold'>{}</text>", left, svg_escape(title));
  if (x0 > x1) return svg + fmt::format("<text x='{}' y='{}'>no data</text></svg>", left, H / 2);
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom); };
  svg += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#999'/>", left, top,
                     W - left - right, H - top - bottom);
  for (int t = 0; t <= 4; ++t) {
    const double yv = y0 + (y1 - y0) * t / 4, xv = x0 + (x1 - x0) * t / 4;
    svg += fmt::format("<line x1='{}' x2='{}' y1='{:.1f}' y2='{:.1f}' stroke='#eee'/>", left, W - right, py(yv), py(yv));
    svg += fmt::format("<text x='{}' y='{:.1f}' text-anchor='end'>{}</text>", left - 4, py(yv) + 4,
                       tick_text(axes.log_y ? std::pow(10.0, yv) : yv));
    svg += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>{}</text>", px(xv), H - bottom + 14,
                       axes.log_x ? tick_text(std::pow(10.0, xv)) : fmt::format("{:.0f}", xv));
  }
  svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}</text>", left + (W - left - right) / 2, H - 6,
                     svg_escape(axes.x_label));
  svg += fmt::format("<text x='14' y='{}' transform='rotate(-90 14 {})' text-anchor='middle'>{}</text>",
                     top + (H - top - bottom) / 2, top + (H - top - bottom) / 2, svg_escape(axes.y_label));
  int legend = 0;
  for (const auto& s : series) {
    std::string path;
    for (const auto& [x, y] : s.points) {
      if (!usable(x, y)) continue;
      path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", px(fx(x)), py(fy(y)));
    }
    svg += fmt::format("<path d='{}' fill='none' stroke='{}' stroke-width='1.5'{}/>", path, s.colour,
                       s.dashed ? " stroke-dasharray='5,4'" : "");
    svg += fmt::format("<rect x='{}' y='{}' width='10' height='10' fill='{}'/><text x='{}' y='{}'>{}</text>",
                       W - right + 10, top + 14 * legend, s.colour, W - right + 24, top + 14 * legend + 9,
                       svg_escape(s.name));
    ++legend;
  }
  return svg + "</svg>";
}

}  // namespace vitruvian
