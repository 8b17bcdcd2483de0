// Where a campaign's studies come from. A StudySource lists the studies of one input (cheaply:
// headers, not voxels) and opens any of them on any rank; one implementation per kind of input
// (an HDF5 dataset or shard index, NIfTI files, a DICOM folder, a PACS), chosen from the input
// itself or from the campaign's `source` section. A new kind of input is one new class here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "launch/campaign/campaign_config.h"
#include "launch/campaign/study.h"

namespace vitruvian::campaign {

/// A listed study: enough to order the work and to open it on another rank.
struct StudyEntry {
  std::size_t source = 0;   ///< index of its source in the campaign's list
  std::string id;
  std::int64_t voxels = 0;  ///< spatial voxels of its largest series (for largest-first order)
  /// What the source needs to open it, as text that travels between ranks (the source's own
  /// business: a file name, a JSON list of files, ...).
  std::string locator;
};

class StudySource {
 public:
  virtual ~StudySource() = default;
  /// The input as the user gave it (for messages and the report's "input").
  virtual std::string input() const = 0;
  /// The studies it holds, in a fixed order (called on one rank; the result is broadcast).
  /// InputError when the input as a whole cannot be read.
  virtual std::vector<StudyEntry> list() const = 0;
  /// Opens a listed study on this rank. Throws (InputError, Hdf5Error, ...) when it cannot be
  /// read: the campaign records the study as failed and goes on.
  virtual std::unique_ptr<Study> open(const StudyEntry& entry) const = 0;
  /// Whether its studies carry their series' DICOM identity (Study::dicom_identity), which the
  /// DICOM outputs (dicom_seg, dicom_pmap, dicom_sr) need.
  virtual bool dicom() const { return false; }

  /// Whether studies must be brought to the rank before open() (a PACS): the campaign then
  /// fetches the next study in the background while the current one runs.
  virtual bool fetches() const { return false; }
  /// Brings the study to this rank (a retrieval into a local cache); open() does it itself when
  /// it has not run. Thread-safe: runs on a background thread beside open() of another study.
  /// Throws like open().
  virtual void fetch(const StudyEntry& /*entry*/) const {}
  /// Drops what fetch() brought, once the study's outputs are committed or it failed.
  virtual void release(const StudyEntry& /*entry*/) const {}
};

/// The implementations, for make_sources() and tests.
std::unique_ptr<StudySource> make_hdf5_source(const std::filesystem::path& dataset);
/// `files`: each one study named after the file (its series `series_name`, of `modality`).
std::unique_ptr<StudySource> make_nifti_source(std::filesystem::path input, std::vector<std::filesystem::path> files,
                                               std::string series_name, std::string modality);
/// Study ids: the folder's name for the first StudyInstanceUID (in UID order), then _2, _3, ...
std::unique_ptr<StudySource> make_dicom_source(const std::filesystem::path& folder);
/// A PACS queried with `config.query` (C-FIND / QIDO-RS) by list(); each study retrieved on the
/// rank that opens it (C-GET / WADO-RS) into `cache`/<StudyInstanceUID>/ and removed by
/// release(). Study ids are the StudyInstanceUIDs. Checks at once that the PACS answers
/// (C-ECHO / QIDO-RS): PacsError naming it and the peer's reason.
std::unique_ptr<StudySource> make_pacs_source(const pacs::PacsSourceConfig& config, std::filesystem::path cache);

/// A study from DICOM files of one StudyInstanceUID, every series read whole (a series that
/// fails its checks is left out with a note; `notes` start the study's notes). `input` names
/// the source in messages; InputError when no series can be read.
std::unique_ptr<Study> open_dicom_study(const std::string& input, const std::string& id, const std::string& study_uid,
                                        const std::vector<std::filesystem::path>& files,
                                        std::vector<std::string> notes = {});

/// One source per input of `config`: an HDF5 file (by its signature) is a dataset or shard
/// index, a .nii/.nii.gz file is one NIfTI study, a folder holding NIfTI files is one study per
/// file, any other folder is a DICOM folder (one study per StudyInstanceUID); then the PACS of
/// `source.pacs`, caching under OUT/.cache. InputError for an input that does not exist. HDF5
/// inputs are opened here (their structure is checked), a PACS is asked whether it answers.
/// ConfigError naming the input when `outputs` asks for a DICOM output (dicom_seg, dicom_pmap,
/// dicom_sr) and an input is not DICOM.
std::vector<std::unique_ptr<StudySource>> make_sources(const CampaignConfig& config);

/// Every source's studies, numbered by source, as one list; InputError naming both inputs when
/// a study id repeats.
std::vector<StudyEntry> list_studies(const std::vector<std::unique_ptr<StudySource>>& sources);

/// Entries as text for the ranks (JSON) and back.
std::string entries_to_text(const std::vector<StudyEntry>& entries);
std::vector<StudyEntry> entries_from_text(const std::string& text);

}  // namespace vitruvian::campaign
