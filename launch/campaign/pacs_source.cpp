// A PACS as a study source: the query runs on rank 0 at listing; each study is retrieved into
// OUT/.cache/<StudyInstanceUID>/ on the rank that takes it (through a .partial folder renamed
// when complete), opened like a DICOM folder study without its non-image objects, and removed
// once its outputs are committed or it failed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "core/errors.h"
#include "core/fault_injection.h"
#include "launch/campaign/study_source.h"
#include "launch/pacs/pacs_client.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;

class PacsSource final : public StudySource {
 public:
  PacsSource(pacs::PacsSourceConfig config, fs::path cache) : config_(std::move(config)), cache_(std::move(cache)) {
    pacs::make_pacs_client(config_)->echo();
  }

  std::string input() const override { return config_.describe(); }

  /// Entries: id and locator the StudyInstanceUID; voxels the study's instance count (a proxy
  /// for its size, for largest-first order).
  std::vector<StudyEntry> list() const override {
    const auto matches = pacs::make_pacs_client(config_)->find_studies(config_.query);
    if (matches.empty()) throw InputError(input(), "no study matches the query (source.pacs.query)");
    std::vector<StudyEntry> entries;
    for (const auto& m : matches) entries.push_back({0, m.study_uid, m.instances, m.study_uid});
    return entries;
  }

  bool fetches() const override { return true; }
  bool dicom() const override { return true; }

  void fetch(const StudyEntry& entry) const override {
    const fs::path folder = cache_ / entry.locator;
    std::error_code error;
    if (fs::exists(folder, error)) return;
    const fs::path partial = cache_ / (entry.locator + ".partial");
    fs::remove_all(partial, error);
    fault_point("pacs.retrieve");
    try {
      spdlog::debug("retrieving study {} from {}", entry.locator, input());
      const auto files = pacs::make_pacs_client(config_)->retrieve_study(entry.locator, partial);
      fs::rename(partial, folder);
      spdlog::debug("retrieved study {}: {} objects", entry.locator, files.size());
    } catch (...) {
      fs::remove_all(partial, error);
      throw;
    }
  }

  std::unique_ptr<Study> open(const StudyEntry& entry) const override {
    fetch(entry);
    std::vector<fs::path> images;
    std::map<std::string, int> skipped;  // kind (Modality or SOP class) -> count
    for (const auto& f : fs::directory_iterator(cache_ / entry.locator)) {
      std::string kind;
      if (pacs::is_image_object(f.path(), kind)) {
        images.push_back(f.path());
      } else {
        ++skipped[kind];
      }
    }
    std::sort(images.begin(), images.end());
    std::vector<std::string> notes;
    for (const auto& [kind, n] : skipped)
      notes.push_back(fmt::format("left out {} non-image object(s) of the study ({})", n, kind));
    if (images.empty()) throw InputError(input(), "study " + entry.id + " holds no image (only non-image objects)");
    return open_dicom_study(input(), entry.id, entry.locator, images, std::move(notes));
  }

  void release(const StudyEntry& entry) const override {
    std::error_code error;
    fs::remove_all(cache_ / entry.locator, error);
    fs::remove_all(cache_ / (entry.locator + ".partial"), error);
    if (error)
      spdlog::warn("cannot remove the cached study {}: {}", (cache_ / entry.locator).string(), error.message());
  }

 private:
  pacs::PacsSourceConfig config_;
  fs::path cache_;
};

}  // namespace

std::unique_ptr<StudySource> make_pacs_source(const pacs::PacsSourceConfig& config, std::filesystem::path cache) {
  return std::make_unique<PacsSource>(config, std::move(cache));
}

}  // namespace vitruvian::campaign
