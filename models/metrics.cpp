// Dice from counts; surfaces and the Felzenszwalb–Huttenlocher distance transform for HD95.
#include "models/metrics.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_pair(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) {
    throw InputError("metrics", fmt::format("label maps of shapes {} and {}; expected the same", fmt::join(a.sizes(), "x"),
                                            fmt::join(b.sizes(), "x")));
  }
}

/// 1D squared distance transform of f (length n, spacing h), in place (lower envelope of parabolas).
void transform_line(double* f, std::int64_t n, double h, std::vector<double>& d, std::vector<std::int64_t>& v,
                    std::vector<double>& z) {
  const double h2 = h * h;
  std::int64_t k = -1;
  for (std::int64_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    while (k >= 0) {
      const double s = ((f[q] + h2 * q * q) - (f[v[k]] + h2 * v[k] * v[k])) / (2 * h2 * (q - v[k]));
      if (s > z[k]) {
        ++k;
        v[k] = q;
        z[k] = s;
        break;
      }
      --k;
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
    }
    z[k + 1] = kInf;
  }
  if (k < 0) return;  // no finite value on this line
  std::int64_t j = 0;
  for (std::int64_t q = 0; q < n; ++q) {
    while (z[j + 1] < q) ++j;
    const double dq = static_cast<double>(q - v[j]);
    d[q] = h2 * dq * dq + f[v[j]];
  }
  std::copy(d.begin(), d.begin() + n, f);
}

/// Voxels of `mask` with a face neighbour outside it (or on the grid's border).
at::Tensor surface(const at::Tensor& mask) {
  at::Tensor inner = mask.clone();
  for (int axis = 0; axis < 3; ++axis) {
    const std::int64_t n = mask.size(axis);
    if (n < 3) return mask.clone();
    at::Tensor shifted = at::zeros_like(mask);
    shifted.narrow(axis, 0, n - 1).copy_(mask.narrow(axis, 1, n - 1));
    inner = inner & shifted;
    shifted.zero_();
    shifted.narrow(axis, 1, n - 1).copy_(mask.narrow(axis, 0, n - 1));
    inner = inner & shifted;
  }
  return mask & ~inner;
}

double percentile95(at::Tensor values) {
  values = std::get<0>(values.sort());
  const std::int64_t n = values.numel();
  const double rank = 0.95 * static_cast<double>(n - 1);
  const auto lo = static_cast<std::int64_t>(std::floor(rank));
  const auto hi = std::min(lo + 1, n - 1);
  const double a = values[lo].item<double>(), b = values[hi].item<double>();
  return a + (b - a) * (rank - static_cast<double>(lo));
}

}  // namespace

at::Tensor dice_counts(const at::Tensor& prediction, const at::Tensor& truth, std::int64_t classes,
                       const std::vector<std::int64_t>* truth_classes) {
  check_pair(prediction, truth);
  // One pass over the maps as stored (uint8, or int32 for anything wider): no int64 copies.
  const auto narrow = [](const at::Tensor& x) { return x.scalar_type() == at::kByte ? x.contiguous() : x.to(at::kInt).contiguous(); };
  const at::Tensor p = narrow(prediction), t = narrow(truth);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(classes) * 3, 0);
  const auto count = [&](const auto* pp, const auto* tp) {
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      const auto a = static_cast<std::int64_t>(pp[i]);
      auto b = static_cast<std::int64_t>(tp[i]);
      if (truth_classes != nullptr) b = b >= 0 && b < static_cast<std::int64_t>(truth_classes->size()) ? (*truth_classes)[static_cast<std::size_t>(b)] : -1;
      const bool a_in = a > 0 && a < classes, b_in = b > 0 && b < classes;
      if (a_in) ++counts[static_cast<std::size_t>(a) * 3 + 1];
      if (b_in) ++counts[static_cast<std::size_t>(b) * 3 + 2];
      if (a_in && a == b) ++counts[static_cast<std::size_t>(a) * 3];
    }
  };
  const bool p8 = p.scalar_type() == at::kByte, t8 = t.scalar_type() == at::kByte;
  if (p8 && t8) count(p.data_ptr<std::uint8_t>(), t.data_ptr<std::uint8_t>());
  if (p8 && !t8) count(p.data_ptr<std::uint8_t>(), t.data_ptr<std::int32_t>());
  if (!p8 && t8) count(p.data_ptr<std::int32_t>(), t.data_ptr<std::uint8_t>());
  if (!p8 && !t8) count(p.data_ptr<std::int32_t>(), t.data_ptr<std::int32_t>());
  at::Tensor out = at::zeros({std::max<std::int64_t>(classes - 1, 0), 3}, at::kDouble);
  auto o = out.accessor<double, 2>();
  for (std::int64_t c = 1; c < classes; ++c) {
    for (int k = 0; k < 3; ++k) o[c - 1][k] = static_cast<double>(counts[static_cast<std::size_t>(c) * 3 + static_cast<std::size_t>(k)]);
  }
  return out;
}

std::vector<double> dice_from_counts(const at::Tensor& counts) {
  std::vector<double> dice;
  const at::Tensor c = counts.to(at::kDouble).contiguous();
  for (std::int64_t i = 0; i < c.size(0); ++i) {
    const double inter = c[i][0].item<double>(), denominator = c[i][1].item<double>() + c[i][2].item<double>();
    dice.push_back(denominator > 0 ? 2 * inter / denominator : std::numeric_limits<double>::quiet_NaN());
  }
  return dice;
}

at::Tensor distance_transform(const at::Tensor& mask, const std::array<double, 3>& spacing_zyx) {
  if (mask.dim() != 3) throw InputError("distance_transform", "expected a [z, y, x] mask");
  at::Tensor f = at::where(mask.to(at::kBool), at::zeros({}, at::kDouble), at::full({}, kInf, at::kDouble))
                     .expand(mask.sizes())
                     .contiguous();
  const std::int64_t sizes[3] = {f.size(0), f.size(1), f.size(2)};
  const std::int64_t longest = std::max({sizes[0], sizes[1], sizes[2]});
  std::vector<double> line(longest), d(longest), z(longest + 1);
  std::vector<std::int64_t> v(longest);
  double* data = f.data_ptr<double>();
  const std::int64_t strides[3] = {sizes[1] * sizes[2], sizes[2], 1};
  for (int axis = 2; axis >= 0; --axis) {
    const std::int64_t n = sizes[axis], stride = strides[axis];
    const std::int64_t lines = f.numel() / n;
    const int a = (axis + 1) % 3, b = (axis + 2) % 3;
    for (std::int64_t l = 0; l < lines; ++l) {
      const std::int64_t ia = l / sizes[b], ib = l % sizes[b];
      double* start = data + ia * strides[a] + ib * strides[b];
      for (std::int64_t q = 0; q < n; ++q) line[q] = start[q * stride];
      transform_line(line.data(), n, spacing_zyx[axis], d, v, z);
      for (std::int64_t q = 0; q < n; ++q) start[q * stride] = line[q];
    }
  }
  return f.sqrt_();
}

std::vector<double> hausdorff95(const at::Tensor& prediction, const at::Tensor& truth, std::int64_t classes,
                                const std::array<double, 3>& spacing_zyx) {
  check_pair(prediction, truth);
  std::vector<double> out;
  for (std::int64_t c = 1; c < classes; ++c) {
    const at::Tensor a = prediction == c, b = truth == c;
    if (!a.any().item<bool>() || !b.any().item<bool>()) {
      out.push_back(std::numeric_limits<double>::quiet_NaN());
      continue;
    }
    const at::Tensor sa = surface(a), sb = surface(b);
    const double ab = percentile95(distance_transform(sb, spacing_zyx).index({sa}));
    const double ba = percentile95(distance_transform(sa, spacing_zyx).index({sb}));
    out.push_back(std::max(ab, ba));
  }
  return out;
}

}  // namespace vitruvian::models
