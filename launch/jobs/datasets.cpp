// convert / export / inspect: thin jobs over data/study_import, data/nifti_io and the store.
#include "launch/jobs/datasets.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/progress.h"
#include "data/dataset_preprocess.h"
#include "data/dicom_writer.h"
#include "data/nifti_io.h"
#include "data/study_import.h"
#include "data/volume_store.h"
#include "launch/jobs/arguments.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace vitruvian::data;

LabelTable parse_label_names(const std::vector<std::string>& entries) {
  LabelTable table;
  for (const auto& entry : entries) {
    const auto eq = entry.find('=');
    int id = -1;
    try {
      std::size_t used = 0;
      id = eq == std::string::npos ? -1 : std::stoi(entry.substr(0, eq), &used);
      if (used != eq) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id > 65535 || eq + 1 >= entry.size()) {
      throw InputError("--label-name " + entry, "expected ID=NAME with ID in 0..65535, e.g. --label-name 1=liver");
    }
    table[id] = entry.substr(eq + 1);
  }
  return table;
}

std::string megabytes(std::int64_t bytes) {
  const double b = static_cast<double>(bytes);
  return b < 1e6 ? fmt::format("{:.1f} kB", b / 1e3) : fmt::format("{:.1f} MB", b / 1e6);
}

std::string shape_text(const std::vector<std::int64_t>& shape) { return fmt::format("{}", fmt::join(shape, "x")); }

/// export --dicom: every chosen series (CT or MR, checked before anything is written) as
/// DIR/<study>/<series>/NNNN.dcm; label maps are not images and stay out.
int export_dicom(const VolumeStore& store, const std::vector<const StudyInfo*>& studies, const ExportOptions& options) {
  DicomStudyIdentity identity;
  if (!options.uid_root.empty()) identity.uid_root = options.uid_root;
  check_uid_root(identity.uid_root, "--uid-root " + identity.uid_root);
  if (options.uid_seed < 0) throw InputError(fmt::format("--uid-seed {}", options.uid_seed), "expected a seed >= 0");
  identity.seed = static_cast<std::uint64_t>(options.uid_seed);
  identity.description = "Vitruvian export";
  for (const StudyInfo* study : studies) {
    for (const auto& s : study->series) {
      if ((options.series.empty() || s.name == options.series) && s.modality != "CT" && s.modality != "MR") {
        throw InputError(
            fmt::format("{}: study {} series {}", options.dataset, study->id, s.name),
            fmt::format("has modality '{}'; expected CT or MR to write DICOM (NIfTI takes any series)", s.modality));
      }
    }
  }
  Progress progress("studies (DICOM)", static_cast<std::int64_t>(studies.size()), true);
  int series_written = 0;
  for (const StudyInfo* study : studies) {
    std::vector<Volume> volumes;
    std::vector<std::string> names;
    for (const auto& s : study->series) {
      if (!options.series.empty() && s.name != options.series) continue;
      volumes.push_back(store.read_series(study->id, s.name));
      names.push_back(s.name);
    }
    std::vector<std::pair<std::string, const Volume*>> series;
    for (std::size_t i = 0; i < volumes.size(); ++i) series.emplace_back(names[i], &volumes[i]);
    write_dicom_study(fs::path(options.dicom_dir) / study->id, study->id, series, identity);
    series_written += static_cast<int>(series.size());
    progress.advance(1, study->id);
  }
  progress.finish();
  return series_written;
}

}  // namespace

ExitCode run_convert(const JobContext& context, const ConvertOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;  // one writer; the other ranks have nothing to do
  if (context.env.size() > 1) spdlog::info("convert runs on rank 0; the other {} ranks are idle", context.env.size() - 1);
  if (options.inputs.empty() && options.manifest.empty()) {
    throw InputError("convert", "nothing to import; give NIfTI files or DICOM folders, or --manifest FILE");
  }
  const StorageOptions storage = storage_options(options.chunk, options.deflate, !options.no_shuffle, options.lz4);
  if (options.shard_studies < 0) throw InputError("--shard-studies", "expected a positive number of studies per shard");
  const fs::path output(options.output);
  refuse_existing(output, options.force);

  std::vector<StudySource> sources;
  LabelTable labels = parse_label_names(options.label_names);
  if (!options.manifest.empty()) {
    ImportManifest manifest = read_import_manifest(options.manifest);
    sources = std::move(manifest.studies);
    for (const auto& [id, name] : manifest.labels) labels.emplace(id, name);  // --label-name wins
  }
  std::vector<fs::path> inputs(options.inputs.begin(), options.inputs.end());
  auto from_paths = studies_from_paths(inputs, options.series_name, options.modality);
  if (!options.labels.empty()) {
    if (from_paths.size() != 1 || from_paths.front().series.empty()) {
      throw InputError("--label", "attaches to a single NIfTI input; use --manifest for several studies");
    }
    for (const auto& entry : options.labels) {
      const auto eq = entry.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
        throw InputError("--label " + entry, "expected NAME=FILE, e.g. --label organs=seg.nii.gz");
      }
      from_paths.front().labels.push_back({entry.substr(0, eq), entry.substr(eq + 1), ""});
    }
  }
  sources.insert(sources.end(), std::make_move_iterator(from_paths.begin()), std::make_move_iterator(from_paths.end()));

  ImportOptions import;
  import.nifti.max_voxels = options.max_voxels;
  import.dicom.max_voxels = options.max_voxels;
  Progress progress("studies", static_cast<std::int64_t>(sources.size()), true);
  import.on_study = [&](const std::string& study) { progress.advance(1, study); };

  // One file, or shards under an index: the importer only needs the writer of each study.
  std::unique_ptr<ShardedVolumeWriter> sharded;
  std::unique_ptr<VolumeWriter> single;
  StudySink sink;
  if (options.shard_studies > 0) {
    sharded = std::make_unique<ShardedVolumeWriter>(output, options.shard_studies, storage);
    sharded->set_label_table(labels);
    sink = [&](const std::string& study) -> VolumeWriter& { return sharded->begin_study(study); };
  } else {
    single = std::make_unique<VolumeWriter>(output, storage);
    single->set_label_table(labels);
    sink = [&](const std::string&) -> VolumeWriter& { return *single; };
  }
  const ImportReport report = import_studies(sources, sink, labels, import);
  progress.finish();
  if (!report.imported.empty()) sharded ? sharded->commit() : single->commit();
  for (const auto& r : report.rejected) std::cerr << "vitruvian convert: rejected " << r.line() << "\n";
  if (report.imported.empty()) {
    std::cerr << "vitruvian convert: no study could be imported; " << output.string() << " was not written\n";
    return ExitCode::kFailed;
  }
  std::printf("%s: %zu studies, %lld series, %lld label maps, %.2f M voxels%s\n", output.string().c_str(),
              report.imported.size(), static_cast<long long>(report.series), static_cast<long long>(report.labels),
              static_cast<double>(report.voxels) / 1e6,
              report.rejected.empty() ? "" : fmt::format("; {} rejected (listed above)", report.rejected.size()).c_str());
  return report.rejected.empty() ? ExitCode::kOk : ExitCode::kFailed;
}

ExitCode run_export(const JobContext& context, const ExportOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  const VolumeStore store(options.dataset);
  const auto version = options.nifti2 ? NiftiVersion::kNifti2 : NiftiVersion::kNifti1;
  if (!options.output.empty()) {
    if (options.study.empty() || options.series.empty() == options.label.empty()) {
      throw InputError("export -o " + options.output, "expected --study ID and exactly one of --series NAME or --label NAME");
    }
    const Volume v = options.series.empty() ? store.read_label(options.study, options.label)
                                            : store.read_series(options.study, options.series);
    write_nifti(options.output, v, version);
    std::printf("%s\n", options.output.c_str());
    return ExitCode::kOk;
  }
  if (options.out_dir.empty() && options.dicom_dir.empty()) {
    throw InputError("export", "expected --output FILE.nii.gz, --out-dir DIR or --dicom DIR");
  }
  std::vector<const StudyInfo*> studies;
  if (!options.study.empty()) {
    studies.push_back(&store.study(options.study));
  } else {
    for (const auto& s : store.studies()) studies.push_back(&s);
  }
  if (!options.dicom_dir.empty()) {
    const int series = export_dicom(store, studies, options);
    std::printf("%d DICOM series under %s\n", series, options.dicom_dir.c_str());
    if (options.out_dir.empty()) return ExitCode::kOk;
  }
  Progress progress("studies", static_cast<std::int64_t>(studies.size()), true);
  int files = 0;
  for (const StudyInfo* study : studies) {
    const fs::path folder = fs::path(options.out_dir) / study->id;
    fs::create_directories(folder);
    for (const auto& s : study->series) {
      if (!options.series.empty() && s.name != options.series) continue;
      write_nifti(folder / (s.name + ".nii.gz"), store.read_series(study->id, s.name), version);
      ++files;
    }
    for (const auto& l : study->labels) {
      if (!options.label.empty() && l.name != options.label) continue;
      write_nifti(folder / ("label_" + l.name + ".nii.gz"), store.read_label(study->id, l.name), version);
      ++files;
    }
    progress.advance(1, study->id);
  }
  progress.finish();
  std::printf("%d NIfTI files under %s\n", files, options.out_dir.c_str());
  return ExitCode::kOk;
}

ExitCode run_inspect(const JobContext& context, const InspectOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  const VolumeStore store(options.dataset);
  json report{{"path", options.dataset},
              {"format", kFormatName},
              {"format_version", kFormatVersion},
              {"sharded", store.sharded()}};
  json table = json::object();
  for (const auto& [id, name] : store.label_table()) table[std::to_string(id)] = name;
  report["label_table"] = table;
  json studies = json::array();
  for (const auto& study : store.studies()) {
    json s{{"id", study.id}, {"voxels", study.voxels}};
    if (!study.metadata_json.empty()) s["metadata"] = json::parse(study.metadata_json, nullptr, false);
    json series = json::array();
    for (const auto& info : study.series) {
      const auto& g = info.geometry;
      series.push_back(json{{"name", info.name},
                            {"modality", info.modality},
                            {"dtype", voxel_type_name(info.type)},
                            {"shape", info.shape},
                            {"spacing_mm", g.spacing},
                            {"origin_lps_mm", g.origin},
                            {"direction", g.direction},
                            {"frame_times_s", info.frame_times_s},
                            {"chunk", info.chunk},
                            {"compression", info.compression},
                            {"stored_bytes", info.stored_bytes}});
    }
    s["series"] = series;
    json label_maps = json::array();
    for (const auto& info : study.labels) {
      json l{{"name", info.name},
             {"reference_series", info.reference_series},
             {"dtype", voxel_type_name(info.type)},
             {"shape", info.shape},
             {"chunk", info.chunk},
             {"compression", info.compression},
             {"stored_bytes", info.stored_bytes}};
      if (options.volumes) {
        const Volume label = store.read_label(study.id, info.name);
        const auto& sp = label.geometry.spacing;
        const double ml_per_voxel = sp[0] * sp[1] * sp[2] / 1000.0;
        const at::Tensor counts = at::bincount(label.voxels.reshape({-1}).to(at::kLong));
        json structures = json::array();
        for (std::int64_t id = 1; id < counts.numel(); ++id) {
          const auto n = counts[id].item<std::int64_t>();
          if (n == 0) continue;
          const auto name = store.label_table().find(static_cast<int>(id));
          structures.push_back(json{{"id", id},
                                    {"name", name == store.label_table().end() ? "" : name->second},
                                    {"voxels", n},
                                    {"volume_ml", static_cast<double>(n) * ml_per_voxel}});
        }
        l["structures"] = structures;
      }
      label_maps.push_back(l);
    }
    s["labels"] = label_maps;
    studies.push_back(s);
  }
  report["studies"] = studies;
  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
    return ExitCode::kOk;
  }

  std::printf("%s: %s v%d, %zu studies%s\n", options.dataset.c_str(), kFormatName, kFormatVersion, store.studies().size(),
              store.sharded() ? " in shards (index file)" : "");
  if (!store.label_table().empty()) {
    std::vector<std::string> entries;
    for (const auto& [id, name] : store.label_table()) entries.push_back(fmt::format("{} {}", id, name));
    std::printf("labels: %s\n", fmt::format("{}", fmt::join(entries, ", ")).c_str());
  }
  for (const auto& s : report["studies"]) {
    std::printf("\nstudy %s\n", s["id"].get<std::string>().c_str());
    std::printf("  %-6s %-14s %-4s %-8s %-14s %-20s %-12s %-22s %s\n", "kind", "name", "mod", "dtype", "shape [t,]z,y,x",
                "spacing x,y,z mm", "chunk", "compression", "stored");
    for (const auto& info : s["series"]) {
      const auto spacing = info["spacing_mm"].get<std::vector<double>>();
      const auto chunk = info["chunk"].get<std::vector<std::int64_t>>();
      std::printf("  %-6s %-14s %-4s %-8s %-14s %-20s %-12s %-22s %s\n", "series", info["name"].get<std::string>().c_str(),
                  info["modality"].get<std::string>().empty() ? "-" : info["modality"].get<std::string>().c_str(),
                  info["dtype"].get<std::string>().c_str(),
                  shape_text(info["shape"].get<std::vector<std::int64_t>>()).c_str(),
                  fmt::format("{:.3g} {:.3g} {:.3g}", spacing[0], spacing[1], spacing[2]).c_str(),
                  chunk.empty() ? "contiguous" : shape_text(chunk).c_str(), info["compression"].get<std::string>().c_str(),
                  megabytes(info["stored_bytes"].get<std::int64_t>()).c_str());
    }
    for (const auto& info : s["labels"]) {
      const auto chunk = info["chunk"].get<std::vector<std::int64_t>>();
      std::printf("  %-6s %-14s %-4s %-8s %-14s %-20s %-12s %-22s %s\n", "label", info["name"].get<std::string>().c_str(),
                  "", info["dtype"].get<std::string>().c_str(),
                  shape_text(info["shape"].get<std::vector<std::int64_t>>()).c_str(),
                  ("on " + info["reference_series"].get<std::string>()).c_str(),
                  chunk.empty() ? "contiguous" : shape_text(chunk).c_str(), info["compression"].get<std::string>().c_str(),
                  megabytes(info["stored_bytes"].get<std::int64_t>()).c_str());
      if (info.contains("structures")) {
        for (const auto& st : info["structures"]) {
          const std::string name = st["name"].get<std::string>();
          std::printf("         %5lld %-22s %10.2f mL  (%lld voxels)\n", static_cast<long long>(st["id"].get<std::int64_t>()),
                      name.empty() ? "(not in the label table)" : name.c_str(), st["volume_ml"].get<double>(),
                      static_cast<long long>(st["voxels"].get<std::int64_t>()));
        }
      }
    }
  }
  return ExitCode::kOk;
}

ExitCode run_preprocess(const JobContext& context, const PreprocessOptions& options) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  refuse_existing(options.output, options.force);
  DatasetPreprocessOptions p;
  p.channels = options.channels;
  p.label = options.label;
  if (!options.spacing.empty()) {
    if (options.spacing.size() != 3 || options.spacing[0] <= 0 || options.spacing[1] <= 0 || options.spacing[2] <= 0) {
      throw InputError(fmt::format("--spacing {}", fmt::join(options.spacing, ",")), "expected three positive mm values X,Y,Z");
    }
    p.spacing = std::array<double, 3>{options.spacing[0], options.spacing[1], options.spacing[2]};
  }
  p.crop_to_body = options.crop_body;
  p.storage = storage_options(options.chunk, options.deflate, true);
  const VolumeStore input(options.dataset);
  Progress progress("studies", static_cast<std::int64_t>(input.studies().size()), true);
  p.on_study = [&](const std::string& study) { progress.advance(1, study); };
  preprocess_dataset(input, options.output, p);
  progress.finish();
  std::printf("%s: %zu studies, channels %s on one grid\n", options.output.c_str(), input.studies().size(),
              fmt::format("{}", fmt::join(options.channels, ", ")).c_str());
  return ExitCode::kOk;
}

namespace {

CLI::App* add_convert_command(CLI::App& app, ConvertOptions& o) {
  CLI::App* convert = add_verb_command(
      app, "convert", "Import NIfTI files, DICOM folders or a manifest of studies into an HDF5 volume dataset");
  convert->add_option("inputs", o.inputs, "NIfTI files (one study each) and DICOM folders (one study per StudyInstanceUID)");
  convert->add_option("-m,--manifest", o.manifest, "YAML list of studies: series, label maps, DICOM folders (docs/FORMAT.md)")
      ->check(CLI::ExistingFile);
  convert->add_option("-o,--output", o.output, "Dataset file (the index file with --shard-studies)")->required();
  convert->add_option("--series-name", o.series_name, "Series name for plain NIfTI inputs")->capture_default_str();
  convert->add_option("--modality", o.modality, "CT or MR, for plain NIfTI inputs");
  convert->add_option("--label", o.labels, "NAME=FILE: a label map on the single NIfTI input");
  convert->add_option("--label-name", o.label_names, "ID=NAME: an entry of the label table");
  convert->add_option("--chunk", o.chunk, "Chunk shape Z,Y,X (or one size, or 'contiguous')")->capture_default_str();
  convert->add_option("--deflate", o.deflate, "Deflate level 0 (off) to 9, with byte shuffle")->capture_default_str();
  convert->add_flag("--lz4", o.lz4, "LZ4 instead of deflate (with byte shuffle; needs hdf5-filter-plugin)");
  convert->add_flag("--no-shuffle", o.no_shuffle, "Compress without the byte-shuffle filter");
  convert->add_option("--shard-studies", o.shard_studies, "Write shards of this many studies plus an index file");
  convert->add_option("--max-voxels", o.max_voxels, "Refuse larger volumes before reading them")->capture_default_str();
  convert->add_flag("--force", o.force, "Replace an existing output");
  return convert;
}

CLI::App* add_export_command(CLI::App& app, ExportOptions& o) {
  CLI::App* exporter =
      add_verb_command(app, "export", "Write series and label maps of a dataset back to NIfTI, or its series to DICOM");
  exporter->add_option("dataset", o.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  exporter->add_option("--study", o.study, "Study id");
  exporter->add_option("--series", o.series, "Series name");
  exporter->add_option("--label", o.label, "Label map name");
  exporter->add_option("-o,--output", o.output, "One NIfTI file (.nii or .nii.gz)");
  exporter->add_option("--out-dir", o.out_dir, "Every series and label map as DIR/<study>/<name>.nii.gz");
  exporter->add_flag("--nifti2", o.nifti2, "Write NIfTI-2 headers");
  exporter->add_option("--dicom", o.dicom_dir,
                       "Every CT/MR series as DICOM: DIR/<study>/<series>/NNNN.dcm (docs/PHANTOMS.md); label maps "
                       "stay out");
  exporter->add_option("--uid-root", o.uid_root, "Root of the DICOM UIDs (default: the project's, docs/PHANTOMS.md)");
  exporter
      ->add_option("--uid-seed", o.uid_seed,
                   "Seed of the DICOM UIDs (the phantom's --seed gives the UIDs phantom --dicom writes)")
      ->capture_default_str();
  return exporter;
}

CLI::App* add_inspect_command(CLI::App& app, InspectOptions& o) {
  CLI::App* inspect = add_verb_command(
      app, "inspect", "List a dataset's studies, series, shapes, spacing, types, chunking, compression and label volumes");
  inspect->add_option("dataset", o.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  inspect->add_flag("--json", o.json, "Print JSON instead of the table");
  inspect->add_flag_callback("--no-volumes", [&o] { o.volumes = false; }, "Skip reading label maps for per-structure volumes");
  return inspect;
}

CLI::App* add_preprocess_command(CLI::App& app, PreprocessOptions& o) {
  CLI::App* preprocess = add_verb_command(
      app, "preprocess", "Resample each study's channel series (and its label map) onto one grid, optionally at a new "
                         "spacing and cropped to the body, into a new dataset for training");
  preprocess->add_option("dataset", o.dataset, "Dataset or index file")->required()->check(CLI::ExistingFile);
  preprocess->add_option("-o,--output", o.output, "New dataset file")->required();
  preprocess->add_option("--channels", o.channels, "Series names, the first is the reference grid")->required()->delimiter(',');
  preprocess->add_option("--label", o.label, "Label map to carry over (nearest neighbour)");
  preprocess->add_option("--spacing", o.spacing, "Target spacing X,Y,Z in mm")->delimiter(',');
  preprocess->add_flag("--crop-body", o.crop_body,
                       "Crop to the body: the largest connected part above -500 HU (CT) or above background (MR)");
  preprocess->add_option("--chunk", o.chunk, "Chunk shape Z,Y,X or 'contiguous'")->capture_default_str();
  preprocess->add_option("--deflate", o.deflate, "Deflate level 0 (off) to 9")->capture_default_str();
  preprocess->add_flag("--force", o.force, "Replace an existing output");
  return preprocess;
}

}  // namespace

std::unique_ptr<Verb> make_convert_verb() { return make_options_verb(add_convert_command, run_convert); }
std::unique_ptr<Verb> make_export_verb() { return make_options_verb(add_export_command, run_export); }
std::unique_ptr<Verb> make_inspect_verb() { return make_options_verb(add_inspect_command, run_inspect); }
std::unique_ptr<Verb> make_preprocess_verb() { return make_options_verb(add_preprocess_command, run_preprocess); }

}  // namespace vitruvian::jobs
