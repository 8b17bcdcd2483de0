// `vitruvian phantom`: synthetic multi-sequence studies with exact labels (docs/PHANTOMS.md),
// generated in parallel across ranks into one dataset (or shards + index) whose contents do
// not depend on the number of ranks or threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/exit_code.h"
#include "data/dicom_uid.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

struct PhantomJobOptions {
  std::string kind = "chest-cardiac";
  std::int64_t studies = 1;
  std::string shape = "128,128,128";  ///< Z,Y,X or one size
  std::string spacing = "auto";       ///< mm: X,Y,Z, one value, or "auto" (the kind's field of view / shape)
  std::string framing = "scan";       ///< "scan" or "centred" (data::PhantomFraming)
  std::string fov = "auto";           ///< mm: X,Y,Z, one value (in-plane), or "auto" (drawn per study)
  std::int64_t seed = 0;
  std::string output;
  std::string nifti_dir;    ///< also write <dir>/<study>/<series>.nii.gz and <label map>.nii.gz
  std::string preview_dir;  ///< PNG slices with label overlays, one per study
  /// Also (or, without `output`, only) write <dir>/<study>/<series>/NNNN.dcm (docs/PHANTOMS.md)
  std::string dicom_dir;
  std::string uid_root = data::kDefaultUidRoot;  ///< root of the DICOM UIDs
  double noise = 1.0;
  double deformation = 1.0;
  int frames = 0;  ///< 0: the kind's default (head-neck 30, perfusion-grid 40)
  int residue_order = 1;  ///< perfusion-grid: Erlang order of the transit times
  std::vector<double> delays{0, 1, 2, 3};  ///< perfusion-grid: the four slabs' arterial delays (s)
  std::string ischemia = "typical";        ///< head-neck: "typical" or "wide" (data::PhantomIschemia)
  std::string chunk = "64,64,64";
  int deflate = 0;
  bool lz4 = false;  ///< LZ4 instead of deflate (needs hdf5-filter-plugin)
  std::int64_t shard_studies = 0;
  bool force = false;
  bool describe = false;  ///< print the kind's series, tissues and value ranges (Markdown) and stop
};

/// Exit 0 on success, 2 for bad options (one line from rank 0), 1 when generating or writing
/// failed (nothing is left at the output path).
ExitCode run_phantom(const JobContext& context, const PhantomJobOptions& options);

/// The `phantom` verb.
std::unique_ptr<Verb> make_phantom_verb();

}  // namespace vitruvian::jobs
