// campaign.json and index.html from the study folders and the failure records.
#include "launch/campaign/campaign_page.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "core/atomic_file.h"
#include "launch/campaign/html_text.h"
#include "launch/campaign/perfusion_summary.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The perfusion triage in a few lines: volumes, mismatch, DEFUSE-3 verdict, and the arterial and
/// venous curves small.
std::string perfusion_summary(const json& p, const std::string& id) {
  const PerfusionTriagePhrases t = perfusion_triage_phrases(p);
  return fmt::format(
      "<b>perfusion</b> (<a href=\"studies/{}/perfusion.html\">page</a>)<br>{}<br>{}<br>{}<br>{}<br>"
      "DEFUSE-3 <b>{}</b><br>{}<br>",
      html_escape(id), html_escape(t.core), html_escape(t.hypoperfused), html_escape(t.mismatch), html_escape(t.side),
      t.verdict, perfusion_curves_svg(p, 200, 100));
}

/// A done study's row: volumes (and lesion counts) and Dice per route, the calcium score.
std::string study_row(const json& report, const fs::path& output) {
  const std::string id = report["study"];
  std::string volumes, dice, calcium = "-";
  for (const auto& [route, r] : report["routes"].items()) {
    volumes += "<b>" + html_escape(route) + "</b><br>";
    for (const auto& [name, s] : r["structures"].items()) {
      volumes += fmt::format("{} {:.1f}", html_escape(name), s["volume_ml"].get<double>());
      if (s.contains("lesions")) volumes += fmt::format(" ({} lesions)", s["lesions"]["count"].get<int>());
      volumes += "<br>";
    }
    if (r.contains("dice")) {
      for (const auto& [name, d] : r["dice"].items()) {
        dice += fmt::format("{} {}<br>", html_escape(name), d.is_null() ? "-" : fmt::format("{:.3f}", d.get<double>()));
      }
    }
  }
  if (report.contains("calcium") && !report["calcium"].is_null()) {
    const json& c = report["calcium"];
    calcium = fmt::format("total {:.1f}{}", c["total"]["agatston"].get<double>(),
                          c.value("estimate", false) ? " <span title=\"the grid is coarser than Agatston's\">(estimate)</span>" : "");
    for (const auto& [a, s] : report["calcium"]["arteries"].items()) calcium += fmt::format("<br>{} {:.1f}", a, s["agatston"].get<double>());
  }
  std::string picture = fs::exists(output / "studies" / id / "thumbnail.png")
                            ? fmt::format("<img src=\"studies/{}/thumbnail.png\" alt=\"{}\">", id, id)
                            : "";
  if (report.contains("perfusion") && fs::exists(output / "studies" / id / "perfusion.png")) {
    volumes += perfusion_summary(report["perfusion"], id);
    picture = fmt::format("<a href=\"studies/{0}/perfusion.html\"><img src=\"studies/{0}/perfusion.png\" alt=\"perfusion of {0}\"></a>", id);
  }
  return fmt::format("<tr><td><a href=\"studies/{0}/report.json\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4:.1f}</td><td>{5}</td></tr>\n",
                     html_escape(id), volumes, dice, calcium, report["timing"].value("total_s", 0.0), picture);
}

}  // namespace

struct CampaignPage::Rows {
  std::set<std::string> listed;
  std::vector<json> reports;  ///< done studies, by id
  json done = json::array(), failed = json::array(), elsewhere = json::array();
  std::map<std::string, double> model_s;
  double voxels = 0, study_s = 0;
  std::int64_t processed = 0;  ///< done by this run (throughput counts these alone)
};

CampaignPage::Rows CampaignPage::collect(const CampaignOutcome& outcome) const {
  Rows rows;
  rows.listed.insert(outcome.studies.begin(), outcome.studies.end());
  const auto failures = ledger_.failures();
  const auto selected = [&](const std::string& id) {
    return outcome.selected.empty() || std::find(outcome.selected.begin(), outcome.selected.end(), id) != outcome.selected.end();
  };
  for (const auto& [id, reason] : failures) {
    if (selected(id)) rows.listed.insert(id);  // a failure of a study the inputs no longer list
  }
  for (const auto& id : rows.listed) {
    if (const auto busy = outcome.elsewhere.find(id); outcome.done.count(id) == 0 && busy != outcome.elsewhere.end()) {
      rows.elsewhere.push_back({{"study", id}, {"claimed_by", busy->second}});
      continue;
    }
    if (outcome.done.count(id) == 0) {
      const auto it = failures.find(id);
      const std::string why = !outcome.stopped_by.empty() ? "not started: the campaign was stopped by " +
                                                                outcome.stopped_by + "; a rerun does it"
                                                          : "not processed";
      rows.failed.push_back({{"study", id}, {"error", it == failures.end() ? why : it->second}});
      continue;
    }
    json report = ledger_.report(id);  // verified or just written: no second checksum pass
    if (outcome.this_run.count(id) != 0) {
      const json& timing = report["timing"];
      for (const auto& [route, t] : timing["routes"].items()) {
        if (t.contains("model")) rows.model_s[t["model"]] += t["seconds"].get<double>();
        rows.voxels += t.value("voxels", 0.0);
      }
      rows.study_s += timing.value("total_s", 0.0);
      ++rows.processed;
    }
    rows.done.push_back(id);
    rows.reports.push_back(std::move(report));
  }
  return rows;
}

json CampaignPage::summary(const Rows& rows, const CampaignOutcome& outcome) {
  const auto skipped = static_cast<std::int64_t>(outcome.done_before.size());
  const double wall = outcome.wall_s;
  return {{"studies", rows.listed.size()},
          {"done", rows.done.size()},
          {"failed", rows.failed},
          {"done_by_this_run", rows.processed},
          {"done_by_other_jobs", static_cast<std::int64_t>(rows.done.size()) - rows.processed - skipped},
          {"in_progress_elsewhere", rows.elsewhere},
          {"skipped_as_already_done", skipped},
          {"ranks", outcome.ranks},
          {"stopped_by", outcome.stopped_by.empty() ? json(nullptr) : json(outcome.stopped_by)},
          {"wall_s", wall},
          {"studies_per_hour", wall > 0 ? static_cast<double>(rows.processed) * 3600 / wall : 0.0},
          {"voxels_per_s", wall > 0 ? rows.voxels / wall : 0.0},
          {"study_seconds_total", rows.study_s},
          {"model_seconds", rows.model_s},
          {"done_studies", rows.done}};
}

std::string CampaignPage::html(const Rows& rows, const json& s, const std::string& title, const fs::path& output) {
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Vitruvian campaign</title><style>"
          "body{font-family:sans-serif;margin:2em;background:#fafafa}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}th{background:#eee}"
          ".failed{color:#b00}img{max-width:420px}</style></head><body>\n";
  html << fmt::format(
      "<h1>Campaign: {}</h1>\n<p>{} studies: {} done, {} failed{} ({} already done before this run, {} by "
      "other jobs meanwhile). {} ranks, {:.1f} s wall, {:.0f} studies/h, {:.3g} voxels/s.</p>\n",
      html_escape(title), rows.listed.size(), rows.done.size(), rows.failed.size(),
      rows.elsewhere.empty() ? "" : fmt::format(", {} in progress in other jobs", rows.elsewhere.size()),
      s["skipped_as_already_done"].get<std::int64_t>(), s["done_by_other_jobs"].get<std::int64_t>(),
      s["ranks"].get<int>(), s["wall_s"].get<double>(), s["studies_per_hour"].get<double>(),
      s["voxels_per_s"].get<double>());
  html << "<table><tr><th>study</th><th>structures (mL)</th><th>Dice</th><th>calcium "
          "(Agatston)</th><th>s</th><th>picture</th></tr>\n";
  for (const auto& report : rows.reports) html << study_row(report, output);
  for (const auto& f : rows.failed) {
    html << fmt::format("<tr class=\"failed\"><td>{}</td><td colspan=\"5\">failed: {}</td></tr>\n",
                        html_escape(f["study"].get<std::string>()), html_escape(f["error"].get<std::string>()));
  }
  for (const auto& e : rows.elsewhere) {
    html << fmt::format("<tr><td>{}</td><td colspan=\"5\">in progress: {}</td></tr>\n",
                        html_escape(e["study"].get<std::string>()), html_escape(e["claimed_by"].get<std::string>()));
  }
  html << "</table></body></html>\n";
  return html.str();
}

std::size_t CampaignPage::write(const CampaignOutcome& outcome) const {
  const fs::path& out = ledger_.output();
  const Rows rows = collect(outcome);
  const json s = summary(rows, outcome);
  write_file_atomic(out / "campaign.json", s.dump(2));
  write_file_atomic(out / "index.html", html(rows, s, out.filename().string(), out));
  spdlog::info("campaign: {} studies done, {} failed{}, {:.1f} s; {}", rows.done.size(), rows.failed.size(),
               rows.elsewhere.empty() ? "" : fmt::format(", {} in progress in other jobs", rows.elsewhere.size()),
               outcome.wall_s, (out / "index.html").string());
  return rows.failed.size();
}

}  // namespace vitruvian::campaign
