// The `train` verb; the config's keys and checks are in train_config.cpp, the run itself in
// training_run.cpp.
#include "launch/jobs/train.h"

#include <CLI/CLI.hpp>

#include <optional>

namespace vitruvian::jobs {

namespace {

class TrainVerb final : public Verb {
 public:
  CLI::App* add_to(CLI::App& app) override {
    CLI::App* train = add_verb_command(
        app, "train",
        "Train an organ network on an HDF5 dataset, data-parallel over the ranks (config sections data, model, "
        "optimizer, train; launch/configs/quickstart.yaml)");
    resume_ =
        train->add_option("--resume", resume_mode_,
                          "Continue from the newest complete checkpoint in train.run_dir; --resume auto: the same, "
                          "or start fresh when there is none (for jobs a scheduler may requeue)");
    resume_->expected(0, 1)->check(
        [](const std::string& value) {
          return value.empty() || value == "auto" ? "" : "'" + value + "'; expected auto or no value";
        },
        "auto");
    train->add_flag("--force", flags_.force, "Start over: remove an existing run's checkpoints, metrics and model");
    train->add_option("--run-dir", run_dir_, "Run folder (train.run_dir)");
    train->add_option("--steps", steps_, "Optimiser steps (train.steps)");
    return train;
  }
  std::vector<ConfigVisit> sections() override {
    return {[this](ConfigVisitor& v) { config_.visit(v); }};
  }
  std::vector<std::string> overrides() const override {
    std::vector<std::string> keys;
    if (run_dir_) keys.push_back("train.run_dir=" + *run_dir_);
    if (steps_) keys.push_back("train.steps=" + std::to_string(*steps_));
    return keys;
  }
  ExitCode run(const JobContext& context) override {
    if (resume_->count() > 0) flags_.resume = resume_mode_ == "auto" ? ResumeMode::kAuto : ResumeMode::kLatest;
    return run_train(context, config_, flags_);
  }

 private:
  TrainConfig config_;
  TrainFlags flags_;
  CLI::Option* resume_ = nullptr;
  std::string resume_mode_;
  std::optional<std::string> run_dir_;
  std::optional<std::int64_t> steps_;
};

}  // namespace

std::unique_ptr<Verb> make_train_verb() { return std::make_unique<TrainVerb>(); }

}  // namespace vitruvian::jobs
