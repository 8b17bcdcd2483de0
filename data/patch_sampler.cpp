// Patch sampling: foreground voxel lists per class, origin choice, padded window copies, and the
// choice of forced draws per batch.
#include "data/patch_sampler.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/errors.h"
#include "data/random.h"

namespace vitruvian::data {
namespace {

constexpr const char* kWhere = "PatchSampler";

void check_fraction(const char* where, double fraction) {
  if (!(fraction >= 0.0 && fraction <= 1.0)) {
    throw InputError(where, fmt::format("foreground fraction {} is not in [0, 1]", fraction));
  }
}

void check_options(const PatchSamplerOptions& options) {
  const auto& size = options.patch_size();
  if (size[0] < 1 || size[1] < 1 || size[2] < 1) {
    throw InputError(kWhere, fmt::format("patch size [{}, {}, {}] has a size < 1", size[0], size[1], size[2]));
  }
  check_fraction(kWhere, options.foreground_fraction());
  if (!std::isfinite(options.image_pad_value())) {
    throw InputError(kWhere, fmt::format("image pad value {} is not finite", options.image_pad_value()));
  }
}

std::string shape_text(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

// Valid origins along one axis: [min(0, D - P), max(0, D - P)].
std::int64_t lowest_origin(std::int64_t volume, std::int64_t patch) { return std::min<std::int64_t>(0, volume - patch); }
std::int64_t highest_origin(std::int64_t volume, std::int64_t patch) { return std::max<std::int64_t>(0, volume - patch); }

}  // namespace

PatchSampler::PatchSampler(at::Tensor image, at::Tensor label, PatchSamplerOptions options)
    : options_(std::move(options)) {
  check_options(options_);
  if (!image.defined() || image.dim() != 4 || image.scalar_type() != at::kFloat || !image.device().is_cpu()) {
    throw InputError(kWhere, image.defined() ? fmt::format("image is {} {} on {}; expected a [C, z, y, x] float32 CPU "
                                                           "tensor",
                                                           c10::toString(image.scalar_type()), shape_text(image),
                                                           image.device().str())
                                             : "image is undefined");
  }
  if (!label.defined() || label.dim() != 3 || !label.device().is_cpu() ||
      (label.scalar_type() != at::kByte && label.scalar_type() != at::kInt && label.scalar_type() != at::kLong)) {
    throw InputError(kWhere, label.defined() ? fmt::format("label is {} {} on {}; expected a [z, y, x] uint8, int32 or "
                                                           "int64 CPU tensor",
                                                           c10::toString(label.scalar_type()), shape_text(label),
                                                           label.device().str())
                                             : "label is undefined");
  }
  if (image.size(0) < 1 || image.sizes().slice(1) != label.sizes() || label.numel() == 0) {
    throw InputError(kWhere, fmt::format("image {} and label {} do not fit: expected [C >= 1, z, y, x] and [z, y, x] "
                                         "with the same non-empty z, y, x",
                                         shape_text(image), shape_text(label)));
  }
  image_ = image.contiguous();
  label_ = label.contiguous();
  shape_ = {label_.size(0), label_.size(1), label_.size(2)};

  // Foreground voxels grouped by class: flat indices sorted by (class, index).
  const at::Tensor flat = label_.reshape({-1}).to(at::kLong);
  const at::Tensor where = at::nonzero(flat > 0).reshape({-1});
  if (where.numel() > 0) {
    auto [values, order] = at::sort(flat.index_select(0, where), /*stable=*/true, /*dim=*/0, /*descending=*/false);
    const at::Tensor grouped = where.index_select(0, order);
    auto [unique, inverse, counts] = at::unique_consecutive(values, /*return_inverse=*/false, /*return_counts=*/true);
    (void)inverse;
    const auto* unique_ptr = unique.data_ptr<std::int64_t>();
    const auto* count_ptr = counts.data_ptr<std::int64_t>();
    std::int64_t start = 0;
    for (std::int64_t i = 0; i < unique.numel(); ++i) {
      classes_.push_back(unique_ptr[i]);
      class_voxels_.push_back(grouped.slice(0, start, start + count_ptr[i]).clone());
      start += count_ptr[i];
    }
  }
}

std::int64_t PatchSampler::class_voxels(std::int64_t label_value) const {
  const auto it = std::lower_bound(classes_.begin(), classes_.end(), label_value);
  if (it == classes_.end() || *it != label_value) return 0;
  return class_voxels_[static_cast<std::size_t>(it - classes_.begin())].numel();
}

std::array<std::int64_t, 3> random_patch_origin(std::mt19937_64& rng, const std::array<std::int64_t, 3>& volume,
                                                const std::array<std::int64_t, 3>& patch) {
  std::array<std::int64_t, 3> origin{};
  for (std::size_t a = 0; a < 3; ++a) {
    origin[a] = uniform_between(rng, lowest_origin(volume[a], patch[a]), highest_origin(volume[a], patch[a]));
  }
  return origin;
}

std::array<std::int64_t, 3> patch_origin_containing(std::mt19937_64& rng, const std::array<std::int64_t, 3>& volume,
                                                    const std::array<std::int64_t, 3>& patch,
                                                    const std::array<std::int64_t, 3>& voxel) {
  // Origins that keep the voxel inside the patch, among the valid ones; never empty since
  // 0 <= voxel < D (see the header's valid range).
  std::array<std::int64_t, 3> origin{};
  for (std::size_t a = 0; a < 3; ++a) {
    const std::int64_t low = std::max(voxel[a] - patch[a] + 1, lowest_origin(volume[a], patch[a]));
    const std::int64_t high = std::min(voxel[a], highest_origin(volume[a], patch[a]));
    origin[a] = uniform_between(rng, low, high);
  }
  return origin;
}

Patch PatchSampler::sample(std::mt19937_64& rng, bool force_foreground) const {
  if (!force_foreground || classes_.empty()) return extract(random_patch_origin(rng, shape_, options_.patch_size()));

  const auto pick = static_cast<std::size_t>(uniform_below(rng, classes_.size()));
  const at::Tensor& voxels = class_voxels_[pick];
  std::int64_t flat = voxels.data_ptr<std::int64_t>()[uniform_below(rng, static_cast<std::uint64_t>(voxels.numel()))];
  std::array<std::int64_t, 3> voxel{};
  for (std::size_t a = 3; a-- > 0;) {
    voxel[a] = flat % shape_[a];
    flat /= shape_[a];
  }
  Patch patch = extract(patch_origin_containing(rng, shape_, options_.patch_size(), voxel));
  patch.forced_class = classes_[pick];
  return patch;
}

Patch PatchSampler::sample(std::mt19937_64& rng) const {
  return sample(rng, force_draw(rng, options_.foreground_fraction()));
}

std::optional<PatchOverlap> patch_overlap(const std::array<std::int64_t, 3>& volume,
                                          const std::array<std::int64_t, 3>& patch,
                                          const std::array<std::int64_t, 3>& origin) {
  PatchOverlap overlap;
  for (std::size_t a = 0; a < 3; ++a) {
    const std::int64_t begin = std::max<std::int64_t>(origin[a], 0);
    const std::int64_t end = std::min<std::int64_t>(origin[a] + patch[a], volume[a]);
    if (begin >= end) return std::nullopt;
    overlap.volume_start[a] = begin;
    overlap.size[a] = end - begin;
    overlap.patch_start[a] = begin - origin[a];
  }
  return overlap;
}

at::Tensor box_view(const at::Tensor& t, const std::array<std::int64_t, 3>& start, const std::array<std::int64_t, 3>& size) {
  at::Tensor view = t;
  for (std::size_t a = 0; a < 3; ++a) view = view.narrow(t.dim() - 3 + static_cast<std::int64_t>(a), start[a], size[a]);
  return view;
}

Patch PatchSampler::extract(const std::array<std::int64_t, 3>& origin) const {
  const auto& size = options_.patch_size();
  Patch patch;
  patch.origin = origin;
  patch.image = at::full({image_.size(0), size[0], size[1], size[2]}, options_.image_pad_value(), at::kFloat);
  patch.label = at::full({size[0], size[1], size[2]}, options_.label_pad_value(), at::kLong);
  const auto overlap = patch_overlap(shape_, size, origin);
  if (!overlap) return patch;  // entirely outside: all padding
  box_view(patch.image, overlap->patch_start, overlap->size).copy_(box_view(image_, overlap->volume_start, overlap->size));
  box_view(patch.label, overlap->patch_start, overlap->size).copy_(box_view(label_, overlap->volume_start, overlap->size));
  return patch;
}

std::vector<bool> forced_in_batch(std::mt19937_64& rng, std::int64_t batch_size, double fraction,
                                  BatchRounding rounding) {
  constexpr const char* where = "forced_in_batch";
  if (batch_size < 1) throw InputError(where, fmt::format("batch size {} is not positive", batch_size));
  check_fraction(where, fraction);
  const double wanted = static_cast<double>(batch_size) * fraction;
  auto count = static_cast<std::int64_t>(std::floor(wanted));
  if (rounding == BatchRounding::kNearest) {
    count = static_cast<std::int64_t>(std::llround(wanted));
  } else if (uniform01(rng) < wanted - std::floor(wanted)) {
    ++count;
  }
  count = std::clamp<std::int64_t>(count, 0, batch_size);
  // `count` forced positions chosen uniformly: a partial Fisher-Yates shuffle.
  std::vector<std::int64_t> positions(static_cast<std::size_t>(batch_size));
  std::iota(positions.begin(), positions.end(), std::int64_t{0});
  std::vector<bool> forced(static_cast<std::size_t>(batch_size), false);
  for (std::int64_t i = 0; i < count; ++i) {
    const auto j = static_cast<std::size_t>(uniform_between(rng, i, batch_size - 1));
    std::swap(positions[static_cast<std::size_t>(i)], positions[j]);
    forced[static_cast<std::size_t>(positions[static_cast<std::size_t>(i)])] = true;
  }
  return forced;
}

bool force_draw(std::mt19937_64& rng, double fraction) {
  check_fraction("force_draw", fraction);
  return uniform01(rng) < fraction;
}

}  // namespace vitruvian::data
