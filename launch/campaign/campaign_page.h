// The campaign's summary, written by rank 0 at the end: OUT/campaign.json (studies done and
// failed with reasons, throughput of this run, seconds per model) and OUT/index.html (a table of
// studies with volumes, lesion counts, Dice, calcium, time and thumbnail, and the failures),
// linked relatively so the folder opens in a browser anywhere.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "launch/campaign/ledger.h"

namespace vitruvian::campaign {

/// What rank 0 knows at the end of a run.
struct CampaignOutcome {
  std::vector<std::string> studies;   ///< the campaign's studies (after `studies:` selection)
  std::set<std::string> done;         ///< those with a finished folder (verified, or written now by any job)
  std::set<std::string> this_run;     ///< those this job took (claimed and processed)
  std::set<std::string> done_before;  ///< those found done when this job started
  /// Studies another job is still working on (its claim is live): study → the claimer.
  std::map<std::string, std::string> elsewhere;
  std::vector<std::string> selected;  ///< the campaign's `studies:` list (empty: all)
  double wall_s = 0;
  int ranks = 1;
  /// "SIGTERM" or "SIGUSR1" when the campaign stopped taking studies on that signal ("" when not):
  /// studies not done without a failure record were not started, and a rerun does them.
  std::string stopped_by;
};

class CampaignPage {
 public:
  explicit CampaignPage(const Ledger& ledger) : ledger_(ledger) {}

  /// Writes campaign.json and index.html (atomically); returns the number of failed studies.
  std::size_t write(const CampaignOutcome& outcome) const;

 private:
  struct Rows;
  Rows collect(const CampaignOutcome& outcome) const;
  static nlohmann::json summary(const Rows& rows, const CampaignOutcome& outcome);
  static std::string html(const Rows& rows, const nlohmann::json& summary, const std::string& title,
                          const std::filesystem::path& output);

  const Ledger& ledger_;
};

}  // namespace vitruvian::campaign
