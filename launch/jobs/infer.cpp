// The campaign wired from its stages (launch/campaign/): set-up agreed by all ranks (config,
// sources, routes and their models, the output folder, the listing), which studies are done,
// the dynamic queue of the rest (largest first; each study claimed against other jobs on the same
// folder, campaign/study_claims.h) through the study pipeline, then rank 0's summary. Ranks talk
// only through the control plane and the work queue, both under the collective timeout.
#include "launch/jobs/infer.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "core/atomic_file.h"
#include "core/comm/work_queue.h"
#include "core/errors.h"
#include "core/stopwatch.h"
#include "core/fault_injection.h"
#include "core/progress.h"
#include "core/stop_request.h"
#include "launch/campaign/campaign_page.h"
#include "launch/campaign/pacs_store.h"
#include "launch/campaign/study_claims.h"
#include "launch/campaign/study_pipeline.h"
#include "launch/campaign/study_source.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using campaign::CampaignConfig;
using campaign::StudyEntry;
using Clock = std::chrono::steady_clock;

/// One run of a campaign on this rank: each step is collective.
class CampaignRun {
 public:
  CampaignRun(const JobContext& context, const CampaignConfig& config, bool force)
      : context_(context), config_(config), force_(force), ledger_(config.output) {}

  ExitCode execute() {
    if (!set_up() || !list()) return ExitCode::kUsage;
    verify();
    work();
    return finish();
  }

 private:
  int rank() const { return context_.env.rank(); }

  /// Every rank checks the config, opens the inputs and loads the routes' models before anything
  /// is written (a bad model or class name stops the job with one line); then rank 0 prepares
  /// the output folder.
  bool set_up() {
    std::string problem = attempt([&] {
      config_.validate();
      claims_ = std::make_unique<campaign::StudyClaims>(config_.output, rank(), config_.claim_timeout_s);
      auto routes = campaign::make_routes(config_, campaign::PredictorOptions::from(config_, context_.device, rank() == 0), rank() == 0);
      sources_ = campaign::make_sources(config_);
      if (config_.store_to.enabled()) store_ = std::make_unique<campaign::PacsStore>(config_.store_to);
      const std::string fingerprint = campaign::campaign_fingerprint(config_, routes);
      pipeline_ = std::make_unique<campaign::StudyPipeline>(std::move(routes), campaign::StudyReport(config_.calcium),
                                                            campaign::make_sinks(config_.outputs, rank()), ledger_, fingerprint);
    });
    fault_point("campaign.setup");
    if (!agree_all(context_, problem, "campaign set-up")) return false;
    if (rank() == 0) {
      problem = attempt([&] {
        const std::set<std::string> chosen(config_.studies.begin(), config_.studies.end());
        if (force_ && claims_->any_live()) {
          throw ConfigError("--force", "another job is working in " + config_.output.string() +
                                           " (a live claim in .claims); run --force alone");
        }
        const auto busy = [&](const std::string& id) { return claims_->live_claimer(id).has_value(); };
        ledger_.prepare(
            force_, [&](const std::string& id) { return chosen.empty() || chosen.count(id) != 0; }, busy,
            config_.claim_timeout_s);
        remove_cache_leftovers(busy);
        write_file_atomic(config_.output / "campaign.yaml", config_.yaml());
      });
    }
    return agree_all(context_, problem, "campaign output folder");
  }

  /// PACS studies a killed run left in OUT/.cache (not those of studies another job holds).
  void remove_cache_leftovers(const std::function<bool(const std::string&)>& busy) const {
    std::error_code error;
    std::vector<fs::path> leftovers;
    for (fs::directory_iterator it(config_.output / ".cache", error), end; !error && it != end; it.increment(error)) {
      const fs::path& path = it->path();
      if (!busy(path.extension() == ".partial" ? path.stem().string() : path.filename().string()))
        leftovers.push_back(path);
    }
    for (const auto& path : leftovers) fs::remove_all(path, error);
  }

  /// Rank 0 lists every input's studies; every rank gets the list, selected by `studies:`.
  bool list() {
    std::string text, problem;
    if (rank() == 0) problem = attempt([&] { text = campaign::entries_to_text(campaign::list_studies(sources_)); });
    if (!agree_all(context_, problem, "campaign listing")) return false;
    text = context_.control.broadcast(std::move(text), 0, "campaign listing");
    problem = attempt([&] { studies_ = selected(campaign::entries_from_text(text)); });
    return agree_all(context_, problem, "campaign study selection");
  }

  /// The listed studies `studies:` selects, in its order (all, in listing order, without it).
  std::vector<StudyEntry> selected(std::vector<StudyEntry> all) const {
    if (config_.studies.empty()) return all;
    std::map<std::string, std::size_t> position;
    for (std::size_t i = 0; i < all.size(); ++i) position.emplace(all[i].id, i);
    std::vector<StudyEntry> kept;
    std::set<std::string> seen;
    for (const auto& id : config_.studies) {
      if (!seen.insert(id).second) continue;
      const auto it = position.find(id);
      if (it == position.end()) throw InputError("studies", "study '" + id + "' is in none of the inputs");
      kept.push_back(all[it->second]);
    }
    return kept;
  }

  /// Which studies are done: each rank verifies a share of the folders (every file's checksum,
  /// and the campaign's fingerprint), and one all-max gives every rank the same answer.
  void verify() {
    done_.assign(studies_.size(), 0);
    const auto ranks = static_cast<std::size_t>(context_.env.size());
    for (std::size_t i = static_cast<std::size_t>(rank()); i < studies_.size(); i += ranks) {
      done_[i] = ledger_.check(studies_[i].id, pipeline_->fingerprint()).empty() ? 1 : 0;
    }
    done_ = context_.control.all_max(std::move(done_), "campaign verification");
    if (store_) {
      // A committed study with a failure record is one whose results the PACS refused: sent again.
      const auto failed = ledger_.failures();
      for (std::size_t i = 0; i < studies_.size(); ++i) {
        if (done_[i] != 0 && failed.count(studies_[i].id) != 0) {
          done_[i] = 0;
          push_only_.insert(i);
        }
      }
    }
    for (std::size_t i = 0; i < studies_.size(); ++i) {
      if (done_[i] == 0) pending_.push_back(i);
    }
    // Largest first (then by id), so the long studies do not end the campaign on one rank.
    std::stable_sort(pending_.begin(), pending_.end(), [&](std::size_t a, std::size_t b) {
      const StudyEntry &x = studies_[a], &y = studies_[b];
      return x.voxels != y.voxels ? x.voxels > y.voxels : x.id < y.id;
    });
    if (rank() == 0) {
      std::vector<std::string> names;
      for (const auto& r : config_.routes) names.push_back(r.name);
      spdlog::info("campaign: {} studies, {} already done, {} to run on {} ranks; routes: {}", studies_.size(),
                   studies_.size() - pending_.size(), pending_.size(), context_.env.size(), fmt::join(names, ", "));
    }
  }

  /// Studies handed out one at a time; a failed study is recorded and the rank takes the next.
  /// With a source that fetches (a PACS), the rank asks for its next study before it processes
  /// the current one and retrieves it meanwhile (one ahead). Once this rank was asked to stop
  /// (SIGTERM, SIGUSR1) it takes no further study: the one in flight is finished, a study
  /// fetched ahead is released unprocessed.
  void work() {
    WorkQueue queue(context_.env.world(), static_cast<std::int64_t>(pending_.size()), context_.env.thread_multiple(),
                    WorkQueueOptions().timeout_s(context_.runtime.collective_timeout_s));
    Progress progress("studies started", static_cast<std::int64_t>(pending_.size()), rank() == 0);
    const bool ahead = std::any_of(sources_.begin(), sources_.end(), [](const auto& s) { return s->fetches(); });
    std::int64_t shown = 0;
    taken_.assign(studies_.size(), 0);
    started_ = claims_->file_system_now();
    std::optional<std::int64_t> item = next_item(queue);
    std::future<void> fetched = item ? fetch(*item) : std::future<void>{};
    while (item) {
      const std::size_t index = pending_[static_cast<std::size_t>(*item)];
      const std::optional<std::int64_t> upcoming = ahead ? next_item(queue) : std::nullopt;
      std::future<void> next_fetched = upcoming ? fetch(*upcoming) : std::future<void>{};
      process(index, fetched);
      if (rank() == 0) {
        const std::int64_t now = queue.handed_out();
        progress.advance(now - shown, studies_[index].id);
        shown = now;
      }
      if (upcoming && stop_requested()) {
        release_unprocessed(*upcoming, next_fetched);
        stopped_by_ = stop_signal();
        break;
      }
      item = ahead ? upcoming : next_item(queue);
      fetched = ahead ? std::move(next_fetched) : (item ? fetch(*item) : std::future<void>{});
    }
    queue.finish();
    if (rank() == 0) progress.advance(queue.handed_out() - shown);
  }

  /// The queue's next item whose study this job takes (claims): others' studies are left to
  /// them. Nothing once this rank was asked to stop (SIGTERM, SIGUSR1).
  std::optional<std::int64_t> next_item(WorkQueue& queue) {
    while (true) {
      if (stop_requested()) {
        stopped_by_ = stop_signal();
        return std::nullopt;
      }
      const std::optional<std::int64_t> item = queue.next();
      if (!item || take(pending_[static_cast<std::size_t>(*item)])) return item;
    }
  }

  /// A study fetched ahead (and claimed) that this rank will not process: the fetch ends, the
  /// copy goes, the claim is released for the rerun or another job.
  void release_unprocessed(std::int64_t item, std::future<void>& fetched) {
    const StudyEntry& entry = studies_[pending_[static_cast<std::size_t>(item)]];
    try {
      if (fetched.valid()) fetched.get();
    } catch (const std::exception& e) {
      spdlog::debug("study {} fetched ahead and not processed: {}", entry.id, e.what());
    }
    sources_[entry.source]->release(entry);
    claims_->release(entry.id);
  }

  /// Claims study `index` for this job (OUT/.claims): false when another job holds it, finished
  /// it, or failed it since this job started (not retried in the same pass).
  bool take(std::size_t index) {
    const std::string& id = studies_[index].id;
    try {
      const auto result = claims_->claim(id);
      if (result == campaign::StudyClaims::Result::kHeldElsewhere) {
        spdlog::debug("study {} is claimed by another job", id);
        return false;
      }
      if (result == campaign::StudyClaims::Result::kTakenOver) ledger_.remove_temporaries_of(id);
      const auto failed_at = ledger_.failure_time(id);
      const bool done = push_only_.count(index) != 0 ? !failed_at : ledger_.check(id, pipeline_->fingerprint()).empty();
      if (done || (failed_at && *failed_at >= started_)) {
        spdlog::debug("study {} was {} by another job meanwhile", id, done ? "done" : "failed");
        claims_->release(id);
        return false;
      }
      taken_[index] = 1;
      return true;
    } catch (const std::exception& e) {
      spdlog::warn("study {}: cannot claim it on rank {}: {}", id, rank(), e.what());
      return false;
    }
  }

  /// Starts bringing the study of queue item `item` to this rank (nothing to wait for when its
  /// source does not fetch, or only its results are sent again).
  std::future<void> fetch(std::int64_t item) {
    const std::size_t index = pending_[static_cast<std::size_t>(item)];
    const campaign::StudySource& source = *sources_[studies_[index].source];
    if (!source.fetches() || push_only_.count(index) != 0) return {};
    return std::async(std::launch::async, [&source, entry = studies_[index]] { source.fetch(entry); });
  }

  void process(std::size_t index, std::future<void>& fetched) {
    fault_point("campaign.study");
    const StudyEntry& entry = studies_[index];
    const campaign::StudySource& source = *sources_[entry.source];
    std::string stage = "process";
    try {
      if (push_only_.count(index) == 0) {
        if (fetched.valid()) fetched.get();
        const auto study = source.open(entry);
        pipeline_->process(*study);
      }
      stage = "store";
      if (store_) store_->push(ledger_.study_dir(entry.id));
      if (push_only_.count(index) != 0) ledger_.clear_failure(entry.id);
      done_[index] = 1;
      spdlog::debug("study {} done on rank {}", entry.id, rank());
    } catch (const std::exception& e) {
      // Recorded, and the campaign goes on (bad input, unsupported geometry, out of memory, a
      // PACS that fails a retrieval or refuses the results: their local outputs stay).
      spdlog::warn("study {} failed on rank {}: {}", entry.id, rank(), e.what());
      try {
        ledger_.record_failure(entry.id, stage, rank(), e.what());
      } catch (const std::exception& inner) {
        spdlog::error("cannot record the failure of {}: {}", entry.id, inner.what());
      }
    }
    source.release(entry);
    claims_->release(entry.id);
  }

  /// Every rank's successes reach rank 0, which writes the summary of the whole folder (with the
  /// studies other jobs finished, or hold, meanwhile); all ranks return its code, or
  /// kInterrupted when any rank stopped taking studies on a signal while some were left.
  ExitCode finish() {
    done_ = context_.control.all_max(std::move(done_), "campaign results");
    taken_ = context_.control.all_max(std::move(taken_), "campaign studies taken");
    const auto done = static_cast<std::size_t>(std::count(done_.begin(), done_.end(), 1));
    // The signal on which some rank stopped taking studies while some were left (0: none).
    const int stopped_by = done == studies_.size()
                               ? 0
                               : static_cast<int>(context_.control.all_max({stopped_by_}, "campaign stop").front());
    std::int64_t code = exit_status(ExitCode::kOk);
    if (rank() == 0) {
      const std::string problem = attempt([&] {
        const campaign::StudyClaims::SummaryLock lock(*claims_);  // one job at a time gathers and writes
        campaign::CampaignOutcome folder = outcome();
        if (stopped_by != 0) folder.stopped_by = signal_name(stopped_by);
        code = exit_status(campaign::CampaignPage(ledger_).write(folder) == 0 ? ExitCode::kOk : ExitCode::kFailed);
      });
      if (!problem.empty()) {
        spdlog::error("campaign summary: {}", problem);
        code = exit_status(ExitCode::kFailed);
      }
    }
    const auto agreed = static_cast<ExitCode>(context_.control.all_max({code}, "campaign exit code").front());
    if (stopped_by == 0) return agreed;
    if (rank() == 0) {
      spdlog::info("campaign: stopped by {}; {} of {} studies done; run the same command again to do the other {}",
                   signal_name(stopped_by), done, studies_.size(), studies_.size() - done);
    }
    return ExitCode::kInterrupted;
  }

  /// The folder as rank 0 sees it at the end: studies done (by this job, before it, or by other
  /// jobs meanwhile), those other jobs still hold, and those this job took.
  campaign::CampaignOutcome outcome() const {
    campaign::CampaignOutcome outcome;
    std::vector<char> pending(studies_.size(), 0);
    for (const auto i : pending_) pending[i] = 1;
    for (std::size_t i = 0; i < studies_.size(); ++i) {
      const std::string& id = studies_[i].id;
      outcome.studies.push_back(id);
      // Committed by another job counts unless it has a failure record (results a PACS refused).
      if (done_[i] != 0 || (ledger_.committed(id, pipeline_->fingerprint()) && !ledger_.failure_time(id))) {
        outcome.done.insert(id);
      } else if (const auto claimer = claims_->live_claimer(id)) {
        outcome.elsewhere.emplace(id, claimer->describe());
      }
      if (taken_[i] != 0) outcome.this_run.insert(id);
      if (pending[i] == 0) outcome.done_before.insert(id);
    }
    outcome.selected = config_.studies;
    outcome.wall_s = seconds_since(start_);
    outcome.ranks = context_.env.size();
    return outcome;
  }

  const JobContext& context_;
  CampaignConfig config_;
  bool force_;
  campaign::Ledger ledger_;
  Clock::time_point start_ = Clock::now();
  std::vector<std::unique_ptr<campaign::StudySource>> sources_;
  std::unique_ptr<campaign::StudyPipeline> pipeline_;
  std::unique_ptr<campaign::PacsStore> store_;     ///< store_to: where results go (null: nowhere)
  std::unique_ptr<campaign::StudyClaims> claims_;  ///< this rank's claims of studies (OUT/.claims)
  std::vector<std::int64_t> taken_;                ///< 1: this rank took the study (claimed it)
  double started_ = 0;                             ///< when work began, on the file system's clock
  std::set<std::size_t> push_only_;                ///< studies done but whose results the PACS refused
  std::vector<StudyEntry> studies_;
  std::vector<std::int64_t> done_;
  std::vector<std::size_t> pending_;  ///< indices into studies_, in the order they are handed out
  std::int64_t stopped_by_ = 0;       ///< the signal on which this rank stopped taking studies, 0: none
};

/// `vitruvian infer`: the campaign's keys from --campaign, --config, --set and the flags below.
class InferVerb final : public Verb {
 public:
  CLI::App* add_to(CLI::App& app) override {
    CLI::App* infer = add_verb_command(
        app, "infer",
        "Run exported models over many studies as one campaign across the ranks: label maps, a report per study "
        "(volumes, intensities, lesions, calcium score, Dice where truth exists) and an HTML summary; reruns skip "
        "studies already done",
        "Campaign keys: launch/configs/campaign_example.yaml; any of them also as --set KEY=VALUE (routes.0.lesions=...).\n"
        "Threads per rank: --threads (runtime.intra_op_threads).");
    infer->add_option("--campaign", campaign_, "Campaign YAML: inputs, output, routes (launch/configs/campaign_example.yaml)")
        ->check(CLI::ExistingFile);
    add_value(infer, "-i,--input", "input", "HDF5 dataset or index, NIfTI file or folder, DICOM folder (repeatable)", true);
    add_value(infer, "-o,--out", "output", "Output folder");
    infer->add_option("-m,--model", models_, "Exported model folder, or NAME=DIR (repeatable; each is a route)");
    infer->add_option("--studies", studies_, "Only these study ids")->delimiter(',');
    add_value(infer, "--series-name", "series_name", "Series name of plain NIfTI inputs (default image)");
    add_value(infer, "--modality", "modality", "Modality of plain NIfTI inputs: CT or MR");
    add_value(infer, "--overlap", "overlap", "Window overlap, 0 to <1 (default 0.5)");
    add_value(infer, "--batch", "batch", "Windows per forward call (default 2)");
    infer->add_option("--mirror", mirror_, "Test-time mirroring along any of zyx (up to 8 flips), or none");
    add_value(infer, "--accumulation", "accumulation", "fp32 or fp16 stitching accumulator");
    add_value(infer, "--precision", "precision",
              "Forward passes: fp32, bf16 or fp16 (CUDA: autocast; CPU: bf16 runs a whole-bf16 network, fp16 stays fp32)");
    infer->add_flag("--channels-last", channels_last_, "Channels-last 3D weights and windows");
    add_value(infer, "--engine", "engine",
              "CPU forward passes: auto (plain U-Nets in fp32 on oneDNN's primitives directly, the rest on LibTorch's ops) "
              "or libtorch (always LibTorch's ops); default auto");
    add_value(infer, "--memory-limit", "memory_limit", "Per-rank memory budget for a study, e.g. 3G (default 3G)");
    infer->add_flag("--nifti", nifti_, "Also write each label map as NIfTI (adds nifti to outputs)");
    infer->add_flag("--force", force_, "Redo every selected study: the outputs of earlier runs are removed");
    return infer;
  }

  std::vector<std::filesystem::path> config_files() const override {
    return campaign_.empty() ? std::vector<std::filesystem::path>{} : std::vector<std::filesystem::path>{campaign_};
  }

  void add_flags(ConfigSources& sources) override {
    for (const auto& [key, flag] : values_) {
      if (!flag.values.empty()) flag.list ? sources.set(key, flag.values, flag.name) : sources.set(key, flag.values.back(), flag.name);
    }
    if (!studies_.empty()) sources.set("studies", studies_, "--studies");
    if (mirror_) sources.set("mirror_axes", *mirror_ == "none" ? "" : *mirror_, "--mirror " + *mirror_);
    if (channels_last_) sources.set("channels_last", "true", "--channels-last");
    std::size_t next = sources.list_size("routes");  // each --model is one more route
    for (const auto& m : models_) {
      const auto eq = m.find('=');
      const std::string item = "routes." + std::to_string(next++);
      sources.set(item + ".name", eq == std::string::npos ? "organs" : m.substr(0, eq), "--model " + m);
      sources.set(item + ".model", eq == std::string::npos ? m : m.substr(eq + 1), "--model " + m);
    }
    origins_.clear();
    for (std::size_t i = 0; i < sources.list_size("routes"); ++i) origins_.push_back(sources.origin_of("routes." + std::to_string(i)));
  }

  std::vector<ConfigVisit> sections() override {
    return {[this](ConfigVisitor& v) {
      config_.visit(v);
      const auto& outputs = config_.outputs;
      if (nifti_ && std::find(outputs.begin(), outputs.end(), "nifti") == outputs.end()) config_.outputs.push_back("nifti");
    }};
  }

  ExitCode run(const JobContext& context) override {
    for (std::size_t i = 0; i < config_.routes.size() && i < origins_.size(); ++i) config_.routes[i].origin = origins_[i];
    return run_infer(context, config_, force_);
  }

 private:
  /// A flag that sets one campaign key to its text as given (or a list of texts).
  struct ValueFlag {
    std::string name;
    bool list = false;
    std::vector<std::string> values;
  };
  void add_value(CLI::App* app, const std::string& flag, const std::string& key, const std::string& help, bool list = false) {
    ValueFlag& f = values_[key];
    f.name = flag.substr(flag.find("--"));
    f.list = list;
    CLI::Option* option = app->add_option(flag, f.values, help);
    if (!list) option->expected(1);
  }

  std::string campaign_;
  std::map<std::string, ValueFlag> values_;  ///< campaign key -> its flag
  std::vector<std::string> models_, studies_;
  std::optional<std::string> mirror_;
  bool channels_last_ = false, nifti_ = false, force_ = false;
  std::vector<std::string> origins_;  ///< where each route was declared
  CampaignConfig config_;
};

}  // namespace

ExitCode run_infer(const JobContext& context, const CampaignConfig& config, bool force) {
  install_stop_handlers();  // from here SIGTERM and SIGUSR1 stop the campaign between studies
  return CampaignRun(context, config, force).execute();
}

std::unique_ptr<Verb> make_infer_verb() { return std::make_unique<InferVerb>(); }

}  // namespace vitruvian::jobs
