// The seam between the CLI and a job: a Verb adds its subcommand and flags, names the config
// sections it reads and the keys its flags stand for, and runs its job. Each job file defines
// its verbs beside the job and exposes a factory; launch/cli.cpp holds only their list.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/exit_code.h"
#include "launch/jobs/job_context.h"

namespace CLI {
class App;
}  // namespace CLI

namespace vitruvian::jobs {

/// One `vitruvian` verb. The CLI calls, in order: add_to() before parsing; config_files(),
/// add_flags() (overrides() by default) and sections() once its subcommand was chosen (they may
/// depend on the flags); run() on every rank with the resolved config. A new verb is an add_<verb>_command function passed to
/// make_options_verb (a job that needs only its flags) or a Verb class (one that reads config
/// sections), make_<verb>_verb() declared in the job's header, and one entry in cli.cpp's list.
class Verb {
 public:
  virtual ~Verb() = default;

  /// Adds the subcommand and its flags to `app` (make it with add_verb_command); the flags'
  /// values are stored in the verb. Returns the subcommand, owned by `app`.
  virtual CLI::App* add_to(CLI::App& app) = 0;
  /// The config sections the job reads, each a visit over top-level keys (e.g. train's data,
  /// model, optimizer and train). Keys of other sections are refused as unknown. None by default.
  virtual std::vector<ConfigVisit> sections() { return {}; }
  /// "dotted.key=value" for the flags that stand for config keys (train --steps N gives
  /// "train.steps=N"); they win over config files and --set. None by default.
  virtual std::vector<std::string> overrides() const { return {}; }
  /// Config files the verb's flags name (infer --campaign FILE): read after the global
  /// --config files, before --set. None by default.
  virtual std::vector<std::filesystem::path> config_files() const { return {}; }
  /// Adds the verb's flags to `sources` after --set and the global flags (so they win); for
  /// flags whose values are not YAML (paths) or that extend a list. Adds overrides() by default.
  virtual void add_flags(ConfigSources& sources) {
    for (const auto& assignment : overrides()) sources.add_override(assignment);
  }
  /// Collective: runs the job. Errors may be thrown (the CLI turns InputError and ConfigError
  /// into ExitCode::kUsage, others into kFailed, and ends every rank).
  virtual ExitCode run(const JobContext& context) = 0;
};

/// Makes one verb; each job header declares its own (make_train_verb, ...).
using VerbFactory = std::unique_ptr<Verb> (*)();

/// A verb whose job needs its flags' values alone (no config section): `add_command` makes the
/// subcommand and binds its flags to an `Options`, `job` runs on them.
template <typename Options>
class OptionsVerb final : public Verb {
 public:
  using AddCommand = CLI::App* (*)(CLI::App&, Options&);
  using Job = ExitCode (*)(const JobContext&, const Options&);

  OptionsVerb(AddCommand add_command, Job job) : add_command_(add_command), job_(job) {}
  CLI::App* add_to(CLI::App& app) override { return add_command_(app, options_); }
  ExitCode run(const JobContext& context) override { return job_(context, options_); }

 private:
  AddCommand add_command_;
  Job job_;
  Options options_;
};

/// An OptionsVerb, its options type taken from the functions.
template <typename Options>
std::unique_ptr<Verb> make_options_verb(CLI::App* (*add_command)(CLI::App&, Options&),
                                        ExitCode (*job)(const JobContext&, const Options&)) {
  return std::make_unique<OptionsVerb<Options>>(add_command, job);
}

/// Adds subcommand `name` with `description` to `app`, its help ending with where the global
/// options are described, then `footer` on a line of its own when given.
CLI::App* add_verb_command(CLI::App& app, const std::string& name, const std::string& description,
                           const std::string& footer = "");

}  // namespace vitruvian::jobs
