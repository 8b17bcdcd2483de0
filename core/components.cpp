// Connected components and what is built on them for masks (small islands, largest component).
#include "core/components.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "core/errors.h"
#include "core/kernels/dispatch.h"

namespace vitruvian {

Components connected_components(const at::Tensor& mask, int connectivity) {
  if (mask.dim() != 3) {
    throw InputError("connected components",
                     fmt::format("mask of shape {}; expected [z, y, x]", fmt::join(mask.sizes(), "x")));
  }
  // Each voxel names its component's first voxel (the connected-components kernel, on the
  // mask's device); numbering in scan order then needs one pass: a component's first voxel is
  // met before all its others, and its number overwrites its root entry.
  at::Tensor labels = kernels::connected_roots(mask, connectivity).cpu().contiguous();
  std::int32_t* out = labels.data_ptr<std::int32_t>();
  Components result;
  const std::int64_t n = labels.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    if (out[i] == 0) continue;
    const std::int64_t root = out[i] - 1;
    if (root == i) {
      result.sizes.push_back(0);
      out[i] = static_cast<std::int32_t>(result.sizes.size());
    } else {
      out[i] = out[root];
    }
    ++result.sizes[static_cast<std::size_t>(out[i] - 1)];
  }
  result.labels = labels;
  return result;
}

std::int64_t remove_small_components(at::Tensor& mask, std::int64_t min_voxels) {
  if (min_voxels <= 1 || !mask.any().item<bool>()) return 0;
  const Components c = connected_components(mask, 26);
  const std::int32_t* label = c.labels.data_ptr<std::int32_t>();
  std::uint8_t* m = mask.data_ptr<std::uint8_t>();
  std::int64_t removed = 0;
  for (std::int64_t i = 0; i < mask.numel(); ++i) {
    if (label[i] != 0 && c.sizes[static_cast<std::size_t>(label[i] - 1)] < min_voxels) {
      m[i] = 0;
      ++removed;
    }
  }
  return removed;
}

at::Tensor largest_component(const at::Tensor& mask) {
  const Components c = connected_components(mask, 6);
  if (c.count() == 0) return at::zeros_like(mask, mask.options().dtype(at::kByte));
  const auto biggest = std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin();
  return (c.labels == static_cast<std::int32_t>(biggest + 1)).to(at::kByte);
}

}  // namespace vitruvian
