// The dataset verbs: `vitruvian convert` (NIfTI files, DICOM folders or a manifest → the HDF5
// volume store), `vitruvian export` (series and label maps → NIfTI), `vitruvian inspect`, and
// `vitruvian preprocess` (channels onto one grid for training).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/exit_code.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

struct ConvertOptions {
  std::vector<std::string> inputs;  ///< NIfTI files and DICOM folders
  std::string manifest;             ///< YAML manifest (data/study_import.h); "" for none
  std::string output;               ///< dataset file, or the index file with --shard-studies
  std::string series_name = "image";
  std::string modality;
  std::vector<std::string> labels;       ///< NAME=FILE, attached to the single NIfTI input
  std::vector<std::string> label_names;  ///< ID=NAME entries of the label table
  std::string chunk = "64,64,64";        ///< "Z,Y,X" or "contiguous"
  int deflate = 0;
  bool lz4 = false;  ///< LZ4 instead of deflate (needs hdf5-filter-plugin)
  bool no_shuffle = false;
  std::int64_t shard_studies = 0;  ///< > 0: shards of this many studies plus an index
  std::int64_t max_voxels = std::int64_t{1} << 31;
  bool force = false;  ///< replace an existing output
};

/// Rank 0 imports; other ranks wait. Exit 0 when every study landed, 1 when any file or study
/// was rejected (each named on one stderr line; the others still land), 2 for bad arguments.
ExitCode run_convert(const JobContext& context, const ConvertOptions& options);

struct ExportOptions {
  std::string dataset;
  std::string study, series, label;  ///< one object with --output
  std::string output;                ///< .nii or .nii.gz
  std::string out_dir;               ///< every series and label map (of --study, or all) here
  bool nifti2 = false;
  std::string dicom_dir;      ///< every series (of --study, or all) as <dir>/<study>/<series>/NNNN.dcm
  std::string uid_root;       ///< root of the DICOM UIDs; empty: data::kDefaultUidRoot
  std::int64_t uid_seed = 0;  ///< with the study id and series name, what the UIDs are made from
};

ExitCode run_export(const JobContext& context, const ExportOptions& options);

struct InspectOptions {
  std::string dataset;
  bool json = false;
  bool volumes = true;  ///< read label maps to give each structure's volume (mL)
};

ExitCode run_inspect(const JobContext& context, const InspectOptions& options);

struct PreprocessOptions {
  std::string dataset, output;
  std::vector<std::string> channels;  ///< series names; the first is the reference grid
  std::string label;
  std::vector<double> spacing;        ///< x, y, z mm; empty keeps the reference's
  bool crop_body = false;
  std::string chunk = "64,64,64";
  int deflate = 0;
  bool force = false;
};

/// Resamples each study's channels onto one grid (data/dataset_preprocess.h) into a new dataset.
ExitCode run_preprocess(const JobContext& context, const PreprocessOptions& options);

/// The `convert`, `export`, `inspect` and `preprocess` verbs.
std::unique_ptr<Verb> make_convert_verb();
std::unique_ptr<Verb> make_export_verb();
std::unique_ptr<Verb> make_inspect_verb();
std::unique_ptr<Verb> make_preprocess_verb();

}  // namespace vitruvian::jobs
