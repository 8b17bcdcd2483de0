// Self-configuration (nnU-Net's idea, our rules): from a dataset's median spacing and shape, a
// patch size, batch size and network topology (stages, pooling and kernels per axis) that fit a
// memory budget. The rules are documented in docs/PLANS.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "models/unet.h"

namespace vitruvian::models {

struct PlanInput {
  std::array<double, 3> spacing_zyx{1, 1, 1};        ///< the training grid's spacing (mm)
  std::array<std::int64_t, 3> median_shape_zyx{};   ///< median study shape on that grid
  std::int64_t in_channels = 1;
  std::int64_t classes = 2;                         ///< including background
  double memory_bytes = 8e9;                        ///< budget per rank (GPU memory, or RAM on CPU)
  double dataset_voxels = 0;                        ///< all training studies' voxels on that grid
  std::int64_t base_features = 32, max_features = 320;
};

struct Plan {
  std::array<std::int64_t, 3> patch_zyx{};
  std::int64_t batch_size = 2;
  StageAxes strides;  ///< per stage (stage 0: 1, 1, 1)
  StageAxes kernels;  ///< per stage
  std::vector<std::int64_t> features;
  double estimated_bytes = 0;       ///< training memory at this patch and batch
  std::vector<std::string> notes;   ///< the decisions, in words
};

/// Pooling and kernels for a patch: an axis is pooled (by 2) at a stage while its spacing is at
/// most twice the finest and its size stays >= 4 after pooling; kernels are 3 along axes whose
/// spacing is at most twice the finest, else 1; at most 6 stages.
void topology(const std::array<std::int64_t, 3>& patch_zyx, const std::array<double, 3>& spacing_zyx, StageAxes& strides,
              StageAxes& kernels);

/// Training memory (bytes) of a plain U-Net with these stages at `patch` and `batch`: the
/// activations autograd keeps for backward (5.6 float32 maps of each stage's size per stage and
/// direction, measured), 25 % more for the backward pass's peak, the loss's class maps, and
/// parameters with their gradient and two optimiser buffers.
double training_memory_bytes(const std::vector<std::int64_t>& features, const StageAxes& strides,
                             const std::array<std::int64_t, 3>& patch_zyx, std::int64_t batch, std::int64_t in_channels,
                             std::int64_t classes);

/// The plan: patch from the median shape (at most 256 per axis), shrunk along its longest
/// physical axis until batch 2 fits the budget; batch raised while it fits and stays within 5 %
/// of the dataset's voxels; InputError when even a 16³ patch does not fit.
Plan make_plan(const PlanInput& input);

}  // namespace vitruvian::models
