// `vitruvian perfusion`: one perfusion route over an input, through the campaign's stages, and a
// line per study with its volumes and DEFUSE-3 verdict.
#include "launch/jobs/perfusion.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "launch/campaign/perfusion_summary.h"
#include "launch/jobs/infer.h"

namespace vitruvian::jobs {

namespace {

namespace fs = std::filesystem;

/// What a study's report says, in one line: "ID: core …, Tmax>6s …, mismatch …, lesion …; DEFUSE-3 …".
std::string summary_line(const nlohmann::json& report) {
  const campaign::PerfusionTriagePhrases t = campaign::perfusion_triage_phrases(report.at("perfusion"));
  return fmt::format("{}: {}, {}, {}, {}; DEFUSE-3 {}", report.value("study", "?"), t.core, t.hypoperfused, t.mismatch,
                     t.side, t.verdict);
}

class PerfusionVerb final : public Verb {
 public:
  CLI::App* add_to(CLI::App& app) override {
    CLI::App* c = add_verb_command(
        app, "perfusion",
        "CT perfusion of one study: CBF, CBV, MTT, Tmax and TTP maps, ischaemic core and penumbra, volumes, "
        "mismatch and the DEFUSE-3 verdict (docs/PERFUSION.md), written as a campaign folder (report.json, "
        "labels.h5, index.html)",
        "Thresholds: any key of docs/PERFUSION.md as --set perfusion.KEY=VALUE (perfusion.tmax_threshold_s=6).\n"
        "Threads: --threads (runtime.intra_op_threads).");
    c->add_option("input", input_, "HDF5 dataset, NIfTI file or DICOM folder holding the study")->required();
    c->add_option("--study", studies_, "Only this study id (repeatable; default: every study of the input)");
    c->add_option("-o,--out", output_, "Output folder")->required();
    c->add_option("--series", series_, "The 4D series to analyse (default: the study's first 4D CT series)");
    c->add_flag("--nifti", nifti_, "Also write the label map and the maps as NIfTI");
    c->add_flag("--dicom", dicom_,
                "Also write DICOM objects for the PACS (DICOM input only): core and penumbra as a SEG, each map as a "
                "parametric map, the volumes and verdict as an SR");
    c->add_flag("--force", force_, "Redo the study even when its outputs are verified");
    return c;
  }

  std::vector<ConfigVisit> sections() override {
    return {[this](ConfigVisitor& v) { v.section("perfusion", [this](ConfigVisitor& p) { options_.visit(p); }); }};
  }

  ExitCode run(const JobContext& context) override {
    campaign::CampaignConfig config;
    config.inputs = {input_};
    config.output = output_;
    config.studies = studies_;
    config.outputs = {"hdf5", "thumbnail"};
    if (nifti_) config.outputs.push_back("nifti");
    if (dicom_) config.outputs.insert(config.outputs.end(), {"dicom_seg", "dicom_pmap", "dicom_sr"});
    campaign::RouteConfig route;
    route.name = "perfusion";
    route.analysis = "perfusion";
    route.perfusion = options_;
    if (!series_.empty()) route.series = {series_};
    route.origin = "vitruvian perfusion";
    config.routes = {route};
    config.validate();
    const ExitCode code = run_infer(context, config, force_);
    if (context.env.rank() == 0) print_summaries();
    return code;
  }

 private:
  /// One line per study of the output, in study order: its triage, or why it failed.
  void print_summaries() const {
    std::map<std::string, std::string> lines;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(output_ / "studies", ec)) {
      std::ifstream in(entry.path() / "report.json");
      if (!in) continue;
      const nlohmann::json report = nlohmann::json::parse(in, nullptr, false);
      if (report.is_discarded() || !report.contains("perfusion")) continue;
      lines[entry.path().filename().string()] = summary_line(report);
    }
    std::ifstream in(output_ / "campaign.json");
    const nlohmann::json campaign = nlohmann::json::parse(in, nullptr, false);
    if (!campaign.is_discarded() && campaign.contains("failed")) {
      for (const auto& f : campaign["failed"]) {
        const std::string id = f.value("study", "?");
        lines[id] = fmt::format("{}: failed: {}", id, f.value("error", "?"));
      }
    }
    for (const auto& [id, line] : lines) std::cout << line << std::endl;
  }

  fs::path input_, output_;
  std::vector<std::string> studies_;
  std::string series_;
  bool nifti_ = false, dicom_ = false, force_ = false;
  data::PerfusionOptions options_;
};

}  // namespace

std::unique_ptr<Verb> make_perfusion_verb() { return std::make_unique<PerfusionVerb>(); }

}  // namespace vitruvian::jobs
