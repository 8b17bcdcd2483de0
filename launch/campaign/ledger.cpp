// Study folders, their verification and the failure records.
#include "launch/campaign/ledger.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/atomic_file.h"
#include "core/checkpoint.h"
#include "core/errors.h"

namespace vitruvian::campaign {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path.string(), "cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A record under OUT/failed: "<id>.json", not a temporary of a write that was cut short.
bool is_failure_record(const fs::path& path) {
  return path.extension() == ".json" && !is_temporary_name(path.filename().string());
}

/// The study a temporary in OUT/studies or OUT/failed is written for: ".ID.tmp.P.N" → ID,
/// ".ID.json.tmp.P.N.json" → ID.
std::string study_of_temporary(const std::string& filename) {
  std::string name = filename.substr(1, filename.rfind(".tmp.") - 1);
  if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) name.resize(name.size() - 5);
  return name;
}

/// Removes the temporaries directly in `folder` that `keep` does not keep.
void remove_leftovers(const fs::path& folder, const std::function<bool(const fs::directory_entry&)>& keep) {
  std::vector<fs::path> leftovers;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (is_temporary_name(entry.path().filename().string()) && !keep(entry)) leftovers.push_back(entry.path());
  }
  for (const auto& path : leftovers) {
    std::error_code error;
    fs::remove_all(path, error);
    if (error) throw InputError(path.string(), "cannot remove this leftover of a killed run: " + error.message());
  }
}

}  // namespace

Ledger::Ledger(fs::path output) : output_(std::move(output)) {}

fs::path Ledger::study_dir(const std::string& id) const { return output_ / "studies" / id; }

void Ledger::prepare(bool force, const std::function<bool(const std::string&)>& chosen,
                     const std::function<bool(const std::string&)>& busy, double quiet_s) const {
  fs::create_directories(output_ / "studies");
  fs::create_directories(output_ / "failed");
  const auto of_busy_study = [&](const fs::directory_entry& entry) {
    return busy && busy(study_of_temporary(entry.path().filename().string()));
  };
  remove_leftovers(output_ / "studies", of_busy_study);
  remove_leftovers(output_ / "failed", of_busy_study);
  const auto now = fs::file_time_type::clock::now();
  remove_leftovers(output_, [&](const fs::directory_entry& entry) {
    std::error_code error;
    const auto written = fs::last_write_time(entry.path(), error);
    return !error && std::chrono::duration<double>(now - written).count() < quiet_s;
  });
  std::error_code ignored;
  if (!force) return;
  for (const auto& entry : fs::directory_iterator(output_ / "studies")) {
    if (chosen(entry.path().filename().string())) fs::remove_all(entry.path(), ignored);
  }
  for (const auto& entry : fs::directory_iterator(output_ / "failed")) {
    if (is_failure_record(entry.path()) && chosen(entry.path().stem().string())) fs::remove(entry.path(), ignored);
  }
  for (const char* f : {"campaign.json", "index.html"}) fs::remove(output_ / f, ignored);
}

std::string Ledger::check(const std::string& id, const std::string& fingerprint) const {
  const fs::path dir = study_dir(id);
  std::error_code error;
  if (!fs::exists(dir, error)) return "not done";
  if (std::string why = verify_checkpoint(dir); !why.empty()) return why;
  try {
    const std::string made_by = json::parse(read_text(dir / "report.json")).value("campaign_fingerprint", "");
    return made_by == fingerprint ? "" : "made with other settings or models";
  } catch (const std::exception& e) {
    return std::string("report unreadable: ") + e.what();
  }
}

void Ledger::remove_temporaries_of(const std::string& id) const {
  remove_leftovers(output_ / "studies", [&](const fs::directory_entry& entry) {
    return study_of_temporary(entry.path().filename().string()) != id;
  });
}

bool Ledger::committed(const std::string& id, const std::string& fingerprint) const {
  std::error_code error;
  if (!fs::exists(study_dir(id) / "manifest.json", error)) return false;
  try {
    return report(id).value("campaign_fingerprint", "") == fingerprint;
  } catch (const std::exception&) {
    return false;
  }
}

std::optional<double> Ledger::failure_time(const std::string& id) const {
  struct stat st {};
  if (::stat((output_ / "failed" / (id + ".json")).c_str(), &st) != 0) return std::nullopt;
  return static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) * 1e-9;
}

void Ledger::commit(const std::string& id, const std::function<void(const fs::path&)>& fill) const {
  write_checkpoint(output_ / "studies", id, fill);
  clear_failure(id);
}

void Ledger::clear_failure(const std::string& id) const {
  std::error_code ignored;
  fs::remove(output_ / "failed" / (id + ".json"), ignored);
}

void Ledger::record_failure(const std::string& id, const std::string& stage, int rank, const std::string& error) const {
  write_file_atomic(output_ / "failed" / (id + ".json"),
                    json{{"study", id}, {"stage", stage}, {"rank", rank}, {"error", error}}.dump(2));
}

std::map<std::string, std::string> Ledger::failures() const {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::directory_iterator(output_ / "failed")) {
    if (!is_failure_record(entry.path())) continue;
    std::string reason;
    try {
      reason = json::parse(read_text(entry.path())).value("error", "failed");
    } catch (const std::exception&) {
      reason = "failed (its record " + entry.path().string() + " is unreadable)";
    }
    out.emplace(entry.path().stem().string(), reason);
  }
  return out;
}

json Ledger::report(const std::string& id) const { return json::parse(read_text(study_dir(id) / "report.json")); }

}  // namespace vitruvian::campaign
