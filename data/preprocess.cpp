// Preprocessing: resampling through a composed index affine (the resampling kernel, exact in
// double for any direction), intensity statistics and normalisation, crop to the body.
#include "data/preprocess.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/errors.h"
#include "core/huge_page_allocator.h"
#include "core/kernels/dispatch.h"
#include "data/tensor_helpers.h"

namespace vitruvian::data {
namespace {

using detail::check_cpu_tensor;
using detail::shape_text;

using Mat3 = std::array<double, 9>;  // row-major

/// Source continuous index (x, y, z) = a * (i, j, k) + t for output voxel (i, j, k).
using kernels::IndexMap;

/// direction * diag(spacing): index offsets → LPS mm.
Mat3 grid_matrix(const Geometry& g) {
  Mat3 m{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m[r * 3 + c] = g.direction[r * 3 + c] * g.spacing[c];
  }
  return m;
}

Mat3 multiply(const Mat3& x, const Mat3& y) {
  Mat3 m{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) m[r * 3 + c] += x[r * 3 + k] * y[k * 3 + c];
    }
  }
  return m;
}

std::array<double, 3> mat_vec(const Mat3& m, const std::array<double, 3>& v) {
  std::array<double, 3> out{};
  for (int r = 0; r < 3; ++r) out[r] = m[r * 3] * v[0] + m[r * 3 + 1] * v[1] + m[r * 3 + 2] * v[2];
  return out;
}

Mat3 inverse(const Mat3& m) {
  const double det =
      m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
  // Validated geometries are orthonormal with positive spacing, so det is far from zero.
  VITRUVIAN_INTERNAL_ASSERT(std::abs(det) > 0.0 && std::isfinite(det), "singular grid matrix");
  const double s = 1.0 / det;
  return {(m[4] * m[8] - m[5] * m[7]) * s, (m[2] * m[7] - m[1] * m[8]) * s, (m[1] * m[5] - m[2] * m[4]) * s,
          (m[5] * m[6] - m[3] * m[8]) * s, (m[0] * m[8] - m[2] * m[6]) * s, (m[2] * m[3] - m[0] * m[5]) * s,
          (m[3] * m[7] - m[4] * m[6]) * s, (m[1] * m[6] - m[0] * m[7]) * s, (m[0] * m[4] - m[1] * m[3]) * s};
}

/// Reference index → LPS → source continuous index.
IndexMap compose(const Geometry& source, const Geometry& reference) {
  const Mat3 to_source = inverse(grid_matrix(source));
  IndexMap map;
  const Mat3 a = multiply(to_source, grid_matrix(reference));
  const std::array<double, 3> t = mat_vec(
      to_source, {reference.origin[0] - source.origin[0], reference.origin[1] - source.origin[1], reference.origin[2] - source.origin[2]});
  std::copy(a.begin(), a.end(), map.a);
  std::copy(t.begin(), t.end(), map.t);
  return map;
}

/// Throws unless `fill` is a whole number the integer voxel type holds.
void check_fill(double fill, VoxelType type, const char* where) {
  double low = 0.0, high = 0.0;
  switch (type) {
    case VoxelType::kFloat32:
    case VoxelType::kFloat64:
      return;
    case VoxelType::kUInt8:
      high = 255;
      break;
    case VoxelType::kInt16:
      low = -32768, high = 32767;
      break;
    case VoxelType::kUInt16:
      high = 65535;
      break;
    case VoxelType::kInt32:
      low = std::numeric_limits<std::int32_t>::min(), high = std::numeric_limits<std::int32_t>::max();
      break;
  }
  if (!(fill >= low && fill <= high) || std::floor(fill) != fill) {
    throw InputError(where, fmt::format("fill value {} is not a whole number in [{}, {}], the range of the {} "
                                        "volume resampled with nearest-neighbour interpolation",
                                        fill, low, high, voxel_type_name(type)));
  }
}

Volume resample_with(const Volume& source, const Geometry& geometry, std::array<std::int64_t, 3> shape_zyx,
                     const IndexMap& map, Interpolation interpolation, bool fill_outside, double fill) {
  const bool linear = interpolation == Interpolation::kLinear;
  std::vector<std::int64_t> out_shape{shape_zyx[0], shape_zyx[1], shape_zyx[2]};
  if (source.voxels.dim() == 4) out_shape.insert(out_shape.begin(), source.voxels.size(0));

  Volume out;
  out.type = linear ? VoxelType::kFloat32 : source.type;
  out.voxels = at::empty(out_shape, source.voxels.options().dtype(tensor_dtype(out.type)));
  out.geometry = geometry;
  out.frame_times_s = source.frame_times_s;
  out.modality = source.modality;

  const kernels::Resampling how{linear, fill_outside, fill};
  if (source.voxels.dim() == 3) {
    kernels::resample(source.voxels, out.voxels, map, how);
  } else {
    for (std::int64_t t = 0; t < source.frames(); ++t) kernels::resample(source.voxels[t], out.voxels[t], map, how);
  }
  return out;
}

double percentile(const std::vector<double>& sorted, double q) {
  const double h = (static_cast<double>(sorted.size()) - 1.0) * q / 100.0;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

Volume resample_to_spacing(const Volume& volume, std::array<double, 3> spacing_xyz, Interpolation interpolation) {
  constexpr const char* kWhere = "resample_to_spacing";
  volume.validate(kWhere);
  const auto in_zyx = volume.shape_zyx();
  Geometry geometry = volume.geometry;
  std::array<std::int64_t, 3> out_zyx{};
  IndexMap map;
  std::array<double, 3> shift_mm{};  // along the index axes
  for (int c = 0; c < 3; ++c) {
    const double target = spacing_xyz[c];
    if (!(target > 0.0) || !std::isfinite(target)) {
      throw InputError(kWhere,
                       fmt::format("target spacing {} mm along axis {} is not a positive finite number", target, c));
    }
    const auto n = in_zyx[2 - c];
    const double old_spacing = volume.geometry.spacing[c];
    const double voxels = static_cast<double>(n) * old_spacing / target;
    if (voxels > 1e7) {
      throw InputError(
          kWhere, fmt::format("target spacing {} mm along axis {} would make {:.3g} voxels from {} at {} mm", target, c,
                              voxels, n, old_spacing));
    }
    const std::int64_t m = std::max<std::int64_t>(1, std::llround(voxels));
    out_zyx[2 - c] = m;
    // Centres the new grid on the old one: first new centre at this offset from the first old one.
    shift_mm[c] = (static_cast<double>(n - 1) * old_spacing - static_cast<double>(m - 1) * target) / 2.0;
    map.a[c * 3 + c] = target / old_spacing;
    map.t[c] = shift_mm[c] / old_spacing;
    geometry.spacing[c] = target;
  }
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) geometry.origin[r] += volume.geometry.direction[r * 3 + c] * shift_mm[c];
  }
  return resample_with(volume, geometry, out_zyx, map, interpolation, /*fill_outside=*/false, 0.0);
}

Volume resample_onto(const Volume& source, const Geometry& reference, std::array<std::int64_t, 3> shape_zyx,
                     Interpolation interpolation, double fill) {
  constexpr const char* kWhere = "resample_onto";
  source.validate(kWhere);
  reference.validate(std::string(kWhere) + " (reference geometry)");
  for (int d = 0; d < 3; ++d) {
    if (shape_zyx[d] < 1) {
      throw InputError(kWhere, fmt::format("reference shape [{}, {}, {}] (z, y, x) has an empty axis", shape_zyx[0],
                                           shape_zyx[1], shape_zyx[2]));
    }
  }
  if (interpolation == Interpolation::kNearest) check_fill(fill, source.type, kWhere);
  return resample_with(source, reference, shape_zyx, compose(source.geometry, reference), interpolation,
                       /*fill_outside=*/true, fill);
}

std::vector<double> sample_foreground_intensities(const at::Tensor& image, const at::Tensor& mask,
                                                  std::int64_t max_samples, std::mt19937_64& rng) {
  constexpr const char* kWhere = "sample_foreground_intensities";
  check_cpu_tensor(image, kWhere, "the image");
  check_cpu_tensor(mask, kWhere, "the mask");
  if (image.sizes() != mask.sizes()) {
    throw InputError(kWhere,
                     fmt::format("image of shape {} and mask of shape {} differ", shape_text(image), shape_text(mask)));
  }
  if (max_samples < 1) throw InputError(kWhere, fmt::format("max_samples {} must be at least 1", max_samples));
  const at::Tensor values = image.to(at::kDouble).contiguous();
  const at::Tensor foreground = mask.ne(0).contiguous();
  const double* v = values.data_ptr<double>();
  const bool* f = foreground.data_ptr<bool>();
  std::vector<double> out;
  for (std::int64_t i = 0, count = values.numel(); i < count; ++i) {
    if (f[i]) out.push_back(v[i]);
  }
  if (static_cast<std::int64_t>(out.size()) > max_samples) {  // partial Fisher-Yates: a uniform subset
    for (std::size_t i = 0; i < static_cast<std::size_t>(max_samples); ++i) {
      std::uniform_int_distribution<std::size_t> pick(i, out.size() - 1);
      std::swap(out[i], out[pick(rng)]);
    }
    out.resize(static_cast<std::size_t>(max_samples));
  }
  return out;
}

IntensityStats intensity_stats(std::vector<double> values) {
  constexpr const char* kWhere = "intensity_stats";
  if (values.empty()) throw InputError(kWhere, "no intensities to compute statistics from (empty foreground?)");
  double sum = 0.0;
  for (double x : values) {
    if (!std::isfinite(x)) throw InputError(kWhere, fmt::format("intensity {} is not finite", x));
    sum += x;
  }
  IntensityStats stats;
  stats.count = static_cast<std::int64_t>(values.size());
  stats.mean = sum / static_cast<double>(values.size());
  double squares = 0.0;
  for (double x : values) squares += (x - stats.mean) * (x - stats.mean);
  stats.std = std::sqrt(squares / static_cast<double>(values.size()));
  std::sort(values.begin(), values.end());
  stats.lower = percentile(values, 0.5);
  stats.upper = percentile(values, 99.5);
  return stats;
}

IntensityStats foreground_intensity_stats(const at::Tensor& image, const at::Tensor& label_or_mask,
                                          std::int64_t max_samples, std::mt19937_64& rng) {
  std::vector<double> samples = sample_foreground_intensities(image, label_or_mask, max_samples, rng);
  if (samples.empty()) throw InputError("foreground_intensity_stats", "the label or mask has no foreground voxel");
  return intensity_stats(std::move(samples));
}

IntensityStats merge(const std::vector<IntensityStats>& parts) {
  constexpr const char* kWhere = "merge (intensity stats)";
  std::int64_t total = 0;
  for (const auto& p : parts) {
    if (p.count < 0) throw InputError(kWhere, fmt::format("a part has count {}", p.count));
    total += p.count;
  }
  if (total <= 0) throw InputError(kWhere, fmt::format("{} parts with no intensities in all", parts.size()));
  IntensityStats out;
  out.count = total;
  const double n = static_cast<double>(total);
  out.mean = out.lower = out.upper = 0.0;
  for (const auto& p : parts) {
    const double w = static_cast<double>(p.count) / n;
    out.mean += w * p.mean;
    out.lower += w * p.lower;
    out.upper += w * p.upper;
  }
  double variance = 0.0;
  for (const auto& p : parts) {
    variance += static_cast<double>(p.count) / n * (p.std * p.std + (p.mean - out.mean) * (p.mean - out.mean));
  }
  out.std = std::sqrt(variance);
  return out;
}

at::Tensor normalize_ct(const at::Tensor& image, const IntensityStats& stats) {
  constexpr const char* kWhere = "normalize_ct";
  check_cpu_tensor(image, kWhere, "the image");
  if (!std::isfinite(stats.mean) || !std::isfinite(stats.std) || !std::isfinite(stats.lower) ||
      !std::isfinite(stats.upper) || stats.std < 0.0 || stats.lower > stats.upper) {
    throw InputError(kWhere, fmt::format("invalid statistics: mean {}, std {}, lower {}, upper {}; expected finite "
                                         "values, std >= 0 and lower <= upper",
                                         stats.mean, stats.std, stats.lower, stats.upper));
  }
  return kernels::normalize(image, {stats.lower, stats.upper, stats.mean, std::max(stats.std, kMinNormalizationStd)});
}

at::Tensor normalize_zscore(const at::Tensor& image, const at::Tensor* mask) {
  constexpr const char* kWhere = "normalize_zscore";
  check_cpu_tensor(image, kWhere, "the image");
  at::Tensor values = image.to(at::kDouble);
  if (mask != nullptr) {
    check_cpu_tensor(*mask, kWhere, "the mask");
    if (mask->sizes() != image.sizes()) {
      throw InputError(
          kWhere, fmt::format("image of shape {} and mask of shape {} differ", shape_text(image), shape_text(*mask)));
    }
    values = values.masked_select(mask->ne(0));
  }
  if (values.numel() == 0) throw InputError(kWhere, "no voxel to compute the mean and std from (empty mask or image)");
  const auto [std_dev, mean] = at::std_mean(values, /*unbiased=*/false);
  const double s = std::max(std_dev.item<double>(), kMinNormalizationStd);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return kernels::normalize(image, {-kInf, kInf, mean.item<double>(), s});
}

double body_threshold(const Volume& reference) {
  if (reference.modality == "CT") return kCtBodyThreshold;
  // A tenth of the way from the lowest value to the bright end (the 99th percentile of at most
  // a million voxels taken evenly): above MR's Rician background, below the tissues round the body.
  const at::Tensor all = reference.voxels.flatten();
  const std::int64_t step = std::max<std::int64_t>(1, all.numel() / 1000000);
  const at::Tensor sample = all.slice(0, 0, all.numel(), step).to(at::kFloat);
  const auto k = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(0.99 * static_cast<double>(sample.numel()))));
  const double low = sample.min().item<double>();
  const double high = std::get<0>(sample.kthvalue(k)).item<double>();
  return low + 0.1 * (high - low);
}

at::Tensor box_view(const at::Tensor& tensor, const Box& box) {
  at::Tensor view = tensor;
  const auto first = view.dim() - 3;
  for (int d = 0; d < 3; ++d) view = view.narrow(first + d, box.start_zyx[d], box.size_zyx[d]);
  return view;
}

Volume crop(const Volume& volume, const Box& box) {
  constexpr const char* kWhere = "crop";
  volume.validate(kWhere);
  const auto shape = volume.shape_zyx();
  for (int d = 0; d < 3; ++d) {
    if (box.size_zyx[d] < 1 || box.start_zyx[d] < 0 || box.start_zyx[d] + box.size_zyx[d] > shape[d]) {
      throw InputError(
          kWhere, fmt::format("box start [{}] size [{}] (z, y, x) is empty or leaves the volume of "
                              "shape [{}]",
                              fmt::join(box.start_zyx, ", "), fmt::join(box.size_zyx, ", "), fmt::join(shape, ", ")));
    }
  }
  Volume out = volume;
  out.voxels = box_view(volume.voxels, box).clone(at::MemoryFormat::Contiguous);
  out.geometry = box_geometry(volume.geometry, box.start_zyx);
  return out;
}

void check_part_fits(const std::array<std::int64_t, 3>& part, const Box& box, const std::array<std::int64_t, 3>& shape,
                     const std::string& where) {
  for (int d = 0; d < 3; ++d) {
    if (part[d] != box.size_zyx[d] || box.start_zyx[d] < 0 || box.start_zyx[d] + box.size_zyx[d] > shape[d]) {
      throw InternalError(where, fmt::format("a part of shape [{}] does not fit box start [{}] size [{}] in [{}]",
                                             fmt::join(part, ", "), fmt::join(box.start_zyx, ", "),
                                             fmt::join(box.size_zyx, ", "), fmt::join(shape, ", ")));
    }
  }
}

Volume uncrop(const Volume& part, const Volume& reference, const Box& box) {
  const auto shape = reference.shape_zyx();
  check_part_fits(part.shape_zyx(), box, shape, "uncrop");
  Volume out;
  out.type = part.type;
  out.modality = part.modality;
  out.geometry = reference.geometry;
  // Zero pages outside the box: only what the part is copied into is ever allocated.
  out.voxels = part.voxels.is_cpu() ? lazily_zeroed({shape[0], shape[1], shape[2]}, part.voxels.scalar_type())
                                    : at::zeros({shape[0], shape[1], shape[2]}, part.voxels.options());
  box_view(out.voxels, box).copy_(part.voxels);
  return out;
}

}  // namespace vitruvian::data
