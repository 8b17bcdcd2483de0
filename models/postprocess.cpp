// The largest component of a class and hole filling, on core/components.h.
#include "models/postprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <array>
#include <numeric>
#include <type_traits>

#include "core/errors.h"
#include "core/kernels/dispatch.h"

namespace vitruvian::models {

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
