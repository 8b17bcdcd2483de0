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

namespace {

/// The box [lo, hi) holding every set voxel of a contiguous CPU uint8 [z, y, x] mask; empty when
/// none is set. Components never reach beyond it, so they are found on it alone: a mask's set
/// voxels are often a small part of its grid (a lesion, the brain in a scan of the head and neck).
struct SetBox {
  std::array<std::int64_t, 3> lo{}, hi{};
  bool empty() const { return hi[0] <= lo[0]; }
  at::Tensor of(const at::Tensor& t) const {
    return t.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]);
  }
  /// Calls f(i, j) for each voxel of the box: i its index in the mask, j in the box (C order).
  template <typename F>
  void for_each(std::int64_t ny, std::int64_t nx, F&& f) const {
    std::int64_t j = 0;
    for (std::int64_t z = lo[0]; z < hi[0]; ++z) {
      for (std::int64_t y = lo[1]; y < hi[1]; ++y) {
        for (std::int64_t i = (z * ny + y) * nx + lo[2], end = i + hi[2] - lo[2]; i < end; ++i) f(i, j++);
      }
    }
  }
};

SetBox set_box(const at::Tensor& mask) {
  const std::int64_t nz = mask.size(0), ny = mask.size(1), nx = mask.size(2);
  const std::uint8_t* m = mask.data_ptr<std::uint8_t>();
  SetBox b;
  b.lo = {nz, ny, nx};
  for (std::int64_t z = 0; z < nz; ++z) {
    for (std::int64_t y = 0; y < ny; ++y) {
      const std::uint8_t* row = m + (z * ny + y) * nx;
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

}  // namespace

std::int64_t remove_small_components(at::Tensor& mask, std::int64_t min_voxels) {
  if (mask.dim() != 3 || !mask.is_cpu() || mask.scalar_type() != at::kByte || !mask.is_contiguous()) {
    throw InputError("remove_small_components",
                     fmt::format("a {} {} mask of shape {}{}; expected a contiguous uint8 [z, y, x] mask on the CPU",
                                 mask.device().str(), c10::toString(mask.scalar_type()), fmt::join(mask.sizes(), "x"),
                                 mask.is_contiguous() ? "" : " (not contiguous)"));
  }
  if (min_voxels <= 1) return 0;
  const SetBox box = set_box(mask);
  if (box.empty()) return 0;
  const Components c = connected_components(box.of(mask).contiguous(), 26);
  const std::int32_t* label = c.labels.data_ptr<std::int32_t>();
  std::uint8_t* m = mask.data_ptr<std::uint8_t>();
  std::int64_t removed = 0;
  box.for_each(mask.size(1), mask.size(2), [&](std::int64_t i, std::int64_t j) {
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
    const SetBox box = set_box(m);
    if (box.empty()) return out;
    const Components c = connected_components(box.of(m).contiguous(), 6);
    const auto biggest =
        static_cast<std::int32_t>(std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin() + 1);
    const std::int32_t* label = c.labels.data_ptr<std::int32_t>();
    std::uint8_t* o = out.data_ptr<std::uint8_t>();
    box.for_each(m.size(1), m.size(2), [&](std::int64_t i, std::int64_t j) { o[i] = label[j] == biggest; });
    return out;
  }
  const Components c = connected_components(mask, 6);
  if (c.count() == 0) return at::zeros_like(mask, mask.options().dtype(at::kByte));
  const auto biggest = std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin();
  return (c.labels == static_cast<std::int32_t>(biggest + 1)).to(at::kByte);
}

}  // namespace vitruvian
