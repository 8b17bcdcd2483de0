// CLI parsing, config resolution, error reporting and dispatch to the verbs, whose subcommands,
// flags and jobs live beside each job (launch/jobs/verb.h).
#include "launch/cli.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "core/errors.h"
#include "core/exit_code.h"
#include "core/mpi_env.h"
#include "core/runtime.h"
#include "launch/jobs/bench.h"
#include "launch/jobs/datasets.h"
#include "launch/jobs/infer.h"
#include "launch/jobs/perfusion.h"
#include "launch/jobs/info.h"
#include "launch/jobs/phantom.h"
#include "launch/jobs/plan.h"
#include "launch/jobs/report.h"
#include "launch/jobs/train.h"
#include "launch/jobs/verb.h"

namespace vitruvian {
namespace {

/// The verbs, in the order `vitruvian --help` lists them.
constexpr jobs::VerbFactory kVerbs[] = {jobs::make_info_verb,    jobs::make_convert_verb,    jobs::make_export_verb,
                                        jobs::make_inspect_verb, jobs::make_preprocess_verb, jobs::make_phantom_verb,
                                        jobs::make_train_verb,   jobs::make_plan_verb,       jobs::make_infer_verb,
                                        jobs::make_perfusion_verb,  jobs::make_report_verb, jobs::make_bench_verb};

struct GlobalOptions {
  std::vector<std::string> config_files;
  std::vector<std::string> overrides;
  std::optional<std::string> device, log_level;
  std::optional<double> collective_timeout_s;
  std::optional<int> threads;
  bool log_all_ranks = false;
  std::string save_config;
};

void add_global_options(CLI::App& app, GlobalOptions& global) {
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the verb
  app.add_option("-c,--config", global.config_files, "YAML config file(s), later ones override earlier")
      ->check(CLI::ExistingFile);
  app.add_option("--set", global.overrides, "Override a config key: --set runtime.device=cpu (repeatable)");
  app.add_option("--device", global.device, "auto | cpu | cuda (runtime.device)");
  app.add_option("--log-level", global.log_level, "trace | debug | info | warn | error | critical | off");
  app.add_flag("--log-all-ranks", global.log_all_ranks, "Info lines from every rank, not only rank 0");
  app.add_option("--collective-timeout", global.collective_timeout_s,
                 "Seconds before a stuck collective ends the job (runtime.collective_timeout_s)");
  app.add_option("--threads", global.threads, "LibTorch intra-op threads per rank (runtime.intra_op_threads)");
  app.add_option("--save-config", global.save_config, "Write the resolved config as YAML to this file");
}

/// A verb with the subcommand it added.
struct RegisteredVerb {
  std::unique_ptr<jobs::Verb> verb;
  CLI::App* command = nullptr;
};

/// Parses the command line. Empty on success (`chosen` is the verb given); otherwise the exit
/// code, agreed by all ranks: 0 for --help (printed by rank 0), kUsage for a parse error
/// (CLI11's message from the lowest failing rank; its own codes, e.g. 106, are not used).
std::optional<int> parse(CLI::App& app, const std::vector<RegisteredVerb>& verbs, const MpiEnvironment& env,
                         ControlPlane& control, int argc, char** argv, jobs::Verb*& chosen) {
  std::string parse_error;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help: the same on every rank
      std::ostringstream sink;
      return env.rank() != 0 ? app.exit(e, sink, sink) : app.exit(e);
    }
    std::ostringstream out;
    app.exit(e, out, out);
    parse_error = out.str();
  }
  if (!jobs::all_ranks_ok(control, parse_error, "command line")) return exit_status(ExitCode::kUsage);
  for (const auto& registered : verbs) {
    if (registered.command->parsed()) chosen = registered.verb.get();
  }
  if (chosen == nullptr) throw InternalError("vitruvian", "no verb chosen although CLI11 requires one");
  return std::nullopt;
}

/// The runtime config and the verb's sections, resolved: defaults < YAML files (the global
/// ones in order, then the verb's) < --set < explicit flags (global ones, then the verb's).
RuntimeConfig resolve_config(const GlobalOptions& global, jobs::Verb& verb) {
  ConfigSources sources;
  for (const auto& file : global.config_files) sources.add_file(file);
  for (const auto& file : verb.config_files()) sources.add_file(file);
  for (const auto& assignment : global.overrides) sources.add_override(assignment);
  if (global.device) sources.add_override("runtime.device=" + *global.device);
  if (global.log_level) sources.add_override("runtime.log_level=" + *global.log_level);
  if (global.log_all_ranks) sources.add_override("runtime.log_all_ranks=true");
  if (global.collective_timeout_s)
    sources.add_override("runtime.collective_timeout_s=" + std::to_string(*global.collective_timeout_s));
  if (global.threads) sources.add_override("runtime.intra_op_threads=" + std::to_string(*global.threads));
  verb.add_flags(sources);
  RuntimeConfig runtime;
  sources.read("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  for (const auto& visit : verb.sections()) sources.read("", visit);
  sources.check_all_used();
  runtime.validate();
  return runtime;
}

/// Applies the runtime config to this process and writes --save-config (rank 0); returns what
/// the job receives, its control plane `control`.
jobs::JobContext start_job(const MpiEnvironment& env, RuntimeConfig runtime, const GlobalOptions& global,
                           jobs::Verb& verb, ControlPlane& control) {
  const c10::Device device = apply_runtime(runtime, env);
  if (!env.thread_multiple()) {
    spdlog::warn("MPI granted {} (asked for {}): async collectives run inline, without overlap",
                 thread_level_name(env.thread_level_provided()), thread_level_name(env.thread_level_requested()));
  } else {
    spdlog::debug("MPI granted {}", thread_level_name(env.thread_level_provided()));
  }
  ConfigWriter resolved;
  resolved.add("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  for (const auto& visit : verb.sections()) resolved.add("", visit);
  if (!global.save_config.empty() && env.rank() == 0) resolved.write(global.save_config);
  return jobs::JobContext{env, runtime, device, resolved.str(), control};
}

/// Runs the job; an error ends it: InputError and ConfigError with kUsage, others with kFailed.
/// Jobs fail on one rank while others may sit in a collective, so a multi-rank job is aborted.
int run_job(const MpiEnvironment& env, const RuntimeConfig& runtime, const GlobalOptions& global, jobs::Verb& verb) {
  ExitCode code = ExitCode::kFailed;
  try {
    ControlPlane control(env.world(), ControlPlaneOptions().timeout_s(runtime.collective_timeout_s));
    return exit_status(verb.run(start_job(env, runtime, global, verb, control)));
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    const bool usage =
        dynamic_cast<const InputError*>(&e) != nullptr || dynamic_cast<const ConfigError*>(&e) != nullptr;
    code = usage ? ExitCode::kUsage : ExitCode::kFailed;
  } catch (const std::exception& e) {
    spdlog::error("unexpected error on {}: {}", describe_process(), e.what());
  }
  if (env.size() > 1) env.abort(exit_status(code));
  return exit_status(code);
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::unique_ptr<MpiEnvironment> env;
  try {
    env = std::make_unique<MpiEnvironment>(&argc, &argv);
  } catch (const Error& e) {
    std::cerr << "vitruvian: " << e.what() << std::endl;
    return exit_status(ExitCode::kFailed);
  }

  CLI::App app{
      "Vitruvian: distributed 3D organ segmentation (training and inference campaigns on MPI + GPUs).\n"
      "Run under mpirun/srun for several ranks; a lone process is a 1-rank job.",
      "vitruvian"};
  GlobalOptions global;
  add_global_options(app, global);
  std::vector<RegisteredVerb> verbs;
  for (const jobs::VerbFactory make : kVerbs) {
    RegisteredVerb registered{make(), nullptr};
    registered.command = registered.verb->add_to(app);
    verbs.push_back(std::move(registered));
  }
  // Agreement on the command line and the config, before the configured timeout is known.
  ControlPlane startup(env->world());
  jobs::Verb* verb = nullptr;
  if (const auto done = parse(app, verbs, *env, startup, argc, argv, verb)) return *done;

  // Config problems: agree on them across ranks and exit cleanly with one line.
  RuntimeConfig runtime;
  std::string error_line;
  try {
    runtime = resolve_config(global, *verb);
  } catch (const Error& e) {
    error_line = std::string("vitruvian: ") + e.what() + "\n";
  }
  if (!jobs::all_ranks_ok(startup, error_line, "config")) return exit_status(ExitCode::kUsage);
  return run_job(*env, runtime, global, *verb);
}

}  // namespace vitruvian
