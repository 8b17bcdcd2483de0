// The phantom job: studies dealt round-robin to ranks; each rank writes its own part file (or
// whole shards), then rank 0 joins the parts in study order (or writes the shard index).
#include "launch/jobs/phantom.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <unistd.h>

#include "core/errors.h"
#include "core/mpi.h"
#include "core/progress.h"
#include "data/nifti_io.h"
#include "data/phantom.h"
#include "data/preview.h"
#include "data/volume_store.h"
#include "launch/jobs/arguments.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using namespace vitruvian::data;

PhantomOptions phantom_options(const PhantomJobOptions& o, int threads) {
  PhantomOptions p;
  p.kind = phantom_kind_from_name(o.kind, "--kind");
  p.shape_zyx = parse_three_counts(o.shape, "--shape");
  if (o.spacing != "auto") p.spacing_xyz = parse_three_numbers(o.spacing, "--spacing");
  p.seed = static_cast<std::uint64_t>(o.seed);
  p.noise = o.noise;
  p.deformation = o.deformation;
  p.perfusion_frames = o.frames;
  p.threads = threads;
  p.validate();
  if (o.studies < 1 || o.studies > 10000000) {
    throw InputError(fmt::format("--studies {}", o.studies), "expected 1 to 10 000 000 studies");
  }
  if (o.seed < 0) throw InputError(fmt::format("--seed {}", o.seed), "expected a seed >= 0");
  if (o.output.empty() && !o.describe) throw InputError("phantom", "no output; give --out DATASET.h5");
  if (o.shard_studies < 0) throw InputError("--shard-studies", "expected a positive number of studies per shard");
  return p;
}

std::string describe_kind(PhantomKind kind) {
  const PhantomKindDescription d = describe_phantom_kind(kind);
  std::string out = fmt::format("## {}\n\nDefault field of view {:g} × {:g} × {:g} mm (x, y, z).\n\n", phantom_kind_name(kind),
                                d.field_of_view_mm[0], d.field_of_view_mm[1], d.field_of_view_mm[2]);
  out += "| series | modality | stored as | noise at --noise 1 |\n|---|---|---|---|\n";
  std::string header = "| tissue | label (id) |", rule = "|---|---|";
  bool four_d = false;
  for (const auto& s : d.series) {
    out += fmt::format("| `{}`{} | {} | {} | {} σ = {:g}{} |\n", s.name, s.four_d ? " (4D)" : "", s.modality, s.type,
                       s.noise_model, s.noise_sigma,
                       s.bias_amplitude > 0 ? fmt::format(", bias field ×(1 ± {:g})³", s.bias_amplitude) : "");
    header += fmt::format(" `{}`{} |", s.name, s.four_d ? " before contrast" : "");
    rule += "---|";
    four_d = four_d || s.four_d;
  }
  if (four_d) header += " curve in 4D |", rule += "---|";
  out += "\n" + header + "\n" + rule + "\n";
  for (const auto& t : d.tissues) {
    std::string row = fmt::format("| {} | {} |", t.name, t.label.empty() ? "(outside)" : fmt::format("{} ({})", t.label, t.label_id));
    for (const auto& [low, high] : t.ranges) row += low == high ? fmt::format(" {:g} |", low) : fmt::format(" {:g} … {:g} |", low, high);
    if (four_d) row += fmt::format(" {} |", t.enhancement.empty() ? "constant" : t.enhancement);
    out += row + "\n";
  }
  return out + "\n";
}

/// Where a study's preview cuts: the centre of its kind's focus structure.
std::array<std::int64_t, 3> preview_centre(const PhantomStudy& study) {
  const std::string focus = describe_phantom_kind(study.kind).focus_label;
  for (const auto& [id, name] : phantom_label_table(study.kind)) {
    if (name == focus) return label_centre(study.labels.voxels, {id});
  }
  return label_centre(study.labels.voxels);
}

/// Bytes one study holds in memory while it is generated (series as stored in tensors, labels,
/// per-slice buffers).
double study_bytes(const PhantomOptions& phantom, std::int64_t index) {
  const auto d = describe_phantom_kind(phantom_study_kind(phantom, index));
  const double voxels = static_cast<double>(phantom.shape_zyx[0]) * static_cast<double>(phantom.shape_zyx[1]) *
                        static_cast<double>(phantom.shape_zyx[2]);
  double per_voxel = 1;  // labels
  for (const auto& s : d.series) per_voxel += (s.four_d ? phantom.perfusion_frames : 1) * (s.type == "int16" ? 2.0 : 4.0);
  return voxels * per_voxel;
}

/// The files a run will write, refused when they exist (without --force) or cannot be made.
void check_outputs(const PhantomJobOptions& o, const PhantomOptions& phantom, std::int64_t shards) {
  const fs::path output(o.output);
  refuse_existing(output, o.force);
  const fs::path folder = output.has_parent_path() ? output.parent_path() : fs::path(".");
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    throw InputError(output.string(), "cannot create a file in this folder (expected an existing, writable folder)");
  }
  for (std::int64_t s = 0; s < shards; ++s) {
    refuse_existing(folder / fmt::format("{}.shard-{:05d}.h5", output.stem().string(), s), o.force);
  }
  for (const auto& dir : {o.nifti_dir, o.preview_dir}) {
    if (dir.empty()) continue;
    if (fs::exists(dir, error) && !fs::is_directory(dir, error)) throw InputError(dir, "exists and is not a folder");
    if (fs::is_directory(dir, error) && !fs::is_empty(dir, error) && !o.force) {
      throw InputError(dir, "is not empty; pass --force to write into it");
    }
    fs::create_directories(dir, error);
    if (error) throw InputError(dir, "cannot create the folder: " + error.message());
  }
  // Memory: one study at a time per rank.
  double largest = 0;
  for (std::int64_t i = 0; i < std::min<std::int64_t>(o.studies, 64); ++i) largest = std::max(largest, study_bytes(phantom, i));
  const double physical = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (physical > 0 && largest > 0.8 * physical) {
    throw InputError("--shape", fmt::format("a study needs about {:.1f} GiB in memory; this machine has {:.1f} GiB (use a "
                                            "smaller --shape or fewer --frames)",
                                            largest / (1 << 30), physical / (1 << 30)));
  }
}

}  // namespace

ExitCode run_phantom(const JobContext& context, const PhantomJobOptions& options) {
  const int rank = context.env.rank(), size = context.env.size();
  PhantomOptions phantom;
  StorageOptions storage;
  const bool sharded = options.shard_studies > 0;
  std::string usage;
  try {
    phantom = phantom_options(options, context.runtime.intra_op_threads);
    storage = storage_options(options.chunk, options.deflate, true, options.lz4);
    if (!options.describe) {
      check_outputs(options, phantom, sharded ? (options.studies + options.shard_studies - 1) / options.shard_studies : 0);
    }
  } catch (const Error& e) {
    usage = e.what();
  }
  // Every rank checks; all agree before any of them starts (a rank alone in error would leave
  // the others waiting in the first collective).
  if (!agree_all(context, usage.empty(), usage)) return ExitCode::kUsage;
  if (options.describe) {
    if (rank == 0) {
      for (const PhantomKind kind : phantom_study_kinds()) {
        if (phantom.kind == PhantomKind::kMixed || kind == phantom.kind) std::cout << describe_kind(kind);
      }
    }
    return ExitCode::kOk;
  }

  const fs::path output(options.output);
  const fs::path folder = output.has_parent_path() ? output.parent_path() : fs::path(".");
  const LabelTable labels = phantom_label_table(phantom.kind);
  const std::int64_t shards = sharded ? (options.studies + options.shard_studies - 1) / options.shard_studies : 0;
  auto shard_path = [&](std::int64_t s) { return folder / fmt::format("{}.shard-{:05d}.h5", output.stem().string(), s); };
  // Where this rank's HDF5 goes first: the output itself (one rank), a part file, or shards
  // under temporary names renamed into place once every rank has succeeded.
  auto pending_shard = [&](std::int64_t s) { return fs::path(shard_path(s).string() + ".pending"); };
  auto part_path = [&](int r) { return fs::path(output.string() + fmt::format(".part-{:05d}.tmp", r)); };
  const fs::path part = size == 1 ? output : part_path(rank);

  // This rank's studies: every size-th study, or every size-th shard.
  std::vector<std::int64_t> mine;
  for (std::int64_t i = 0; i < options.studies; ++i) {
    const std::int64_t owner = sharded ? (i / options.shard_studies) % size : i % size;
    if (owner == rank) mine.push_back(i);
  }
  if (rank == 0) {
    const auto spacing = phantom_spacing(phantom, 0);
    spdlog::info("phantom: {} {} studies of {}x{}x{} voxels ({} mm), seed {}, on {} rank(s) x {} thread(s)", options.studies,
                 options.kind, phantom.shape_zyx[0], phantom.shape_zyx[1], phantom.shape_zyx[2],
                 phantom.kind == PhantomKind::kMixed ? "per kind" : fmt::format("{:.3g}x{:.3g}x{:.3g}", spacing[0], spacing[1], spacing[2]),
                 options.seed, size, phantom.threads);
  }

  const auto start = std::chrono::steady_clock::now();
  std::string failure;
  std::vector<fs::path> temporary;  // this rank's committed part or pending shards
  std::vector<fs::path> extras;     // NIfTI copies and previews, removed if the job fails
  try {
    Progress progress(size > 1 ? "studies on rank 0" : "studies", static_cast<std::int64_t>(mine.size()), rank == 0);
    std::unique_ptr<VolumeWriter> writer;
    fs::path writer_path;
    std::int64_t writer_shard = -1;
    auto close_writer = [&] {
      if (!writer) return;
      writer->set_label_table(labels);
      writer->commit();
      writer.reset();
      if (writer_path != output) temporary.push_back(writer_path);
    };
    for (const std::int64_t index : mine) {
      const PhantomStudy study = make_phantom_study(phantom, index);
      if (sharded && index / options.shard_studies != writer_shard) {
        close_writer();
        writer_shard = index / options.shard_studies;
        writer_path = pending_shard(writer_shard);
        writer = std::make_unique<VolumeWriter>(writer_path, storage);
      } else if (!writer) {
        writer_path = part;
        writer = std::make_unique<VolumeWriter>(writer_path, storage);
      }
      write_phantom_study(*writer, study);
      if (!options.nifti_dir.empty()) {
        const fs::path dir = fs::path(options.nifti_dir) / study.id;
        fs::create_directories(dir);
        for (const auto& [name, volume] : study.series) {
          extras.push_back(dir / (name + ".nii.gz"));
          write_nifti(extras.back(), volume);
        }
        extras.push_back(dir / (std::string(kPhantomLabelMap) + ".nii.gz"));
        write_nifti(extras.back(), study.labels);
      }
      if (!options.preview_dir.empty()) {
        extras.push_back(fs::path(options.preview_dir) / (study.id + ".png"));
        write_png(extras.back(), study_picture(study.series, study.labels.voxels, preview_centre(study)));
      }
      progress.advance(1, study.id);
    }
    close_writer();
  } catch (const std::exception& e) {
    failure = fmt::format("phantom generation failed on rank {} ({}): {}", rank, context.env.host(), e.what());
  }
  auto discard = [&] {
    std::error_code ignored;
    for (const auto& path : temporary) fs::remove(path, ignored);
    for (const auto& path : extras) fs::remove(path, ignored);
  };
  if (!agree_all(context, failure.empty(), failure)) {
    discard();
    return ExitCode::kFailed;
  }

  // Shards go into place on their own rank; rank 0 then writes the index, or joins the parts.
  try {
    if (sharded) {
      for (std::int64_t s = rank; s < shards; s += size) fs::rename(pending_shard(s), shard_path(s));  // shards of this rank
      temporary.clear();
    }
  } catch (const std::exception& e) {
    failure = fmt::format("moving shards into place failed on rank {}: {}", rank, e.what());
  }
  if (!agree_all(context, failure.empty(), failure)) {
    discard();
    return ExitCode::kFailed;
  }
  if (rank == 0) {
    try {
      if (sharded) {
        std::vector<std::string> names;
        for (std::int64_t s = 0; s < shards; ++s) names.push_back(shard_path(s).filename().string());
        write_shard_index(output, names, labels);
        // A forced rerun with fewer shards: the old run's extra shards go.
        for (std::int64_t s = shards;; ++s) {
          std::error_code error;
          if (!fs::remove(shard_path(s), error)) break;
        }
      } else if (size > 1) {
        std::vector<fs::path> parts;
        for (int r = 0; r < std::min<std::int64_t>(size, options.studies); ++r) {
          parts.push_back(part_path(r));
        }
        merge_volume_files(parts, output, labels);  // studies are listed by id, whatever the parts' order
      }
    } catch (const std::exception& e) {
      failure = fmt::format("writing {} failed: {}", output.string(), e.what());
    }
  }
  const bool ok = agree_all(context, failure.empty(), failure);
  if (!sharded && size > 1) {
    std::error_code ignored;
    fs::remove(part, ignored);
  }
  if (!ok) {
    if (sharded) {
      std::error_code ignored;
      for (std::int64_t s = rank; s < shards; s += size) fs::remove(shard_path(s), ignored);
    }
    discard();
    return ExitCode::kFailed;
  }
  if (rank == 0) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("phantom: wrote {} studies to {}{} in {:.1f} s ({:.2f} studies/s)", options.studies, output.string(),
                 sharded ? fmt::format(" (index over {} shards)", shards) : "", seconds, options.studies / seconds);
  }
  return ExitCode::kOk;
}

namespace {

CLI::App* add_phantom_command(CLI::App& app, PhantomJobOptions& o) {
  CLI::App* phantom = add_verb_command(
      app, "phantom", "Generate synthetic multi-sequence CT/MR studies with exact labels (docs/PHANTOMS.md) into an HDF5 "
                      "dataset, in parallel across ranks; the contents do not depend on the number of ranks or threads",
      "Threads per study: --threads (runtime.intra_op_threads).");
  phantom->add_option("--kind", o.kind, "chest-cardiac | head-neck | abdomen-mr | msk | mixed")->capture_default_str();
  phantom->add_option("--studies", o.studies, "Number of studies")->capture_default_str();
  phantom->add_option("--shape", o.shape, "Voxels Z,Y,X (or one size)")->capture_default_str();
  phantom->add_option("--spacing", o.spacing, "Voxel spacing in mm: X,Y,Z, one value, or auto (the kind's "
                                               "field of view / shape)")
      ->capture_default_str();
  phantom->add_option("--seed", o.seed, "Random seed; study i is a function of (seed, i) alone")->capture_default_str();
  phantom->add_option("-o,--out", o.output, "Dataset file (the index file with --shard-studies)");
  phantom->add_option("--nifti", o.nifti_dir, "Also write DIR/<study>/<series>.nii.gz and anatomy.nii.gz");
  phantom->add_option("--preview", o.preview_dir, "Write DIR/<study>.png: slices with label overlays");
  phantom->add_option("--noise", o.noise, "Noise level, a factor on each series' default")->capture_default_str();
  phantom->add_option("--deformation", o.deformation, "Smooth random deformation, a factor on the default")
      ->capture_default_str();
  phantom->add_option("--frames", o.frames, "Time points of 4D perfusion series")->capture_default_str();
  phantom->add_option("--chunk", o.chunk, "Chunk shape Z,Y,X (or one size, or 'contiguous')")->capture_default_str();
  phantom->add_option("--deflate", o.deflate, "Deflate level 0 (off) to 9, with byte shuffle")->capture_default_str();
  phantom->add_flag("--lz4", o.lz4, "LZ4 instead of deflate (with byte shuffle; needs hdf5-filter-plugin)");
  phantom->add_option("--shard-studies", o.shard_studies, "Write shards of this many studies plus an index file");
  phantom->add_flag("--force", o.force, "Replace an existing output");
  phantom->add_flag("--describe", o.describe, "Print the kind's series, tissues, labels and value ranges (Markdown) and stop");
  return phantom;
}

}  // namespace

std::unique_ptr<Verb> make_phantom_verb() { return make_options_verb(add_phantom_command, run_phantom); }

}  // namespace vitruvian::jobs
