// Topology, the memory model and the patch/batch search.
#include "models/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

/// Activation maps autograd keeps per stage and direction, in units of that stage's feature map:
/// 5.55 measured on LibTorch 1.13 CPU for 32³–64³ patches (tests/models/plan_test.cpp).
constexpr double kActivationFactor = 5.6;
/// The backward pass's peak over the activations kept after forward (gradients of the maps
/// being freed coexist with the rest).
constexpr double kBackwardHeadroom = 1.25;

std::vector<std::int64_t> features_for(int stages, std::int64_t base, std::int64_t cap) {
  std::vector<std::int64_t> f;
  for (int s = 0; s < stages; ++s) f.push_back(std::min<std::int64_t>(base << s, cap));
  return f;
}

}  // namespace

void topology(const std::array<std::int64_t, 3>& patch_zyx, const std::array<double, 3>& spacing_zyx, StageAxes& strides,
              StageAxes& kernels) {
  strides.assign(1, {1, 1, 1});
  kernels.clear();
  std::array<std::int64_t, 3> size = patch_zyx;
  std::array<double, 3> spacing = spacing_zyx;
  while (true) {
    const double finest = *std::min_element(spacing.begin(), spacing.end());
    std::array<std::int64_t, 3> kernel{}, stride{};
    bool pools = false;
    for (int a = 0; a < 3; ++a) {
      kernel[a] = spacing[a] <= 2 * finest ? 3 : 1;
      stride[a] = (spacing[a] <= 2 * finest && size[a] / 2 >= 4) ? 2 : 1;
      pools = pools || stride[a] == 2;
    }
    kernels.push_back(kernel);
    if (!pools || strides.size() >= 6) break;
    strides.push_back(stride);
    for (int a = 0; a < 3; ++a) {
      size[a] = (size[a] + stride[a] - 1) / stride[a];
      spacing[a] *= static_cast<double>(stride[a]);
    }
  }
}

double training_memory_bytes(const std::vector<std::int64_t>& features, const StageAxes& strides,
                             const std::array<std::int64_t, 3>& patch_zyx, std::int64_t batch, std::int64_t in_channels,
                             std::int64_t classes) {
  double maps = 0, parameters = 0;
  std::array<double, 3> size{static_cast<double>(patch_zyx[0]), static_cast<double>(patch_zyx[1]),
                             static_cast<double>(patch_zyx[2])};
  for (std::size_t s = 0; s < features.size(); ++s) {
    for (int a = 0; a < 3; ++a) size[a] = std::ceil(size[a] / static_cast<double>(strides[s][a]));
    const double voxels = size[0] * size[1] * size[2];
    const double f = static_cast<double>(features[s]);
    maps += kActivationFactor * f * voxels * (s + 1 < features.size() ? 2 : 1);  // encoder + decoder
    const double in = s == 0 ? static_cast<double>(in_channels) : static_cast<double>(features[s - 1]);
    parameters += 27 * (in * f + f * f) + (s > 0 ? 27 * 2 * in * in + 8 * f * in : 0);
  }
  const double voxels0 = static_cast<double>(patch_zyx[0] * patch_zyx[1] * patch_zyx[2]);
  // Logits, softmax and one-hot for LibTorch's loss (CUDA); the fused CPU loss keeps only the logits.
  maps += 3.0 * static_cast<double>(classes) * voxels0;
  return 4.0 * (kBackwardHeadroom * maps * static_cast<double>(batch) + 4.0 * parameters);
}

Plan make_plan(const PlanInput& input) {
  Plan plan;
  std::array<std::int64_t, 3> patch{};
  for (int a = 0; a < 3; ++a) {
    if (input.median_shape_zyx[a] < 1) throw InputError("plan", "the dataset's median shape is empty");
    patch[a] = std::min<std::int64_t>(input.median_shape_zyx[a], 256);
  }
  auto fits = [&](const std::array<std::int64_t, 3>& p, std::int64_t batch, Plan& out) {
    topology(p, input.spacing_zyx, out.strides, out.kernels);
    out.features = features_for(static_cast<int>(out.strides.size()), input.base_features, input.max_features);
    out.estimated_bytes = training_memory_bytes(out.features, out.strides, p, batch, input.in_channels, input.classes);
    return out.estimated_bytes <= input.memory_bytes;
  };
  // Shrink the longest physical axis (by 8 voxels, or 1/16 of it) until batch 2 fits.
  while (!fits(patch, 2, plan)) {
    int longest = 0;
    for (int a = 1; a < 3; ++a) {
      if (static_cast<double>(patch[a]) * input.spacing_zyx[a] > static_cast<double>(patch[longest]) * input.spacing_zyx[longest]) {
        longest = a;
      }
    }
    if (*std::max_element(patch.begin(), patch.end()) <= 16) {
      throw InputError("plan", fmt::format("even a 16^3 patch needs about {:.2f} GB; the budget is {:.2f} GB",
                                           plan.estimated_bytes / 1e9, input.memory_bytes / 1e9));
    }
    patch[longest] = std::max<std::int64_t>(16, patch[longest] - std::max<std::int64_t>(8, patch[longest] / 16));
  }
  // Patches divisible by the total pooling along each axis.
  std::array<std::int64_t, 3> divisor{1, 1, 1};
  for (const auto& s : plan.strides) {
    for (int a = 0; a < 3; ++a) divisor[a] *= s[a];
  }
  for (int a = 0; a < 3; ++a) patch[a] = std::max(divisor[a], patch[a] / divisor[a] * divisor[a]);
  fits(patch, 2, plan);
  plan.patch_zyx = patch;
  plan.batch_size = 2;
  const double patch_voxels = static_cast<double>(patch[0] * patch[1] * patch[2]);
  Plan bigger = plan;
  while (plan.batch_size < 16 && fits(patch, plan.batch_size + 1, bigger) &&
         (input.dataset_voxels <= 0 || static_cast<double>(plan.batch_size + 1) * patch_voxels <= 0.05 * input.dataset_voxels)) {
    plan = bigger;
    ++plan.batch_size;
  }
  fits(patch, plan.batch_size, plan);
  plan.patch_zyx = patch;
  plan.notes.push_back(fmt::format("patch {}x{}x{} from the median shape {}x{}x{} within {:.2f} GB", patch[0], patch[1], patch[2],
                                   input.median_shape_zyx[0], input.median_shape_zyx[1], input.median_shape_zyx[2],
                                   input.memory_bytes / 1e9));
  plan.notes.push_back(fmt::format("{} stages; pooling stops per axis at 4 voxels or where spacing exceeds twice the finest",
                                   plan.strides.size()));
  plan.notes.push_back(fmt::format("batch {} per rank (estimated {:.2f} GB)", plan.batch_size, plan.estimated_bytes / 1e9));
  return plan;
}

}  // namespace vitruvian::models
