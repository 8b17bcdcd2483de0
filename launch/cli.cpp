// CLI parsing, config resolution, error reporting and dispatch to the jobs.
#include "launch/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "core/errors.h"
#include "core/mpi_env.h"
#include "core/runtime.h"
#include "launch/jobs/datasets.h"
#include "launch/jobs/infer.h"
#include "launch/jobs/info.h"
#include "launch/jobs/phantom.h"
#include "launch/jobs/plan.h"
#include "launch/jobs/report.h"
#include "launch/jobs/train.h"

namespace vitruvian {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct GlobalOptions {
  std::vector<std::string> config_files;
  std::vector<std::string> overrides;
  std::optional<std::string> device, log_level;
  std::optional<double> collective_timeout_s;
  std::optional<int> threads;
  bool log_all_ranks = false;
  std::string save_config;
};

/// A job's own config sections (e.g. train's data/model/optimizer/train), read from the same sources.
using JobSections = std::vector<ConfigVisit>;

/// Builds the runtime config (and the job's sections): defaults < YAML files (in order) < --set
/// < explicit flags.
RuntimeConfig resolve_config(const GlobalOptions& global, const JobSections& job_sections) {
  ConfigSources sources;
  for (const auto& file : global.config_files) sources.add_file(file);
  for (const auto& assignment : global.overrides) sources.add_override(assignment);
  if (global.device) sources.add_override("runtime.device=" + *global.device);
  if (global.log_level) sources.add_override("runtime.log_level=" + *global.log_level);
  if (global.log_all_ranks) sources.add_override("runtime.log_all_ranks=true");
  if (global.collective_timeout_s) sources.add_override("runtime.collective_timeout_s=" + std::to_string(*global.collective_timeout_s));
  if (global.threads) sources.add_override("runtime.intra_op_threads=" + std::to_string(*global.threads));
  RuntimeConfig runtime;
  sources.read("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
  for (const auto& visit : job_sections) sources.read("", visit);
  sources.check_all_used();
  runtime.validate();
  return runtime;
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::unique_ptr<MpiEnvironment> env;
  try {
    env = std::make_unique<MpiEnvironment>(&argc, &argv);
  } catch (const Error& e) {
    std::cerr << "vitruvian: " << e.what() << std::endl;
    return kExitFailure;
  }
  const bool quiet = env->rank() != 0;  // only rank 0 prints help and usage errors

  CLI::App app{"Vitruvian: distributed 3D organ segmentation (training and inference campaigns on MPI + GPUs).\n"
               "Run under mpirun/srun for several ranks; a lone process is a 1-rank job.",
               "vitruvian"};
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the verb
  GlobalOptions global;
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

  jobs::InfoOptions info_options;
  const char* global_footer = "Global options (--config, --set, --device, --log-level, ...): vitruvian --help";
  CLI::App* info = app.add_subcommand(
      "info", "Show ranks, hosts, devices, backends and library versions, and check an allreduce across all ranks");
  info->add_flag("--json", info_options.json, "Print a JSON report instead of the table");
  info->add_option("-o,--output", info_options.output, "Also write the JSON report to this file (atomically)");
  info->add_option("--model", info_options.model, "Describe a network instead: unet, resenc_unet or sk_unet");
  info->add_option("--in-channels", info_options.in_channels, "With --model: input channels")->capture_default_str();
  info->add_option("--classes", info_options.classes, "With --model: classes including background")->capture_default_str();
  info->add_option("--stages", info_options.stages, "With --model: resolution stages")->capture_default_str();
  info->add_option("--patch", info_options.patch, "With --model: patch Z,Y,X for the FLOP count")->delimiter(',')->capture_default_str();
  info->footer(global_footer);

  jobs::ConvertOptions convert_options;
  CLI::App* convert = app.add_subcommand(
      "convert", "Import NIfTI files, DICOM folders or a manifest of studies into an HDF5 volume dataset");
  convert->add_option("inputs", convert_options.inputs,
                      "NIfTI files (one study each) and DICOM folders (one study per StudyInstanceUID)");
  convert->add_option("-m,--manifest", convert_options.manifest,
                      "YAML list of studies: series, label maps, DICOM folders (docs/FORMAT.md)")
      ->check(CLI::ExistingFile);
  convert->add_option("-o,--output", convert_options.output, "Dataset file (the index file with --shard-studies)")
      ->required();
  convert->add_option("--series-name", convert_options.series_name, "Series name for plain NIfTI inputs")
      ->capture_default_str();
  convert->add_option("--modality", convert_options.modality, "CT or MR, for plain NIfTI inputs");
  convert->add_option("--label", convert_options.labels, "NAME=FILE: a label map on the single NIfTI input");
  convert->add_option("--label-name", convert_options.label_names, "ID=NAME: an entry of the label table");
  convert->add_option("--chunk", convert_options.chunk, "Chunk shape Z,Y,X (or one size, or 'contiguous')")
      ->capture_default_str();
  convert->add_option("--deflate", convert_options.deflate, "Deflate level 0 (off) to 9, with byte shuffle")
      ->capture_default_str();
  convert->add_flag("--lz4", convert_options.lz4, "LZ4 instead of deflate (with byte shuffle; needs hdf5-filter-plugin)");
  convert->add_flag("--no-shuffle", convert_options.no_shuffle, "Compress without the byte-shuffle filter");
  convert->add_option("--shard-studies", convert_options.shard_studies,
                      "Write shards of this many studies plus an index file");
  convert->add_option("--max-voxels", convert_options.max_voxels, "Refuse larger volumes before reading them")
      ->capture_default_str();
  convert->add_flag("--force", convert_options.force, "Replace an existing output");
  convert->footer(global_footer);

  jobs::ExportOptions export_options;
  CLI::App* exporter = app.add_subcommand("export", "Write series and label maps of a dataset back to NIfTI");
  exporter->add_option("dataset", export_options.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  exporter->add_option("--study", export_options.study, "Study id");
  exporter->add_option("--series", export_options.series, "Series name");
  exporter->add_option("--label", export_options.label, "Label map name");
  exporter->add_option("-o,--output", export_options.output, "One NIfTI file (.nii or .nii.gz)");
  exporter->add_option("--out-dir", export_options.out_dir, "Every series and label map as DIR/<study>/<name>.nii.gz");
  exporter->add_flag("--nifti2", export_options.nifti2, "Write NIfTI-2 headers");
  exporter->footer(global_footer);

  jobs::InspectOptions inspect_options;
  CLI::App* inspect = app.add_subcommand(
      "inspect", "List a dataset's studies, series, shapes, spacing, types, chunking, compression and label volumes");
  inspect->add_option("dataset", inspect_options.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  inspect->add_flag("--json", inspect_options.json, "Print JSON instead of the table");
  bool no_volumes = false;
  inspect->add_flag("--no-volumes", no_volumes, "Skip reading label maps for per-structure volumes");
  inspect->footer(global_footer);

  jobs::PreprocessOptions preprocess_options;
  CLI::App* preprocess = app.add_subcommand(
      "preprocess", "Resample each study's channel series (and its label map) onto one grid, optionally at a new "
                    "spacing and cropped to the body, into a new dataset for training");
  preprocess->add_option("dataset", preprocess_options.dataset, "Dataset or index file")
      ->required()
      ->check(CLI::ExistingFile);
  preprocess->add_option("-o,--output", preprocess_options.output, "New dataset file")->required();
  preprocess->add_option("--channels", preprocess_options.channels, "Series names, the first is the reference grid")
      ->required()
      ->delimiter(',');
  preprocess->add_option("--label", preprocess_options.label, "Label map to carry over (nearest neighbour)");
  preprocess->add_option("--spacing", preprocess_options.spacing, "Target spacing X,Y,Z in mm")->delimiter(',');
  preprocess->add_flag("--crop-body", preprocess_options.crop_body, "Crop to the body (CT > -500 HU, else non-background)");
  preprocess->add_option("--chunk", preprocess_options.chunk, "Chunk shape Z,Y,X or 'contiguous'")->capture_default_str();
  preprocess->add_option("--deflate", preprocess_options.deflate, "Deflate level 0 (off) to 9")->capture_default_str();
  preprocess->add_flag("--force", preprocess_options.force, "Replace an existing output");
  preprocess->footer(global_footer);

  jobs::PhantomJobOptions phantom_options;
  CLI::App* phantom = app.add_subcommand(
      "phantom", "Generate synthetic multi-sequence CT/MR studies with exact labels (docs/PHANTOMS.md) into an HDF5 "
                 "dataset, in parallel across ranks; the contents do not depend on the number of ranks or threads");
  phantom->add_option("--kind", phantom_options.kind, "chest-cardiac | head-neck | abdomen-mr | msk | mixed")
      ->capture_default_str();
  phantom->add_option("--studies", phantom_options.studies, "Number of studies")->capture_default_str();
  phantom->add_option("--shape", phantom_options.shape, "Voxels Z,Y,X (or one size)")->capture_default_str();
  phantom->add_option("--spacing", phantom_options.spacing, "Voxel spacing in mm: X,Y,Z, one value, or auto (the kind's "
                                                            "field of view / shape)")
      ->capture_default_str();
  phantom->add_option("--seed", phantom_options.seed, "Random seed; study i is a function of (seed, i) alone")
      ->capture_default_str();
  phantom->add_option("-o,--out", phantom_options.output, "Dataset file (the index file with --shard-studies)");
  phantom->add_option("--nifti", phantom_options.nifti_dir, "Also write DIR/<study>/<series>.nii.gz and anatomy.nii.gz");
  phantom->add_option("--preview", phantom_options.preview_dir, "Write DIR/<study>.png: slices with label overlays");
  phantom->add_option("--noise", phantom_options.noise, "Noise level, a factor on each series' default")->capture_default_str();
  phantom->add_option("--deformation", phantom_options.deformation, "Smooth random deformation, a factor on the default")
      ->capture_default_str();
  phantom->add_option("--frames", phantom_options.frames, "Time points of 4D perfusion series")->capture_default_str();
  phantom->add_option("--chunk", phantom_options.chunk, "Chunk shape Z,Y,X (or one size, or 'contiguous')")->capture_default_str();
  phantom->add_option("--deflate", phantom_options.deflate, "Deflate level 0 (off) to 9, with byte shuffle")->capture_default_str();
  phantom->add_flag("--lz4", phantom_options.lz4, "LZ4 instead of deflate (with byte shuffle; needs hdf5-filter-plugin)");
  phantom->add_option("--shard-studies", phantom_options.shard_studies, "Write shards of this many studies plus an index file");
  phantom->add_flag("--force", phantom_options.force, "Replace an existing output");
  phantom->add_flag("--describe", phantom_options.describe,
                    "Print the kind's series, tissues, labels and value ranges (Markdown) and stop");
  phantom->footer(std::string(global_footer) + "\nThreads per study: --threads (runtime.intra_op_threads).");

  jobs::TrainConfig train_config;
  jobs::TrainFlags train_flags;
  std::optional<std::string> train_run_dir;
  std::optional<std::int64_t> train_steps;
  CLI::App* train = app.add_subcommand(
      "train", "Train an organ network on an HDF5 dataset, data-parallel over the ranks (config sections data, model, "
               "optimizer, train; launch/configs/train_example.yaml)");
  train->add_flag("--resume", train_flags.resume, "Continue from the newest complete checkpoint in train.run_dir");
  train->add_flag("--force", train_flags.force, "Start over: remove an existing run's checkpoints, metrics and model");
  train->add_option("--run-dir", train_run_dir, "Run folder (train.run_dir)");
  train->add_option("--steps", train_steps, "Optimiser steps (train.steps)");
  train->footer(global_footer);

  jobs::PlanOptions plan_options;
  CLI::App* plan = app.add_subcommand(
      "plan", "Fingerprint a dataset and write a training config (patch, batch, network stages) that fits a memory budget");
  plan->add_option("dataset", plan_options.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  plan->add_option("--task", plan_options.task, "Task name (the run folder runs/<task>)")->capture_default_str();
  plan->add_option("--channels", plan_options.channels, "Input series (default: the first study's first)")->delimiter(',');
  plan->add_option("--label-map", plan_options.label_map, "Label map to learn")->capture_default_str();
  plan->add_option("--classes", plan_options.classes, "Label names to learn (default: all)")->delimiter(',');
  plan->add_option("--memory", plan_options.memory, "Memory budget per rank: 8G, 512M, ...")->capture_default_str();
  plan->add_option("--model", plan_options.model, "unet, resenc_unet or sk_unet")->capture_default_str();
  plan->add_option("--validation-studies", plan_options.validation_studies, "Studies held out")->capture_default_str();
  plan->add_option("-o,--output", plan_options.output, "The config to write (YAML)")->required();
  plan->add_flag("--force", plan_options.force, "Replace an existing output");
  plan->footer(global_footer);

  jobs::InferOptions infer_options;
  CLI::App* infer = app.add_subcommand(
      "infer", "Run exported models over many studies as one campaign across the ranks: label maps, a report per study "
               "(volumes, intensities, lesions, calcium score, Dice where truth exists) and an HTML summary; reruns skip "
               "studies already done");
  infer->add_option("--campaign", infer_options.campaign, "Campaign YAML: inputs, output, routes (launch/configs/campaign_example.yaml)")
      ->check(CLI::ExistingFile);
  infer->add_option("-i,--input", infer_options.inputs, "HDF5 dataset or index, NIfTI file or folder, DICOM folder (repeatable)");
  infer->add_option("-o,--out", infer_options.output, "Output folder");
  infer->add_option("-m,--model", infer_options.models, "Exported model folder, or NAME=DIR (repeatable; each is a route)");
  infer->add_option("--studies", infer_options.studies, "Only these study ids")->delimiter(',');
  infer->add_option("--series-name", infer_options.series_name, "Series name of plain NIfTI inputs (default image)");
  infer->add_option("--modality", infer_options.modality, "Modality of plain NIfTI inputs: CT or MR");
  infer->add_option("--overlap", infer_options.overlap, "Window overlap, 0 to <1 (default 0.5)");
  infer->add_option("--batch", infer_options.batch, "Windows per forward call (default 2)");
  infer->add_option("--mirror", infer_options.mirror_axes, "Test-time mirroring along any of zyx (up to 8 flips), or none");
  infer->add_option("--accumulation", infer_options.accumulation, "fp32 or fp16 stitching accumulator");
  infer->add_option("--precision", infer_options.precision, "Forward passes: fp32, bf16 or fp16 (CUDA: autocast; CPU: bf16 runs a whole-bf16 network, fp16 stays fp32)");
  infer->add_flag("--channels-last", infer_options.channels_last, "Channels-last 3D weights and windows");
  infer->add_option("--engine", infer_options.engine,
                    "CPU forward passes: auto (plain U-Nets in fp32 on oneDNN's primitives directly, the rest on LibTorch's "
                    "ops) or libtorch (always LibTorch's ops); default auto");
  infer->add_option("--memory-limit", infer_options.memory_limit, "Per-rank memory budget for a study, e.g. 3G (default 3G)");
  infer->add_flag("--nifti", infer_options.nifti, "Also write each label map as NIfTI");
  infer->add_flag("--force", infer_options.force, "Redo every study: the outputs of earlier runs are removed");
  infer->footer(std::string(global_footer) + "\nThreads per rank: --threads (runtime.intra_op_threads).");

  jobs::ReportOptions report_options;
  CLI::App* report = app.add_subcommand("report", "Draw a training run's loss, throughput and validation curves into an HTML page");
  report->add_option("run_dir", report_options.run_dir, "Run folder (train.run_dir)")->required()->check(CLI::ExistingDirectory);
  report->add_option("-o,--output", report_options.output, "HTML file (default RUN_DIR/report.html)");
  report->footer(global_footer);

  std::string parse_error;
  int parse_code = 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help: the same on every rank, printed by rank 0
      std::ostringstream sink;
      return quiet ? app.exit(e, sink, sink) : app.exit(e);
    }
    std::ostringstream out;
    parse_code = app.exit(e, out, out);
    parse_error = out.str();
  }
  if (!jobs::all_ranks_ok(*env, parse_error)) return parse_code != 0 ? parse_code : kExitUsage;

  // Config problems: agree on them across ranks and exit cleanly with one line.
  JobSections job_sections;
  if (train->parsed()) {
    if (train_run_dir) global.overrides.push_back("train.run_dir=" + *train_run_dir);
    if (train_steps) global.overrides.push_back("train.steps=" + std::to_string(*train_steps));
    job_sections.push_back([&](ConfigVisitor& v) { train_config.visit(v); });
  }
  RuntimeConfig runtime;
  std::string error_line;
  try {
    runtime = resolve_config(global, job_sections);
  } catch (const Error& e) {
    error_line = std::string("vitruvian: ") + e.what() + "\n";
  }
  if (!jobs::all_ranks_ok(*env, error_line)) return kExitUsage;

  try {
    const c10::Device device = apply_runtime(runtime, *env);
    if (!env->thread_multiple()) {
      spdlog::warn("MPI granted {} (asked for {}): async collectives run inline, without overlap",
                   thread_level_name(env->thread_level_provided()), thread_level_name(env->thread_level_requested()));
    } else {
      spdlog::debug("MPI granted {}", thread_level_name(env->thread_level_provided()));
    }
    ConfigWriter resolved;
    resolved.add("runtime", [&](ConfigVisitor& v) { runtime.visit(v); });
    for (const auto& visit : job_sections) resolved.add("", visit);
    if (!global.save_config.empty() && env->rank() == 0) resolved.write(global.save_config);
    jobs::JobContext context{*env, runtime, device};
    if (info->parsed()) {
      return info_options.model.empty() ? jobs::run_info(context, info_options) : jobs::run_model_info(context, info_options);
    }
    if (convert->parsed()) return jobs::run_convert(context, convert_options);
    if (exporter->parsed()) return jobs::run_export(context, export_options);
    if (preprocess->parsed()) return jobs::run_preprocess(context, preprocess_options);
    if (phantom->parsed()) return jobs::run_phantom(context, phantom_options);
    if (train->parsed()) return jobs::run_train(context, train_config, train_flags, resolved.str());
    if (report->parsed()) return jobs::run_report(context, report_options);
    if (infer->parsed()) return jobs::run_infer(context, infer_options);
    if (plan->parsed()) return jobs::run_plan(context, plan_options);
    if (inspect->parsed()) {
      inspect_options.volumes = !no_volumes;
      return jobs::run_inspect(context, inspect_options);
    }
    return kExitUsage;
  } catch (const Error& e) {
    // Jobs fail on one rank while others may sit in a collective: end the whole job.
    spdlog::error("{}", e.what());
    const bool usage = dynamic_cast<const InputError*>(&e) != nullptr || dynamic_cast<const ConfigError*>(&e) != nullptr;
    if (env->size() > 1) env->abort(usage ? kExitUsage : kExitFailure);
    return usage ? kExitUsage : kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("unexpected error on {}: {}", describe_process(), e.what());
    if (env->size() > 1) env->abort(kExitFailure);
    return kExitFailure;
  }
}

}  // namespace vitruvian
