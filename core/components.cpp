// Connected components and what is built on them for masks (small islands, largest component).
#include "core/components.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>

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

MaskBox mask_box(const std::uint8_t* mask, std::int64_t nz, std::int64_t ny, std::int64_t nx) {
  MaskBox b;
  b.lo = {nz, ny, nx};
  for (std::int64_t z = 0; z < nz; ++z) {
    for (std::int64_t y = 0; y < ny; ++y) {
      const std::uint8_t* row = mask + (z * ny + y) * nx;
      std::int64_t first = 0, last = nx;
      while (first < nx && row[first] == 0) ++first;
      if (first == nx) continue;
      while (row[last - 1] == 0) --last;
      b.lo = {std::min(b.lo[0], z), std::min(b.lo[1], y), std::min(b.lo[2], first)};
      b.hi = {z + 1, std::max(b.hi[1], y + 1), std::max(b.hi[2], last)};
    }
  }
  return b;
}

namespace {

// Components never reach beyond the box of a mask's set voxels, so they are found on it alone: a
// mask's set voxels are often a small part of its grid (a lesion, the brain in a scan of the head
// and neck).

/// The box of a contiguous CPU uint8 [z, y, x] mask.
MaskBox set_box(const at::Tensor& mask) {
  return mask_box(mask.data_ptr<std::uint8_t>(), mask.size(0), mask.size(1), mask.size(2));
}

at::Tensor box_of(const at::Tensor& t, const MaskBox& b) {
  return t.slice(0, b.lo[0], b.hi[0]).slice(1, b.lo[1], b.hi[1]).slice(2, b.lo[2], b.hi[2]);
}

/// Calls f(i, j) for each voxel of the box: i its index in a [.., ny, nx] grid, j in the box (C order).
template <typename F>
void for_each_in(const MaskBox& b, std::int64_t ny, std::int64_t nx, F&& f) {
  std::int64_t j = 0;
  for (std::int64_t z = b.lo[0]; z < b.hi[0]; ++z) {
    for (std::int64_t y = b.lo[1]; y < b.hi[1]; ++y) {
      for (std::int64_t i = (z * ny + y) * nx + b.lo[2], end = i + b.hi[2] - b.lo[2]; i < end; ++i) f(i, j++);
    }
  }
}

/// The label of the largest of `c`'s components (the first in scan order on a tie); it has some.
std::int32_t largest_label(const Components& c) {
  return static_cast<std::int32_t>(std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin() + 1);
}

}  // namespace

std::int64_t remove_small_components(at::Tensor& mask, std::int64_t min_voxels) {
  if (mask.dim() != 3 || !mask.is_cpu() || mask.scalar_type() != at::kByte || !mask.is_contiguous()) {
    throw InputError("remove_small_components",
                     fmt::format("a {} {} mask of shape {}{}; expected a contiguous uint8 [z, y, x] mask on the CPU",
                                 mask.device().str(), c10::toString(mask.scalar_type()), fmt::join(mask.sizes(), "x"),
                                 mask.is_contiguous() ? "" : " (not contiguous)"));
  }
  if (min_voxels <= 1) return 0;
  const MaskBox box = set_box(mask);
  if (box.empty()) return 0;
  const Components c = connected_components(box_of(mask, box).contiguous(), 26);
  const std::int32_t* label = c.labels.data_ptr<std::int32_t>();
  std::uint8_t* m = mask.data_ptr<std::uint8_t>();
  std::int64_t removed = 0;
  for_each_in(box, mask.size(1), mask.size(2), [&](std::int64_t i, std::int64_t j) {
    if (label[j] != 0 && c.sizes[static_cast<std::size_t>(label[j] - 1)] < min_voxels) {
      m[i] = 0;
      ++removed;
    }
  });
  return removed;
}

at::Tensor largest_component(const at::Tensor& mask) {
  if (mask.dim() == 3 && mask.is_cpu() && mask.scalar_type() == at::kByte) {
    const at::Tensor m = mask.contiguous();
    at::Tensor out = at::zeros_like(m);
    const MaskBox box = set_box(m);
    if (box.empty()) return out;
    const Components c = connected_components(box_of(m, box).contiguous(), 6);
    const std::int32_t biggest = largest_label(c), *label = c.labels.data_ptr<std::int32_t>();
    std::uint8_t* o = out.data_ptr<std::uint8_t>();
    for_each_in(box, m.size(1), m.size(2), [&](std::int64_t i, std::int64_t j) { o[i] = label[j] == biggest; });
    return out;
  }
  const Components c = connected_components(mask, 6);
  if (c.count() == 0) return at::zeros_like(mask, mask.options().dtype(at::kByte));
  return (c.labels == largest_label(c)).to(at::kByte);
}

}  // namespace vitruvian
