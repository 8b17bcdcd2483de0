// Connected components through the connected-components kernel, numbered in order of each
// component's first voxel (so results do not depend on threads or devices); largest component
// and hole filling on top.
#include "models/postprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <array>
#include <numeric>
#include <type_traits>

#include "core/errors.h"
#include "core/kernels/dispatch.h"

namespace vitruvian::models {

Components connected_components(const at::Tensor& mask, int connectivity) {
  if (mask.dim() != 3) {
    throw InputError("connected components", fmt::format("mask of shape {}; expected [z, y, x]", fmt::join(mask.sizes(), "x")));
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

/// Calls body(voxel, value) for every voxel of a uint8 or int32 label map, through a pointer
/// (no widened copy of the volume).
template <typename Body>
void for_labels(at::Tensor& labels, Body body) {
  TORCH_CHECK(labels.is_contiguous() && (labels.scalar_type() == at::kByte || labels.scalar_type() == at::kInt),
              "postprocessing expects a contiguous uint8 or int32 label map");
  if (labels.scalar_type() == at::kByte) {
    std::uint8_t* v = labels.data_ptr<std::uint8_t>();
    for (std::int64_t i = 0; i < labels.numel(); ++i) body(i, v[i]);
  } else {
    std::int32_t* v = labels.data_ptr<std::int32_t>();
    for (std::int64_t i = 0; i < labels.numel(); ++i) body(i, v[i]);
  }
}

}  // namespace

std::int64_t keep_largest_component(at::Tensor& labels, std::int64_t cls) {
  const Components c = connected_components(labels == cls, 26);
  if (c.count() <= 1) return 0;
  const auto largest = static_cast<std::int32_t>(std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin() + 1);
  const std::int32_t* component = c.labels.data_ptr<std::int32_t>();
  std::int64_t removed = 0;
  for_labels(labels, [&](std::int64_t i, auto& value) {
    if (component[i] != 0 && component[i] != largest) {
      value = 0;
      ++removed;
    }
  });
  return removed;
}

std::int64_t fill_holes(at::Tensor& labels, std::int64_t cls) {
  const Components c = connected_components(labels != cls, 6);
  if (c.count() == 0) return 0;
  // Components reaching a face of the volume are outside.
  std::vector<bool> outside(static_cast<std::size_t>(c.count()) + 1, false);
  for (int axis = 0; axis < 3; ++axis) {
    for (const std::int64_t index : {std::int64_t{0}, labels.size(axis) - 1}) {
      const at::Tensor face = c.labels.select(axis, index).contiguous();
      const auto* ids = face.data_ptr<std::int32_t>();
      for (std::int64_t i = 0; i < face.numel(); ++i) outside[static_cast<std::size_t>(ids[i])] = true;
    }
  }
  if (std::all_of(outside.begin() + 1, outside.end(), [](bool o) { return o; })) return 0;
  const std::int32_t* component = c.labels.data_ptr<std::int32_t>();
  std::int64_t filled = 0;
  for_labels(labels, [&](std::int64_t i, auto& value) {
    if (value == 0 && component[i] != 0 && !outside[static_cast<std::size_t>(component[i])]) {
      value = static_cast<std::remove_reference_t<decltype(value)>>(cls);
      ++filled;
    }
  });
  return filled;
}

}  // namespace vitruvian::models
