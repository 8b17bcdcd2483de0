// Connected components by union-find over provisional labels (one scan, then a relabelling scan
// that numbers components in order of their first voxel, so results do not depend on threads).
#include "models/postprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <array>
#include <numeric>
#include <type_traits>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

std::int32_t find(std::vector<std::int32_t>& parent, std::int32_t x) {
  while (parent[static_cast<std::size_t>(x)] != x) {
    parent[static_cast<std::size_t>(x)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(x)])];
    x = parent[static_cast<std::size_t>(x)];
  }
  return x;
}

void unite(std::vector<std::int32_t>& parent, std::int32_t a, std::int32_t b) {
  a = find(parent, a);
  b = find(parent, b);
  if (a == b) return;
  if (a < b) {
    parent[static_cast<std::size_t>(b)] = a;
  } else {
    parent[static_cast<std::size_t>(a)] = b;
  }
}

/// The neighbours scanned before a voxel (negative offsets in z-y-x order) for a connectivity.
std::vector<std::array<int, 3>> backward_neighbours(int connectivity) {
  std::vector<std::array<int, 3>> out;
  for (int dz = -1; dz <= 0; ++dz) {
    for (int dy = -1; dy <= 1; ++dy) {
      for (int dx = -1; dx <= 1; ++dx) {
        if (dz == 0 && (dy > 0 || (dy == 0 && dx >= 0))) continue;  // not yet scanned, or the voxel itself
        const int order = std::abs(dz) + std::abs(dy) + std::abs(dx);
        if ((connectivity == 6 && order > 1) || (connectivity == 18 && order > 2)) continue;
        out.push_back({dz, dy, dx});
      }
    }
  }
  return out;
}

}  // namespace

Components connected_components(const at::Tensor& mask, int connectivity) {
  if (mask.dim() != 3) {
    throw InputError("connected components", fmt::format("mask of shape {}; expected [z, y, x]", fmt::join(mask.sizes(), "x")));
  }
  if (connectivity != 6 && connectivity != 18 && connectivity != 26) {
    throw InputError("connected components", fmt::format("connectivity {}; expected 6, 18 or 26", connectivity));
  }
  const at::Tensor fg = (mask != 0).to(at::kByte).contiguous();
  const std::int64_t nz = fg.size(0), ny = fg.size(1), nx = fg.size(2);
  const std::uint8_t* in = fg.data_ptr<std::uint8_t>();
  at::Tensor labels = at::zeros({nz, ny, nx}, at::kInt);
  std::int32_t* out = labels.data_ptr<std::int32_t>();
  const auto neighbours = backward_neighbours(connectivity);
  std::vector<std::int32_t> parent{0};
  for (std::int64_t z = 0; z < nz; ++z) {
    for (std::int64_t y = 0; y < ny; ++y) {
      const std::int64_t row = (z * ny + y) * nx;
      for (std::int64_t x = 0; x < nx; ++x) {
        if (in[row + x] == 0) continue;
        std::int32_t label = 0;
        for (const auto& d : neighbours) {
          const std::int64_t zz = z + d[0], yy = y + d[1], xx = x + d[2];
          if (zz < 0 || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
          const std::int32_t other = out[(zz * ny + yy) * nx + xx];
          if (other == 0) continue;
          if (label == 0) {
            label = other;
          } else if (other != label) {
            unite(parent, label, other);
          }
        }
        if (label == 0) {
          label = static_cast<std::int32_t>(parent.size());
          parent.push_back(label);
        }
        out[row + x] = label;
      }
    }
  }
  // Final numbers in order of each component's first voxel.
  std::vector<std::int32_t> final_of(parent.size(), 0);
  Components result;
  const std::int64_t n = fg.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    if (out[i] == 0) continue;
    const std::int32_t root = find(parent, out[i]);
    std::int32_t& f = final_of[static_cast<std::size_t>(root)];
    if (f == 0) {
      result.sizes.push_back(0);
      f = static_cast<std::int32_t>(result.sizes.size());
    }
    out[i] = f;
    ++result.sizes[static_cast<std::size_t>(f - 1)];
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
