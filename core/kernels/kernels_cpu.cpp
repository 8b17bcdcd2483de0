// The CPU implementations: plain loops, the references the CUDA kernels are tested against and
// the path CPU builds run. Only resampling uses more than one thread (at::parallel_for over
// slices); the rest stream through memory once.
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <limits>
#include <vector>

#include "core/errors.h"
#include "core/kernels/exp_nonpositive.h"
#include "core/kernels/kernels.h"
#include "core/kernels/scalar_dispatch.h"
#include "core/union_find.h"

namespace vitruvian::kernels {

const char* scalar_name(Scalar s) {
  switch (s) {
    case Scalar::kUInt8: return "uint8";
    case Scalar::kInt16: return "int16";
    case Scalar::kUInt16: return "uint16";
    case Scalar::kInt32: return "int32";
    case Scalar::kFloat32: return "float32";
    case Scalar::kFloat64: return "float64";
    case Scalar::kFloat16: return "float16";
  }
  return "?";
}

namespace detail {

void check_windows(const WindowBatch& batch, const Accumulator& acc) {
  if (batch.classes != acc.classes) {
    throw InputError("accumulate_windows", fmt::format("{} classes of logits for an accumulator of {}", batch.classes, acc.classes));
  }
  for (std::int64_t b = 0; b < batch.windows; ++b) {
    const std::int64_t* o = batch.origins + 3 * b;
    if (o[0] < 0 || o[1] < 0 || o[2] < 0 || o[0] + batch.wz > acc.grid.nz || o[1] + batch.wy > acc.grid.ny ||
        o[2] + batch.wx > acc.grid.nx) {
      throw InputError("accumulate_windows",
                       fmt::format("window of [{}, {}, {}] at [{}, {}, {}] leaves the accumulator [{}, {}, {}]", batch.wz,
                                   batch.wy, batch.wx, o[0], o[1], o[2], acc.grid.nz, acc.grid.ny, acc.grid.nx));
    }
  }
}

void check_components_input(const Grid& grid, int connectivity) {
  if (connectivity != 6 && connectivity != 18 && connectivity != 26) {
    throw InputError("connected components", fmt::format("connectivity {}; expected 6, 18 or 26", connectivity));
  }
  if (grid.voxels() >= std::numeric_limits<std::int32_t>::max()) {
    throw InputError("connected components",
                     fmt::format("{} voxels; at most {} are supported", grid.voxels(), std::numeric_limits<std::int32_t>::max() - 1));
  }
}

}  // namespace detail

namespace {

float half_to_float(std::uint16_t h) { return c10::detail::fp16_ieee_to_fp32_value(h); }
std::uint16_t float_to_half(float f) { return c10::detail::fp16_ieee_from_fp32_value(f); }

}  // namespace

void accumulate_windows(const WindowBatch& batch, const float* importance, const Accumulator& acc) {
  detail::check_windows(batch, acc);
  const std::int64_t window_voxels = batch.wz * batch.wy * batch.wx;
  for (std::int64_t b = 0; b < batch.windows; ++b) {
    const std::int64_t* o = batch.origins + 3 * b;
    const float* logits = batch.logits + b * batch.classes * window_voxels;
    for (std::int64_t z = 0; z < batch.wz; ++z) {
      for (std::int64_t y = 0; y < batch.wy; ++y) {
        const std::int64_t in_row = (z * batch.wy + y) * batch.wx;
        const std::int64_t out_row = acc.grid.offset(o[0] + z, o[1] + y, o[2]);
        const float* imp = importance + in_row;
        for (std::int64_t k = 0; k < acc.classes; ++k) {
          const float* l = logits + k * window_voxels + in_row;
          if (acc.half) {
            auto* a = static_cast<std::uint16_t*>(acc.values) + k * acc.class_stride + out_row;
            for (std::int64_t x = 0; x < batch.wx; ++x) a[x] = float_to_half(half_to_float(a[x]) + l[x] * imp[x]);
          } else {
            float* a = static_cast<float*>(acc.values) + k * acc.class_stride + out_row;
            for (std::int64_t x = 0; x < batch.wx; ++x) a[x] += l[x] * imp[x];
          }
        }
        float* w = acc.weight + out_row;
        for (std::int64_t x = 0; x < batch.wx; ++x) w[x] += imp[x];
      }
    }
  }
}

void normalize(const void* in, Scalar type, std::int64_t n, const Normalization& norm, float* out) {
  const auto lower = static_cast<float>(norm.lower), upper = static_cast<float>(norm.upper);
  const auto mean = static_cast<float>(norm.mean), sd = static_cast<float>(norm.std);
  detail::with_real(type, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(in);
    for (std::int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(src[i]);
      v = v < lower ? lower : (v > upper ? upper : v);
      out[i] = (v - mean) / sd;
    }
  });
}

namespace {

/// One frame, n and m the source and output sizes along (x, y, z).
template <typename In, typename Out>
void resample_frame(const In* src, const std::int64_t n[3], Out* dst, const std::int64_t m[3], const IndexMap& map,
                    const Resampling& how) {
  const std::int64_t stride_y = n[0], stride_z = n[0] * n[1];
  const Out fill = static_cast<Out>(how.fill);
  at::parallel_for(0, m[2], 1, [&](std::int64_t k_begin, std::int64_t k_end) {
    for (std::int64_t k = k_begin; k < k_end; ++k) {
      for (std::int64_t j = 0; j < m[1]; ++j) {
        Out* row = dst + (k * m[1] + j) * m[0];
        for (std::int64_t i = 0; i < m[0]; ++i) {
          double p[3];
          bool inside = true;
          for (int c = 0; c < 3; ++c) {
            p[c] = map.a[c * 3] * static_cast<double>(i) + map.a[c * 3 + 1] * static_cast<double>(j) +
                   map.a[c * 3 + 2] * static_cast<double>(k) + map.t[c];
            const double half = 0.5 + kBoxTolerance;
            inside = inside && p[c] >= -half && p[c] <= static_cast<double>(n[c]) - 1.0 + half;
          }
          if (how.fill_outside && !inside) {
            row[i] = fill;
            continue;
          }
          if (!how.linear) {
            std::int64_t idx[3];
            for (int c = 0; c < 3; ++c) {
              idx[c] = std::clamp(static_cast<std::int64_t>(std::floor(p[c] + 0.5)), std::int64_t{0}, n[c] - 1);
            }
            row[i] = static_cast<Out>(src[idx[2] * stride_z + idx[1] * stride_y + idx[0]]);
            continue;
          }
          std::int64_t lo[3], hi[3];
          double f[3];
          for (int c = 0; c < 3; ++c) {
            const double q = std::clamp(p[c], 0.0, static_cast<double>(n[c] - 1));
            lo[c] = std::min(static_cast<std::int64_t>(std::floor(q)), n[c] - 1);
            hi[c] = std::min(lo[c] + 1, n[c] - 1);
            f[c] = q - static_cast<double>(lo[c]);
          }
          const auto value_at = [&](std::int64_t x, std::int64_t y, std::int64_t z) {
            return static_cast<double>(src[z * stride_z + y * stride_y + x]);
          };
          const double c00 = value_at(lo[0], lo[1], lo[2]) * (1.0 - f[0]) + value_at(hi[0], lo[1], lo[2]) * f[0];
          const double c10 = value_at(lo[0], hi[1], lo[2]) * (1.0 - f[0]) + value_at(hi[0], hi[1], lo[2]) * f[0];
          const double c01 = value_at(lo[0], lo[1], hi[2]) * (1.0 - f[0]) + value_at(hi[0], lo[1], hi[2]) * f[0];
          const double c11 = value_at(lo[0], hi[1], hi[2]) * (1.0 - f[0]) + value_at(hi[0], hi[1], hi[2]) * f[0];
          const double c0 = c00 * (1.0 - f[1]) + c10 * f[1];
          const double c1 = c01 * (1.0 - f[1]) + c11 * f[1];
          row[i] = static_cast<Out>(c0 * (1.0 - f[2]) + c1 * f[2]);
        }
      }
    }
  });
}

}  // namespace

void resample(const void* src, Scalar type, const std::int64_t src_zyx[3], void* dst, const std::int64_t dst_zyx[3],
              const IndexMap& map, const Resampling& how) {
  const std::int64_t n[3] = {src_zyx[2], src_zyx[1], src_zyx[0]};
  const std::int64_t m[3] = {dst_zyx[2], dst_zyx[1], dst_zyx[0]};
  detail::with_real(type, [&](auto tag) {
    using T = decltype(tag);
    if (how.linear) {
      resample_frame<T, float>(static_cast<const T*>(src), n, static_cast<float*>(dst), m, map, how);
    } else {
      resample_frame<T, T>(static_cast<const T*>(src), n, static_cast<T*>(dst), m, map, how);
    }
  });
}

namespace {

/// One row of voxels: the logits of every class (classes × nx, filled here), the best class and
/// its logit; with `prob`, the softmax probability of the best class.
template <typename A>
void argmax_row(const A* __restrict__ values, std::int64_t class_stride, const float* __restrict__ w, std::int64_t classes,
                std::int64_t nx, float* __restrict__ logits, float* __restrict__ best, std::int32_t* __restrict__ arg,
                float* __restrict__ prob) {
  for (std::int64_t k = 0; k < classes; ++k) {
    const A* a = values + k * class_stride;
    float* l = logits + k * nx;
    for (std::int64_t x = 0; x < nx; ++x) {
      if constexpr (std::is_same_v<A, std::uint16_t>) {
        l[x] = half_to_float(a[x]) / w[x];
      } else {
        l[x] = a[x] / w[x];
      }
    }
    if (k == 0) {
      std::copy(l, l + nx, best);
      std::fill(arg, arg + nx, 0);
      continue;
    }
    for (std::int64_t x = 0; x < nx; ++x) {
      // The first of equal maxima; NaN above all (as torch.argmax). Branch-free, to vectorise.
      const float v = l[x], b = best[x];
      const bool take = (v > b) | ((v != v) & (b == b));
      best[x] = take ? v : b;
      arg[x] = take ? static_cast<std::int32_t>(k) : arg[x];
    }
  }
  if (prob == nullptr) return;
  std::fill(prob, prob + nx, 0.0f);
  for (std::int64_t k = 0; k < classes; ++k) {
    const float* l = logits + k * nx;
    for (std::int64_t x = 0; x < nx; ++x) prob[x] += exp_nonpositive(l[x] - best[x]);
  }
  for (std::int64_t x = 0; x < nx; ++x) prob[x] = 1.0f / prob[x];
}

}  // namespace

void softmax_argmax(const Accumulator& acc, void* labels, Scalar label_type, float* max_prob) {
  const Grid& g = acc.grid;
  std::vector<float> logits(static_cast<std::size_t>(acc.classes * g.nx)), best(static_cast<std::size_t>(g.nx));
  std::vector<std::int32_t> arg(static_cast<std::size_t>(g.nx));
  detail::with_label(label_type, [&](auto tag) {
    using L = decltype(tag);
    L* out = static_cast<L*>(labels);
    for (std::int64_t z = 0; z < g.nz; ++z) {
      for (std::int64_t y = 0; y < g.ny; ++y) {
        const std::int64_t row = g.offset(z, y, 0), dense = (z * g.ny + y) * g.nx;
        float* prob = max_prob == nullptr ? nullptr : max_prob + dense;
        if (acc.half) {
          argmax_row(static_cast<const std::uint16_t*>(acc.values) + row, acc.class_stride, acc.weight + row, acc.classes,
                     g.nx, logits.data(), best.data(), arg.data(), prob);
        } else {
          argmax_row(static_cast<const float*>(acc.values) + row, acc.class_stride, acc.weight + row, acc.classes, g.nx,
                     logits.data(), best.data(), arg.data(), prob);
        }
        for (std::int64_t x = 0; x < g.nx; ++x) out[dense + x] = static_cast<L>(arg[static_cast<std::size_t>(x)]);
      }
    }
  });
}

std::int64_t label_stats(const void* labels, Scalar label_type, const Grid& grid, const void* image, Scalar image_type,
                         std::int64_t n_labels, LabelStats* out) {
  std::fill(out, out + n_labels, LabelStats{});
  std::int64_t outside = 0;
  const auto run = [&](const auto* lp, const auto* ip) {
    for (std::int64_t z = 0; z < grid.nz; ++z) {
      for (std::int64_t y = 0; y < grid.ny; ++y) {
        const std::int64_t row = grid.offset(z, y, 0);
        for (std::int64_t x = 0; x < grid.nx; ++x) {
          const auto c = static_cast<std::int64_t>(lp[row + x]);
          if (c < 0 || c >= n_labels) {
            ++outside;
            continue;
          }
          LabelStats& s = out[c];
          const std::int64_t p[3] = {z, y, x};
          double v = 0;
          if (ip != nullptr) v = static_cast<double>(ip[row + x]);
          if (s.count == 0) {
            for (int a = 0; a < 3; ++a) s.box_min[a] = s.box_max[a] = p[a];
            s.min = s.max = v;
          }
          for (int a = 0; a < 3; ++a) {
            s.box_min[a] = std::min(s.box_min[a], p[a]);
            s.box_max[a] = std::max(s.box_max[a], p[a]);
            s.index_sum[a] += static_cast<double>(p[a]);
          }
          ++s.count;
          if (ip != nullptr) {
            s.sum += v;
            s.sum_sq += v * v;
            s.min = std::min(s.min, v);
            s.max = std::max(s.max, v);
          }
        }
      }
    }
  };
  detail::with_label(label_type, [&](auto ltag) {
    using L = decltype(ltag);
    const L* lp = static_cast<const L*>(labels);
    if (image == nullptr) {
      run(lp, static_cast<const float*>(nullptr));
      return;
    }
    detail::with_real(image_type, [&](auto itag) { run(lp, static_cast<const decltype(itag)*>(image)); });
  });
  return outside;
}

void connected_roots(const std::uint8_t* mask, const Grid& grid, int connectivity, std::int32_t* roots) {
  detail::check_components_input(grid, connectivity);
  int neighbours[13][3];
  const int count = detail::backward_neighbours(connectivity, neighbours);
  // Pass 1: provisional labels in `roots`, merged by union-find towards the smaller label (the
  // label given first, so a component's root is the label of its first voxel).
  std::vector<std::int32_t> parent{0};
  std::vector<std::int32_t> first_voxel{-1};
  const std::int64_t nz = grid.nz, ny = grid.ny, nx = grid.nx;
  for (std::int64_t z = 0; z < nz; ++z) {
    for (std::int64_t y = 0; y < ny; ++y) {
      for (std::int64_t x = 0; x < nx; ++x) {
        const std::int64_t i = (z * ny + y) * nx + x;
        roots[i] = 0;
        if (mask[grid.offset(z, y, x)] == 0) continue;
        std::int32_t label = 0;
        for (int d = 0; d < count; ++d) {
          const std::int64_t zz = z + neighbours[d][0], yy = y + neighbours[d][1], xx = x + neighbours[d][2];
          if (zz < 0 || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
          const std::int32_t other = roots[(zz * ny + yy) * nx + xx];
          if (other == 0) continue;
          if (label == 0) {
            label = other;
            continue;
          }
          join_sets(parent, label, other);
        }
        if (label == 0) {
          label = static_cast<std::int32_t>(parent.size());
          parent.push_back(label);
          first_voxel.push_back(static_cast<std::int32_t>(i));
        }
        roots[i] = label;
      }
    }
  }
  // Pass 2: every voxel names its component's first voxel.
  const std::int64_t n = grid.voxels();
  for (std::int64_t i = 0; i < n; ++i) {
    if (roots[i] != 0) roots[i] = first_voxel[static_cast<std::size_t>(find_root(parent, roots[i]))] + 1;
  }
}

}  // namespace vitruvian::kernels
