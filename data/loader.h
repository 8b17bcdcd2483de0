// The training loader: worker threads assemble batches of patches read straight from the HDF5
// store (only the chunks a patch touches), normalised, augmented, and handed out in order through
// a bounded queue. Batch n is a pure function of (seed, rank, world, n): the same batches come
// out for any number of workers.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/normalization.h"
#include "data/augment.h"
#include "data/preprocess.h"
#include "data/volume_store.h"

namespace vitruvian::data {

/// How a channel's intensities are normalised (core/normalization.h).
using vitruvian::Normalization;
using vitruvian::normalization_from_name;
using vitruvian::normalization_name;

/// Mean and population standard deviation of a whole volume: what kZscore channels use.
IntensityStats volume_stats(const at::Tensor& voxels);

/// Voxels of one channel normalised as the loader normalises them (float32): kCt with the
/// dataset's `ct` statistics, kZscore with the whole volume's (`volume`, see volume_stats).
at::Tensor normalize_channel(const at::Tensor& raw, Normalization normalization, const IntensityStats& ct,
                             const IntensityStats& volume);

/// Which series form the input channels and which label map is the target.
struct TaskSpec {
  /// Series names, one per input channel, e.g. {"t1_pre", "arterial", "portal"}. The first is
  /// the reference grid; the others must lie on it (`vitruvian preprocess` resamples them).
  std::vector<std::string> channels;
  std::string label;  ///< label map name
  /// Per channel; empty = by modality (CT → kCt, anything else → kZscore).
  std::vector<Normalization> normalization;
  /// Dataset statistics for kCt channels, one per channel (others ignored). Empty: computed at
  /// start-up from the foreground (label > 0) of every study, up to 10 000 samples each.
  std::vector<IntensityStats> ct_stats;
  /// Study ids to draw from (e.g. the training split); empty: every study of the dataset.
  std::vector<std::string> studies;
};

struct LoaderOptions {
  std::array<std::int64_t, 3> patch_size{64, 64, 64};  ///< [z, y, x]
  std::int64_t batch_size = 2;
  double foreground_fraction = 0.33;  ///< share of patches forced to contain a foreground class
  int workers = 2;                    ///< threads assembling batches
  std::int64_t queue_depth = 4;       ///< ready batches held at most (memory bound)
  std::uint64_t seed = 0;
  std::int64_t steps_per_epoch = 250;  ///< batches per epoch; the shard changes every epoch
  int rank = 0, world = 1;
  AugmentOptions augment;                           ///< default: none
  std::int64_t label_pad_value = 0;                 ///< label outside the volume
  std::int64_t max_class_locations = 10000;         ///< voxels remembered per class and study
  /// Put finished batches in page-locked memory (only where LibTorch has CUDA), so the copy to
  /// the GPU can run asynchronously.
  bool pin_memory = true;
  /// The first batch delivered: a resumed run starts where it stopped, with the very batches
  /// an uninterrupted run would have seen (batch n depends only on seed, rank, world and n).
  std::int64_t first_batch = 0;
  /// A study whose voxels cannot be read (a corrupt chunk, a damaged file): false ends the run
  /// with the reader's error (it names the file, the study and the series); true leaves the
  /// study out with one warning naming it and the error, and samples the others instead
  /// (InputError once none of the rank's studies is left).
  bool skip_bad_studies = false;
};

/// One batch: image [B, C, pz, py, px] float32, label [B, pz, py, px] int64.
struct Batch {
  std::int64_t index = 0;  ///< 0, 1, 2, ... in delivery order
  std::int64_t epoch = 0;
  at::Tensor image, label;
  std::vector<std::string> studies;                  ///< per sample
  std::vector<std::array<std::int64_t, 3>> origins;  ///< per sample, [z, y, x] (may be < 0: padded)
  std::vector<std::int64_t> forced_class;            ///< per sample; 0 = random patch
};

class PatchLoader {
 public:
  /// Checks the task against the dataset (every study has the channels and the label map, on
  /// one grid, 3D) and starts the workers. Throws InputError naming the study and series at
  /// fault, or ConfigError for bad options (also when the dataset has fewer studies than ranks).
  PatchLoader(std::shared_ptr<const VolumeStore> store, TaskSpec task, LoaderOptions options);
  ~PatchLoader();
  PatchLoader(const PatchLoader&) = delete;
  PatchLoader& operator=(const PatchLoader&) = delete;

  /// The next batch in order; blocks until it is ready. Rethrows a worker's error.
  Batch next();

  /// Seconds next() spent waiting for a batch so far (0 when the workers keep ahead).
  double wait_seconds() const;
  /// Batches built or being built ahead of the consumer: never more than queue_depth, which
  /// bounds the loader's memory.
  std::int64_t batches_ahead() const;
  /// The dataset statistics used for kCt channels (one per channel).
  const std::vector<IntensityStats>& ct_stats() const;
  const TaskSpec& task() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitruvian::data
