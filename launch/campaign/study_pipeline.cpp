// Routes → report → sinks → ledger for one study.
#include "launch/campaign/study_pipeline.h"

#include <fmt/format.h>

#include <chrono>

#include "core/errors.h"
#include "core/fault_injection.h"
#include "core/stopwatch.h"

namespace vitruvian::campaign {

StudyPipeline::StudyPipeline(std::vector<std::unique_ptr<Route>> routes, StudyReport report,
                             std::vector<std::unique_ptr<Sink>> sinks, const Ledger& ledger, std::string fingerprint)
    : routes_(std::move(routes)),
      report_(std::move(report)),
      sinks_(std::move(sinks)),
      ledger_(ledger),
      fingerprint_(std::move(fingerprint)) {}

void StudyPipeline::process(Study& study) const {
  const auto start = std::chrono::steady_clock::now();
  nlohmann::json notes = nlohmann::json::array();
  for (const auto& note : study.notes) notes.push_back(note);
  std::vector<RouteResult> results;
  const std::size_t study_notes = notes.size();
  bool applied = false;
  for (const auto& route : routes_) {
    if (!route->applies(study)) continue;
    applied = true;
    if (auto r = route->run(study, notes)) results.push_back(std::move(*r));
  }
  if (applied && results.empty()) {
    // Routes were meant for this study and none could run: a failure with their reasons, not a
    // study done with nothing in it.
    std::string why;
    for (std::size_t k = study_notes; k < notes.size(); ++k)
      why += (why.empty() ? "" : "; ") + notes[k].get<std::string>();
    throw InputError(fmt::format("study {}", study.id()),
                     "no route could run: " + (why.empty() ? "none said why" : why));
  }
  nlohmann::json report = report_.build(study, results, std::move(notes), fingerprint_);
  FinishedStudy finished(study, std::move(results), std::move(report));
  finished.started = start;
  ledger_.commit(study.id(), [&](const std::filesystem::path& dir) {
    for (const auto& sink : sinks_) {
      fault_point("campaign.sink");  // tests: a job killed with a study half written
      const auto begun = SteadyClock::now();
      sink->write(finished, dir);
      finished.output_s[sink->name()] = seconds_since(begun);
    }
  });
}

}  // namespace vitruvian::campaign
