// One study through the campaign: every route that applies, the report built from their
// results, every sink writing into the study's temporary folder, and the ledger committing it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "launch/campaign/ledger.h"
#include "launch/campaign/route.h"
#include "launch/campaign/sink.h"
#include "launch/campaign/study_report.h"

namespace vitruvian::campaign {

class StudyPipeline {
 public:
  StudyPipeline(std::vector<std::unique_ptr<Route>> routes, StudyReport report, std::vector<std::unique_ptr<Sink>> sinks,
                const Ledger& ledger, std::string fingerprint);

  /// Processes `study` and commits its folder. Throws on any failure (bad input, unsupported
  /// geometry, over the memory limit, a write that fails), leaving nothing of it behind.
  void process(Study& study) const;

  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  std::vector<std::unique_ptr<Route>> routes_;
  StudyReport report_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  const Ledger& ledger_;
  std::string fingerprint_;
};

}  // namespace vitruvian::campaign
