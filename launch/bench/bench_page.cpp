// bench.html: the machine, every verdict in one table, then each section's method, tables and
// charts. Self-contained (inline SVG, no script), readable without Vitruvian.
#include <fmt/format.h>

#include "launch/bench/bench.h"
#include "launch/svg_chart.h"

namespace vitruvian::bench {

std::string html_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::string html = "<table><tr>";
  for (const auto& h : header) html += "<th>" + svg_escape(h) + "</th>";
  html += "</tr>";
  for (const auto& row : rows) {
    html += "<tr>";
    for (const auto& cell : row) html += "<td>" + svg_escape(cell) + "</td>";
    html += "</tr>";
  }
  return html + "</table>";
}

namespace {

std::string verdict_class(const std::string& verdict) {
  return verdict == "met" ? "met" : verdict == "not met" ? "missed" : "info";
}

std::string verdict_table(const std::vector<SectionResult>& sections) {
  std::string html = "<table><tr><th>section</th><th>figure</th><th>measured</th><th>reference</th><th>verdict</th></tr>";
  for (const auto& s : sections) {
    for (const auto& v : s.verdicts) {
      html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class='{}'>{}</td></tr>", svg_escape(s.title),
                          svg_escape(v.figure), svg_escape(v.measured), svg_escape(v.reference), verdict_class(v.verdict),
                          svg_escape(v.verdict));
    }
  }
  return html + "</table>";
}

}  // namespace

std::string bench_page(const nlohmann::ordered_json& machine, const std::vector<SectionResult>& sections) {
  std::string html =
      "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Vitruvian bench</title><style>"
      "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:0.6em 0}"
      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
      "td:first-child,td:nth-child(2){text-align:left}.met{color:#1a7f37;font-weight:bold}"
      ".missed{color:#c62828;font-weight:bold}.info{color:#555}p.method{color:#333;max-width:60em}"
      "</style></head><body>";
  html += "<h1>Vitruvian bench</h1><table>";
  for (const auto& [key, value] : machine.items()) {
    html += fmt::format("<tr><th>{}</th><td style='text-align:left'>{}</td></tr>", svg_escape(key),
                        svg_escape(value.is_string() ? value.get<std::string>() : value.dump()));
  }
  html += "</table><h2>Verdicts</h2>" + verdict_table(sections);
  for (const auto& s : sections) {
    html += fmt::format("<h2>{}</h2><p class='method'>{}</p>", svg_escape(s.title), svg_escape(s.method));
    for (const auto& t : s.tables) html += t;
    for (const auto& c : s.charts) html += "<div>" + c + "</div>";
  }
  return html + "</body></html>\n";
}

}  // namespace vitruvian::bench
