// The phantom job: studies dealt round-robin to ranks; each rank writes its own part file (or
// whole shards), then rank 0 joins the parts in study order (or writes the shard index). The
// `phantom` verb.
#include "launch/jobs/phantom.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/progress.h"
#include "data/dicom_writer.h"
#include "data/nifti_io.h"
#include "data/phantom.h"
#include "data/phantom_write.h"
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
  p.framing = phantom_framing_from_name(o.framing, "--framing");
  if (o.fov != "auto") {
    const bool in_plane = o.fov.find(',') == std::string::npos;
    p.fov_xyz = parse_three_numbers(o.fov, "--fov");
    if (in_plane) p.fov_xyz[1] = p.fov_xyz[2] = 0;  // one value: x; y keeps the kind's aspect, z drawn
  }
  p.seed = static_cast<std::uint64_t>(o.seed);
  p.noise = o.noise;
  p.deformation = o.deformation;
  p.perfusion_frames = o.frames;
  p.residue_order = o.residue_order;
  if (o.delays.size() != p.grid_delays_s.size()) {
    throw InputError("--delays", fmt::format("{} values; expected four delays A,B,C,D in seconds (one per slab of the "
                                             "grid)",
                                             o.delays.size()));
  }
  std::copy(o.delays.begin(), o.delays.end(), p.grid_delays_s.begin());
  p.ischemia = phantom_ischemia_from_name(o.ischemia, "--ischemia");
  p.threads = threads;
  p.validate();
  if (o.studies < 1 || o.studies > 10000000) {
    throw InputError(fmt::format("--studies {}", o.studies), "expected 1 to 10 000 000 studies");
  }
  if (o.seed < 0) throw InputError(fmt::format("--seed {}", o.seed), "expected a seed >= 0");
  if (o.output.empty() && o.dicom_dir.empty() && !o.describe) {
    throw InputError("phantom", "no output; give --out DATASET.h5, --dicom DIR or both");
  }
  check_uid_root(o.uid_root, "--uid-root " + o.uid_root);
  if (o.shard_studies < 0) throw InputError("--shard-studies", "expected a positive number of studies per shard");
  return p;
}

std::string describe_kind(PhantomKind kind) {
  const PhantomKindDescription d = describe_phantom_kind(kind);
  const auto& fixed = d.fixed_shape_zyx;
  std::string out =
      fixed[0] > 0
          ? fmt::format("## {}\n\nA fixed grid of {} × {} × {} voxels (z, y, x), {:g} × {:g} × {:g} mm (x, y, z).\n\n",
                        phantom_kind_name(kind), fixed[0], fixed[1], fixed[2], d.field_of_view_mm[0],
                        d.field_of_view_mm[1], d.field_of_view_mm[2])
          : fmt::format("## {}\n\nDefault field of view {:g} × {:g} × {:g} mm (x, y, z). Scan framing draws each "
                        "study's in-plane field of view from {:g}–{:g} mm (x; y in the same proportion) and its z "
                        "coverage from {:g}–{:g} mm{}.\n\n",
                        phantom_kind_name(kind), d.field_of_view_mm[0], d.field_of_view_mm[1], d.field_of_view_mm[2],
                        d.fov_x_range_mm[0], d.fov_x_range_mm[1], d.fov_z_range_mm[0], d.fov_z_range_mm[1],
                        d.arms_down_share > 0
                            ? fmt::format("; the arms lie at the sides in {:g} % of studies", 100 * d.arms_down_share)
                            : "");
  out += "| series | modality | stored as | noise at --noise 1 |\n|---|---|---|---|\n";
  std::string header = "| tissue | label (id) |", rule = "|---|---|";
  bool four_d = false;
  for (const auto& s : d.series) {
    const std::string noise = s.noise_sigma > 0 ? fmt::format("{} σ = {:g}", s.noise_model, s.noise_sigma) : "none";
    out += fmt::format("| `{}`{} | {} | {} | {}{} |\n", s.name, s.four_d ? " (4D)" : "",
                       s.modality.empty() ? "(truth map)" : s.modality, s.type, noise,
                       s.bias_amplitude > 0 ? fmt::format(", bias field ×(1 ± {:g})³", s.bias_amplitude) : "");
    header += fmt::format(" `{}`{} |", s.name, s.four_d ? " before contrast" : "");
    rule += "---|";
    four_d = four_d || s.four_d;
  }
  if (four_d) header += " curve in 4D |", rule += "---|";
  out += "\n" + header + "\n" + rule + "\n";
  for (const auto& t : d.tissues) {
    // The first tissue is the air outside the body; a label without an id names its ids itself.
    const std::string label = t.label.empty()  ? (&t == &d.tissues.front() ? "(outside)" : "(none)")
                              : t.label_id > 0 ? fmt::format("{} ({})", t.label, t.label_id)
                                               : t.label;
    std::string row = fmt::format("| {} | {} |", t.name, label);
    for (const auto& [low, high] : t.ranges) row += low == high ? fmt::format(" {:g} |", low) : fmt::format(" {:g} … {:g} |", low, high);
    if (four_d) row += fmt::format(" {} |", t.enhancement.empty() ? "constant" : t.enhancement);
    out += row + "\n";
  }
  return out + "\n" + d.notes;
}

/// BodyPartExamined of a kind's DICOM series (defined terms of DICOM PS3.16 Annex L).
std::string body_part(PhantomKind kind) {
  switch (kind) {
    case PhantomKind::kChestCardiac:
      return "CHEST";
    case PhantomKind::kHeadNeck:
      return "HEADNECK";
    case PhantomKind::kAbdomenMr:
      return "ABDOMEN";
    case PhantomKind::kMsk:
      return "PELVIS";
    case PhantomKind::kPerfusionGrid:
      return "HEAD";
    default:
      return "";
  }
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
  const PhantomKind kind = phantom_study_kind(phantom, index);
  const auto d = describe_phantom_kind(kind);
  const auto shape = phantom_shape(phantom, index);
  const double voxels = static_cast<double>(shape[0]) * static_cast<double>(shape[1]) * static_cast<double>(shape[2]);
  double per_voxel = 1;  // labels
  for (const auto& s : d.series) {
    per_voxel += (s.four_d ? phantom_frames(phantom, kind) : 1) * (s.type == "int16" ? 2.0 : 4.0);
  }
  return voxels * per_voxel;
}

/// The files a run will write, refused when they exist (without --force) or cannot be made.
void check_outputs(const PhantomJobOptions& o, const PhantomOptions& phantom, std::int64_t shards) {
  std::error_code error;
  if (!o.output.empty()) {
    const fs::path output(o.output);
    refuse_existing(output, o.force);
    const fs::path folder = output.has_parent_path() ? output.parent_path() : fs::path(".");
    if (!fs::is_directory(folder, error)) {
      throw InputError(output.string(), "cannot create a file in this folder (expected an existing, writable folder)");
    }
    for (std::int64_t s = 0; s < shards; ++s) {
      refuse_existing(folder / fmt::format("{}.shard-{:05d}.h5", output.stem().string(), s), o.force);
    }
  }
  for (const auto& dir : {o.nifti_dir, o.preview_dir, o.dicom_dir}) {
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

/// One `vitruvian phantom` run on this rank, as the steps run_phantom takes in order. Studies
/// are dealt round-robin to ranks (whole shards with --shard-studies). Each rank writes first
/// where nothing reads yet (the output itself with one rank, else a part file or pending
/// shards); the files go into place only once every rank has succeeded.
class PhantomRun {
 public:
  PhantomRun(const JobContext& context, const PhantomJobOptions& options)
      : context_(context),
        o_(options),
        rank_(context.env.rank()),
        size_(context.env.size()),
        output_(options.output),
        folder_(output_.has_parent_path() ? output_.parent_path() : fs::path(".")),
        sharded_(options.shard_studies > 0),
        shards_(sharded_ ? (options.studies + options.shard_studies - 1) / options.shard_studies : 0),
        owner_(std::stoull(context.control.broadcast(std::to_string(::getpid()), 0, "phantom temporaries"))),
        part_(size_ == 1 || output_.empty() ? output_ : part_path(rank_)) {}

  /// Collective: the options and outputs checked by every rank; false on every rank when any
  /// rank found a problem (a rank alone in error would leave the others waiting in the first
  /// collective).
  bool check() {
    std::string usage;
    try {
      phantom_ = phantom_options(o_, context_.runtime.intra_op_threads);
      storage_ = storage_options(o_.chunk, o_.deflate, true, o_.lz4);
      labels_ = phantom_label_table(phantom_.kind);
      if (!o_.describe) check_outputs(o_, phantom_, shards_);
    } catch (const Error& e) {
      usage = e.what();
    }
    return agree_all(context_, usage, "phantom");
  }

  /// Rank 0: the series, tissues and labels of the kind (of every anatomical kind for mixed).
  void describe() const {
    if (rank_ != 0) return;
    if (phantom_.kind != PhantomKind::kMixed) {
      std::cout << describe_kind(phantom_.kind);
      return;
    }
    for (const PhantomKind kind : phantom_study_kinds()) std::cout << describe_kind(kind);
  }

  /// Rank 0: what the run makes.
  void announce() const {
    if (rank_ != 0) return;
    const auto spacing = phantom_spacing(phantom_, 0);
    const auto shape = phantom_shape(phantom_, 0);
    const bool framed = phantom_.framing == PhantomFraming::kScan && phantom_.kind != PhantomKind::kPerfusionGrid;
    spdlog::info("phantom: {} {} studies of {}{}x{}x{} voxels ({} mm), seed {}, on {} rank(s) x {} thread(s)", o_.studies,
                 o_.kind, framed ? "framed per study, the first " : "", shape[0], shape[1], shape[2],
                 phantom_.kind == PhantomKind::kMixed
                     ? "per kind"
                     : fmt::format("{:.3g}x{:.3g}x{:.3g}", spacing[0], spacing[1], spacing[2]),
                 o_.seed, size_, phantom_.threads);
  }

  /// Collective: this rank's studies generated and written (with their NIfTI copies and
  /// previews); false on every rank when any rank failed.
  bool generate() {
    start_ = std::chrono::steady_clock::now();
    std::string failure;
    try {
      const std::vector<std::int64_t> mine = my_studies();
      Progress progress(size_ > 1 ? "studies on rank 0" : "studies", static_cast<std::int64_t>(mine.size()),
                        rank_ == 0);
      for (const std::int64_t index : mine) {
        const PhantomStudy study = make_phantom_study(phantom_, index);
        if (!output_.empty()) write_phantom_study(writer_for(index), study);
        write_extras(study);
        write_dicom(study);
        progress.advance(1, study.id);
      }
      close_writer();
    } catch (const std::exception& e) {
      failure = fmt::format("phantom generation failed on rank {} ({}): {}", rank_, context_.env.host(), e.what());
      writer_.reset();  // uncommitted
    }
    return agree_all(context_, failure, "phantom");
  }

  /// Collective: this rank's pending shards renamed into place (nothing to do without shards).
  bool place_shards() {
    std::string failure;
    try {
      if (sharded_ && !output_.empty()) {
        for (std::int64_t s = rank_; s < shards_; s += size_) fs::rename(pending_shard(s), shard_path(s));
        temporary_.clear();
      }
    } catch (const std::exception& e) {
      failure = fmt::format("moving shards into place failed on rank {}: {}", rank_, e.what());
    }
    return agree_all(context_, failure, "phantom");
  }

  /// Collective: rank 0 writes the shard index or joins the part files in study order; the part
  /// files go either way, and on failure this rank's shards too.
  bool join() {
    std::string failure;
    if (rank_ == 0 && !output_.empty()) {
      try {
        if (sharded_) {
          write_index();
        } else {
          join_parts();
        }
      } catch (const std::exception& e) {
        failure = fmt::format("writing {} failed: {}", output_.string(), e.what());
      }
    }
    const bool ok = agree_all(context_, failure, "phantom");
    std::error_code ignored;
    if (!sharded_ && size_ > 1 && !output_.empty()) fs::remove(part_, ignored);
    if (!ok && sharded_ && !output_.empty()) {
      for (std::int64_t s = rank_; s < shards_; s += size_) fs::remove(shard_path(s), ignored);
    }
    return ok;
  }

  /// Removes what this rank wrote and has not put into place, NIfTI copies and previews included.
  void discard() const {
    std::error_code ignored;
    for (const auto& path : temporary_) fs::remove(path, ignored);
    for (const auto& path : extras_) fs::remove(path, ignored);
    for (const auto& path : dicom_studies_) fs::remove_all(path, ignored);
  }

  /// Rank 0: the closing line.
  void report() const {
    if (rank_ != 0) return;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string where = output_.string();
    if (sharded_ && !output_.empty()) where += fmt::format(" (index over {} shards)", shards_);
    if (!o_.dicom_dir.empty()) where += fmt::format("{}{} (DICOM)", where.empty() ? "" : " and ", o_.dicom_dir);
    spdlog::info("phantom: wrote {} studies to {} in {:.1f} s ({:.2f} studies/s)", o_.studies, where, seconds,
                 o_.studies / seconds);
  }

 private:
  fs::path shard_path(std::int64_t s) const {
    return folder_ / fmt::format("{}.shard-{:05d}.h5", output_.stem().string(), s);
  }
  /// Files that go into place once every rank has succeeded: in the one temporary scheme, named
  /// after rank 0's process (core/atomic_file.h), so every rank knows every name.
  fs::path pending_shard(std::int64_t s) const { return temporary_path_for(shard_path(s), owner_, static_cast<std::uint64_t>(s)); }
  fs::path part_path(int r) const { return temporary_path_for(output_, owner_, static_cast<std::uint64_t>(r)); }

  /// This rank's studies: every size-th study, or those of every size-th shard.
  std::vector<std::int64_t> my_studies() const {
    std::vector<std::int64_t> mine;
    for (std::int64_t i = 0; i < o_.studies; ++i) {
      const std::int64_t owner = sharded_ ? (i / o_.shard_studies) % size_ : i % size_;
      if (owner == rank_) mine.push_back(i);
    }
    return mine;
  }

  /// The writer of study `index`: this rank's part file, or the pending file of its shard.
  VolumeWriter& writer_for(std::int64_t index) {
    if (sharded_ && index / o_.shard_studies != writer_shard_) {
      close_writer();
      writer_shard_ = index / o_.shard_studies;
      open_writer(pending_shard(writer_shard_));
    } else if (!writer_) {
      open_writer(part_);
    }
    return *writer_;
  }

  void open_writer(const fs::path& path) {
    writer_path_ = path;
    writer_ = std::make_unique<VolumeWriter>(path, storage_);
  }

  void close_writer() {
    if (!writer_) return;
    writer_->set_label_table(labels_);
    writer_->commit();
    writer_.reset();
    if (writer_path_ != output_) temporary_.push_back(writer_path_);
  }

  /// --nifti copies and the --preview picture of `study`.
  void write_extras(const PhantomStudy& study) {
    if (!o_.nifti_dir.empty()) {
      const fs::path dir = fs::path(o_.nifti_dir) / study.id;
      fs::create_directories(dir);
      for (const auto& [name, volume] : study.series) {
        extras_.push_back(dir / (name + ".nii.gz"));
        write_nifti(extras_.back(), volume);
      }
      extras_.push_back(dir / (study.label_map + ".nii.gz"));
      write_nifti(extras_.back(), study.labels);
    }
    if (!o_.preview_dir.empty()) {
      extras_.push_back(fs::path(o_.preview_dir) / (study.id + ".png"));
      write_png(extras_.back(), study_picture(study.series, study.labels.voxels, preview_centre(study)));
    }
  }

  /// --dicom: the study as <dir>/<study>/<series>/NNNN.dcm, on the rank that generated it; UIDs
  /// from (--uid-root, --seed, study id, series), so they do not depend on the number of ranks.
  /// Images only: the perfusion grid's truth maps (no modality) stay in the dataset and NIfTI.
  void write_dicom(const PhantomStudy& study) {
    if (o_.dicom_dir.empty()) return;
    std::vector<std::pair<std::string, const Volume*>> series;
    for (const auto& [name, volume] : study.series) {
      if (volume.modality == "CT" || volume.modality == "MR") series.emplace_back(name, &volume);
    }
    const DicomStudyIdentity identity{o_.uid_root, static_cast<std::uint64_t>(o_.seed),
                                      "Vitruvian phantom " + phantom_kind_name(study.kind), body_part(study.kind)};
    dicom_studies_.push_back(fs::path(o_.dicom_dir) / study.id);
    write_dicom_study(dicom_studies_.back(), study.id, series, identity);
  }

  /// Rank 0: the index over the shards; the extra shards of an earlier, larger forced run go.
  void write_index() const {
    std::vector<std::string> names;
    for (std::int64_t s = 0; s < shards_; ++s) names.push_back(shard_path(s).filename().string());
    write_shard_index(output_, names, labels_);
    for (std::int64_t s = shards_;; ++s) {
      std::error_code error;
      if (!fs::remove(shard_path(s), error)) break;
    }
  }

  /// Rank 0: the part files of several ranks as one dataset (studies listed by id, whatever the
  /// parts' order).
  void join_parts() const {
    if (size_ == 1) return;
    std::vector<fs::path> parts;
    for (int r = 0; r < std::min<std::int64_t>(size_, o_.studies); ++r) parts.push_back(part_path(r));
    merge_volume_files(parts, output_, labels_);
  }

  const JobContext& context_;
  const PhantomJobOptions& o_;
  const int rank_, size_;
  const fs::path output_, folder_;
  const bool sharded_;
  const std::int64_t shards_;
  const std::uint64_t owner_;  ///< rank 0's process id, in the names of shared temporaries
  const fs::path part_;  ///< this rank's part file (the output itself with one rank)
  PhantomOptions phantom_;
  StorageOptions storage_;
  LabelTable labels_;
  std::unique_ptr<VolumeWriter> writer_;
  fs::path writer_path_;
  std::int64_t writer_shard_ = -1;
  std::vector<fs::path> temporary_;  ///< this rank's committed part or pending shards
  std::vector<fs::path> extras_;     ///< NIfTI copies and previews, removed if the job fails
  std::vector<fs::path> dicom_studies_;  ///< --dicom study folders, removed if the job fails
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

ExitCode run_phantom(const JobContext& context, const PhantomJobOptions& options) {
  PhantomRun run(context, options);
  if (!run.check()) return ExitCode::kUsage;
  if (options.describe) {
    run.describe();
    return ExitCode::kOk;
  }
  run.announce();
  if (!run.generate() || !run.place_shards() || !run.join()) {
    run.discard();
    return ExitCode::kFailed;
  }
  run.report();
  return ExitCode::kOk;
}

namespace {

CLI::App* add_phantom_command(CLI::App& app, PhantomJobOptions& o) {
  CLI::App* phantom = add_verb_command(
      app, "phantom",
      "Generate synthetic multi-sequence CT/MR studies with exact labels (docs/PHANTOMS.md) into an HDF5 "
      "dataset, in parallel across ranks; the contents do not depend on the number of ranks or threads",
      "Threads per study: --threads (runtime.intra_op_threads).");
  phantom
      ->add_option("--kind", o.kind,
                   "chest-cardiac | head-neck | abdomen-mr | msk | mixed | perfusion-grid (a CT perfusion validation "
                   "phantom with truth maps; its grid is fixed)")
      ->capture_default_str();
  phantom->add_option("--studies", o.studies, "Number of studies")->capture_default_str();
  phantom->add_option("--shape", o.shape, "Voxels Z,Y,X (or one size)")->capture_default_str();
  phantom
      ->add_option("--spacing", o.spacing,
                   "Voxel spacing in mm: X,Y,Z, one value, or auto (the kind's "
                   "field of view / shape)")
      ->capture_default_str();
  phantom
      ->add_option("--framing", o.framing,
                   "scan: each study framed as a scanner frames it (field of view drawn from the kind's range, "
                   "off-centre, table, arms; --shape is the grid at the kind's default field of view) | centred: "
                   "the grid is --shape, centred on the body, nothing around it")
      ->capture_default_str();
  phantom
      ->add_option("--fov", o.fov,
                   "Scan framing's field of view in mm: one value (in-plane, y keeps the kind's aspect; z coverage "
                   "still drawn), X,Y,Z, or auto (drawn per study from the kind's range)")
      ->capture_default_str();
  phantom->add_option("--seed", o.seed, "Random seed; study i is a function of (seed, i) alone")->capture_default_str();
  phantom->add_option("-o,--out", o.output,
                      "Dataset file (the index file with --shard-studies); --out, --dicom or both");
  phantom->add_option("--nifti", o.nifti_dir, "Also write DIR/<study>/<series>.nii.gz and anatomy.nii.gz");
  phantom->add_option("--preview", o.preview_dir, "Write DIR/<study>.png: slices with label overlays");
  phantom->add_option("--dicom", o.dicom_dir,
                      "Also (or, without --out, only) write each series as DICOM: DIR/<study>/<series>/NNNN.dcm "
                      "(docs/PHANTOMS.md)");
  phantom->add_option("--uid-root", o.uid_root, "Root of the DICOM UIDs (your organisation's registered root)")
      ->capture_default_str();
  phantom->add_option("--noise", o.noise, "Noise level, a factor on each series' default")->capture_default_str();
  phantom->add_option("--deformation", o.deformation, "Smooth random deformation, a factor on the default")
      ->capture_default_str();
  phantom->add_option("--frames", o.frames,
                      "Time points of 4D perfusion series (default: head-neck 30, perfusion-grid 40)");
  phantom->add_option("--residue-order", o.residue_order,
                      "perfusion-grid: Erlang order of the blocks' transit times (1: exponential residue)")
      ->capture_default_str();
  phantom
      ->add_option("--delays", o.delays,
                   "perfusion-grid: arterial delays A,B,C,D (s) of the four slabs, increasing, -4 to 10 (negative: the "
                   "tissue's bolus arrives before the arterial input's)")
      ->delimiter(',')
      ->capture_default_str();
  phantom
      ->add_option("--ischemia", o.ischemia,
                   "head-neck: the ischaemic lesion's size, typical (cores of about 3-30 mL, every study eligible by "
                   "DEFUSE-3) or wide (cores past 70 mL and mismatch ratios below 1.8 too)")
      ->capture_default_str();
  phantom->add_option("--chunk", o.chunk, "Chunk shape Z,Y,X (or one size, or 'contiguous')")->capture_default_str();
  phantom->add_option("--deflate", o.deflate, "Deflate level 0 (off) to 9, with byte shuffle")->capture_default_str();
  phantom->add_flag("--lz4", o.lz4, "LZ4 instead of deflate (with byte shuffle; needs hdf5-filter-plugin)");
  phantom->add_option("--shard-studies", o.shard_studies, "Write shards of this many studies plus an index file");
  phantom->add_flag("--force", o.force, "Replace an existing output");
  phantom->add_flag("--describe", o.describe,
                    "Print the kind's series, tissues, labels and value ranges (Markdown) and stop");
  return phantom;
}

}  // namespace

std::unique_ptr<Verb> make_phantom_verb() { return make_options_verb(add_phantom_command, run_phantom); }

}  // namespace vitruvian::jobs
