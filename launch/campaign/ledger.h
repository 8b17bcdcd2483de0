// The campaign's record of its studies in its output folder: OUT/studies/<id>/ written whole or
// not at all, with a manifest of checksums that a rerun verifies before skipping the study, and
// OUT/failed/<id>.json for studies that failed (with the reason). Rank 0 prepares the folder
// (leftovers of killed runs removed; with --force, the chosen studies' outputs); any rank
// commits and records its own studies.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace vitruvian::campaign {

class Ledger {
 public:
  explicit Ledger(std::filesystem::path output);

  const std::filesystem::path& output() const { return output_; }
  std::filesystem::path study_dir(const std::string& id) const;

  /// Creates OUT/studies and OUT/failed; removes temporary folders and files that killed runs
  /// left there, except those of studies `busy` names (another job is writing them: its claim is
  /// live) and, in OUT itself, those younger than `quiet_s` seconds (another job's summary);
  /// with `force`, removes the outputs and failure records of the studies `chosen` accepts, and
  /// the campaign summary (campaign.json, index.html).
  void prepare(bool force, const std::function<bool(const std::string&)>& chosen,
               const std::function<bool(const std::string&)>& busy = {}, double quiet_s = 0) const;

  /// Removes the temporary folders a killed writer of study `id` left in OUT/studies (for the
  /// job that takes over its stale claim).
  void remove_temporaries_of(const std::string& id) const;

  /// Whether OUT/studies/<id> holds a report made with `fingerprint`, without verifying its
  /// checksums: for a study another job committed while this one ran.
  bool committed(const std::string& id, const std::string& fingerprint) const;

  /// When the failure record of `id` was written (its mtime, seconds since the epoch on the file
  /// system's clock), or nothing when there is none.
  std::optional<double> failure_time(const std::string& id) const;

  /// Why OUT/studies/<id> is not a finished study of this campaign ("" when it is): missing,
  /// failing its manifest (a file missing, resized or changed), its report unreadable, or made
  /// with another `fingerprint`.
  std::string check(const std::string& id, const std::string& fingerprint) const;

  /// Writes OUT/studies/<id> through a temporary folder that `fill` fills, then renamed into
  /// place with its manifest; clears the study's failure record. On any error nothing is left.
  void commit(const std::string& id, const std::function<void(const std::filesystem::path&)>& fill) const;

  /// Records why a study failed (OUT/failed/<id>.json: study, stage, rank, error), atomically.
  void record_failure(const std::string& id, const std::string& stage, int rank, const std::string& error) const;

  /// Removes a study's failure record (its results were sent after all).
  void clear_failure(const std::string& id) const;

  /// Failure records: study id → error (a record that cannot be read says so).
  std::map<std::string, std::string> failures() const;

  /// The report of a committed study.
  nlohmann::json report(const std::string& id) const;

 private:
  std::filesystem::path output_;
};

}  // namespace vitruvian::campaign
