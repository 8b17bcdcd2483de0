// metrics.jsonl → charts: loss (raw and a moving average), voxels/s, validation Dice per class
// and its mean; a table of the last validation and a step-time breakdown.
#include "launch/jobs/report.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "data/preview.h"
#include "launch/svg_chart.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using Series = ChartSeries;

std::string colour_of(int id) {
  const auto c = data::label_colour(id);
  return fmt::format("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
}

std::string chart(const std::string& title, const std::string& y_label, const std::vector<Series>& series, bool log_y = false) {
  ChartAxes axes;
  axes.y_label = y_label;
  axes.log_y = log_y;
  return svg_line_chart(title, axes, series);
}

}  // namespace

ExitCode run_report(const JobContext& context, const ReportOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  const fs::path run(options.run_dir);
  std::ifstream in(run / "metrics.jsonl");
  if (!in) {
    std::cerr << "vitruvian: " << (run / "metrics.jsonl").string() << ": cannot be read; expected a training run folder" << std::endl;
    return ExitCode::kUsage;
  }
  Series loss{"loss", {}, "#1f77b4"}, smooth{"moving average (20)", {}, "#d62728"}, speed{"voxels/s", {}, "#2ca02c"};
  Series mean_dice{"mean", {}, "#000000"};
  std::map<std::string, Series> dice;
  json last_validation;
  double step_s = 0, wait = 0, forward = 0, backward = 0, optimizer = 0, comm_total = 0, exposed = 0;
  int steps = 0, skipped = 0;
  std::string line;
  while (std::getline(in, line)) {
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      continue;  // a line cut short by an interruption
    }
    const double step = j.value("step", 0.0);
    if (j.contains("validation")) {
      last_validation = j["validation"];
      mean_dice.points.emplace_back(step, last_validation.value("mean_dice", 0.0));
      for (const auto& [name, value] : last_validation["dice"].items()) {
        auto& s = dice[name];
        s.name = name;
        s.points.emplace_back(step, value.get<double>());
      }
      continue;
    }
    if (j.value("skipped", false)) {
      ++skipped;
      continue;
    }
    loss.points.emplace_back(step, j.value("loss", 0.0));
    speed.points.emplace_back(step, j.value("voxels_per_s", 0.0));
    ++steps;
    step_s += j.value("step_s", 0.0), wait += j.value("data_wait_s", 0.0), forward += j.value("forward_s", 0.0);
    backward += j.value("backward_s", 0.0), optimizer += j.value("optimizer_s", 0.0);
    comm_total += j.value("comm_total_s", 0.0), exposed += j.value("comm_exposed_s", 0.0);
  }
  for (std::size_t i = 0; i < loss.points.size(); ++i) {
    double sum = 0;
    const std::size_t from = i >= 19 ? i - 19 : 0;
    for (std::size_t k = from; k <= i; ++k) sum += loss.points[k].second;
    smooth.points.emplace_back(loss.points[i].first, sum / static_cast<double>(i - from + 1));
  }
  std::vector<Series> dice_series = {mean_dice};
  int colour = 1;
  for (auto& [name, s] : dice) {
    s.colour = colour_of(colour++);
    dice_series.push_back(s);
  }
  std::string html = "<!doctype html><html><head><meta charset='utf-8'><title>Vitruvian training report</title><style>"
                     "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
                     "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}</style></head><body>";
  html += fmt::format("<h1>Training report: {}</h1><p>{} steps logged, {} skipped (non-finite).</p>", svg_escape(run.string()), steps,
                      skipped);
  html += chart("Loss (Dice + cross-entropy)", "loss", {loss, smooth}, true);
  html += chart("Throughput", "voxels/s", {speed});
  html += chart("Validation Dice", "Dice", dice_series);
  if (steps > 0) {
    const double n = steps;
    html += "<h2>Where a step's time goes (mean)</h2><table><tr><th>step</th><th>data wait</th><th>forward</th><th>backward</th>"
            "<th>optimizer</th><th>communication (all)</th><th>communication exposed</th></tr>";
    html += fmt::format("<tr><td>{:.3f} s</td><td>{:.3f} s</td><td>{:.3f} s</td><td>{:.3f} s</td><td>{:.3f} s</td><td>{:.3f} s</td>"
                        "<td>{:.3f} s ({:.0f} % of communication)</td></tr></table>",
                        step_s / n, wait / n, forward / n, backward / n, optimizer / n, comm_total / n, exposed / n,
                        comm_total > 0 ? 100 * exposed / comm_total : 0.0);
  }
  if (!last_validation.is_null()) {
    html += "<h2>Last validation</h2><table><tr><th>structure</th><th>Dice</th><th>HD95 (mm)</th></tr>";
    for (const auto& [name, value] : last_validation["dice"].items()) {
      const auto hd = last_validation["hd95_mm"].find(name);
      html += fmt::format("<tr><td style='text-align:left'>{}</td><td>{:.3f}</td><td>{}</td></tr>", svg_escape(name), value.get<double>(),
                          hd != last_validation["hd95_mm"].end() ? fmt::format("{:.1f}", hd->get<double>()) : "–");
    }
    html += fmt::format("<tr><th style='text-align:left'>mean</th><th>{:.3f}</th><th></th></tr></table>",
                        last_validation.value("mean_dice", 0.0));
  }
  html += "</body></html>\n";
  const fs::path out = options.output.empty() ? run / "report.html" : fs::path(options.output);
  write_file_atomic(out, html);
  spdlog::info("report: {}", out.string());
  return ExitCode::kOk;
}

namespace {

CLI::App* add_report_command(CLI::App& app, ReportOptions& o) {
  CLI::App* report =
      add_verb_command(app, "report", "Draw a training run's loss, throughput and validation curves into an HTML page");
  report->add_option("run_dir", o.run_dir, "Run folder (train.run_dir)")->required()->check(CLI::ExistingDirectory);
  report->add_option("-o,--output", o.output, "HTML file (default RUN_DIR/report.html)");
  return report;
}

}  // namespace

std::unique_ptr<Verb> make_report_verb() { return make_options_verb(add_report_command, run_report); }

}  // namespace vitruvian::jobs
