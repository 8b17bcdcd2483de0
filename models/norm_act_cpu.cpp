// Instance norm + LeakyReLU fused on the CPU (declared in models/unet.h): in place for inference
// (instance_norm_act_, float32 or bfloat16), and as one autograd function for training
// (instance_norm_act, float32). Two passes over each [N, C] plane forward, two backward.
//
// Built for speed without giving up reproducibility (core/kernels/cpu_clones.h): the sums run in
// 16 independent float lanes carried in double every 1024 values; each plane function is cloned
// for AVX-512, AVX2 and the baseline and chosen at load time, and every clone computes the same
// values (-ffp-contract=off, the same lane order). Comparisons may not trap
// (-fno-trapping-math), so the LeakyReLU select vectorises.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/custom_function.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/kernels/cpu_clones.h"
#include "models/unet.h"

namespace vitruvian::models {
namespace {


VITRUVIAN_INLINE float load(const float* p, std::int64_t i) { return p[i]; }
VITRUVIAN_INLINE float load(const std::uint16_t* p, std::int64_t i) { return c10::detail::f32_from_bits(p[i]); }
VITRUVIAN_INLINE void store(float* p, std::int64_t i, float f) { p[i] = f; }
/// c10::BFloat16's conversion: rounded to nearest, ties to even; NaN a quiet NaN.
VITRUVIAN_INLINE void store(std::uint16_t* p, std::int64_t i, float f) { p[i] = c10::detail::round_to_nearest_even(f); }

/// Sum and sum of squares of (v − k) over n values.
template <typename T>
VITRUVIAN_INLINE void shifted_sums(const T* v, std::int64_t n, float k, double& sum, double& squares) {
  kernels::lane_sums(
      n,
      [&](std::int64_t i, float& a, float& b) {
        a = load(v, i) - k;
        b = a * a;
      },
      sum, squares);
}

/// From the sums of (v − k) and (v − k)² over n values: mean and 1/std, and the affine map that
/// normalises: scale = gamma/std, shift = beta − mean·gamma/std.
VITRUVIAN_INLINE void affine_from_sums(float k, double sum, double squares, std::int64_t n, float gamma, float beta,
                                       double eps, double& mean, double& inverse_std, float& scale, float& shift) {
  const double shifted_mean = sum / static_cast<double>(n);
  mean = k + shifted_mean;
  const double variance = std::max(0.0, squares / static_cast<double>(n) - shifted_mean * shifted_mean);
  inverse_std = 1.0 / std::sqrt(variance + eps);
  scale = static_cast<float>(gamma * inverse_std);
  shift = static_cast<float>(beta - mean * gamma * inverse_std);
}

/// One plane's statistics and affine map (affine_from_sums).
template <typename T>
VITRUVIAN_INLINE void plane_statistics(const T* in, std::int64_t n, float gamma, float beta, double eps, double& mean,
                                       double& inverse_std, float& scale, float& shift) {
  // Shifted by the first value, so a large mean does not cancel the variance.
  const float k = load(in, 0);
  double sum = 0, squares = 0;
  shifted_sums(in, n, k, sum, squares);
  affine_from_sums(k, sum, squares, n, gamma, beta, eps, mean, inverse_std, scale, shift);
}

/// LeakyReLU with slope `negative` below zero; negative = 1 is no activation (the same value).
VITRUVIAN_INLINE float leaky(float y, float negative) { return y < 0 ? y * negative : y; }

/// out = leaky(in·scale + shift). In place when in == out (a separate loop, so that the
/// out-of-place one may promise the compiler no overlap and both vectorise).
template <typename T>
VITRUVIAN_INLINE void affine_act(T* v, std::int64_t n, float scale, float shift, float negative) {
  for (std::int64_t i = 0; i < n; ++i) store(v, i, leaky(load(v, i) * scale + shift, negative));
}
template <typename T>
VITRUVIAN_INLINE void affine_act(const T* __restrict in, T* __restrict out, std::int64_t n, float scale, float shift,
                                 float negative) {
  for (std::int64_t i = 0; i < n; ++i) store(out, i, leaky(load(in, i) * scale + shift, negative));
}

VITRUVIAN_CLONES void norm_act_plane_in_place_float(float* v, std::int64_t n, float gamma, float beta, double eps,
                                                    float negative) {
  double mean = 0, inverse_std = 0;
  float scale = 0, shift = 0;
  plane_statistics(v, n, gamma, beta, eps, mean, inverse_std, scale, shift);
  affine_act(v, n, scale, shift, negative);
}

VITRUVIAN_CLONES void norm_act_plane_in_place_bfloat16(std::uint16_t* v, std::int64_t n, float gamma, float beta, double eps,
                                                       float negative) {
  double mean = 0, inverse_std = 0;
  float scale = 0, shift = 0;
  plane_statistics(v, n, gamma, beta, eps, mean, inverse_std, scale, shift);
  affine_act(v, n, scale, shift, negative);
}

/// Interleaved layouts (oneDNN's ndhwc and nCdhw{8,16}c; LibTorch's channels-last): `lanes`
/// channels per voxel, each lane one channel's plane. Two sums per lane over voxels [first, last)
/// (at most kLaneBlock), in float, 16 lanes at a time (one AVX-512 register each): terms(i, j, a,
/// b) gives voxel i's terms for lane j.
template <typename Terms>
VITRUVIAN_INLINE void interleaved_lane_sums(std::int64_t first, std::int64_t last, std::int64_t lanes, Terms&& terms,
                                            double* sum_a, double* sum_b) {
  for (std::int64_t j0 = 0; j0 < lanes; j0 += kernels::kLanes) {
    float s[kernels::kLanes] = {}, q[kernels::kLanes] = {};
    if (j0 + kernels::kLanes <= lanes) {
      for (std::int64_t i = first; i < last; ++i) {
        for (int j = 0; j < kernels::kLanes; ++j) {
          float a, b;
          terms(i, j0 + j, a, b);
          s[j] += a;
          q[j] += b;
        }
      }
    } else {
      const auto m = static_cast<int>(lanes - j0);
      for (std::int64_t i = first; i < last; ++i) {
        for (int j = 0; j < m; ++j) {
          float a, b;
          terms(i, j0 + j, a, b);
          s[j] += a;
          q[j] += b;
        }
      }
    }
    for (int j = 0; j < kernels::kLanes && j0 + j < lanes; ++j) {
      sum_a[j0 + j] = s[j];
      sum_b[j0 + j] = q[j];
    }
  }
}

/// Σ(v − k) and Σ(v − k)² per lane.
VITRUVIAN_CLONES void interleaved_sums(const float* v, std::int64_t first, std::int64_t last, std::int64_t lanes,
                                       const float* k, double* sum, double* squares) {
  interleaved_lane_sums(
      first, last, lanes,
      [&](std::int64_t i, std::int64_t j, float& a, float& b) {
        a = v[i * lanes + j] - k[j];
        b = a * a;
      },
      sum, squares);
}

/// out = leaky(in·scale + shift) per lane over voxels [first, last); in place when in == out (a
/// separate loop, as for the planes).
VITRUVIAN_CLONES void interleaved_affine_act(float* v, std::int64_t first, std::int64_t last, std::int64_t lanes,
                                             const float* __restrict scale, const float* __restrict shift, float negative) {
  for (std::int64_t i = first; i < last; ++i) {
    float* row = v + i * lanes;
    for (std::int64_t j = 0; j < lanes; ++j) row[j] = leaky(row[j] * scale[j] + shift[j], negative);
  }
}
VITRUVIAN_CLONES void interleaved_affine_act(const float* __restrict in, float* __restrict out, std::int64_t first, std::int64_t last,
                                             std::int64_t lanes, const float* __restrict scale, const float* __restrict shift,
                                             float negative) {
  for (std::int64_t i = first; i < last; ++i) {
    for (std::int64_t j = 0; j < lanes; ++j) out[i * lanes + j] = leaky(in[i * lanes + j] * scale[j] + shift[j], negative);
  }
}

/// Per-lane statistics of the backward (as norm_act_backward_plane): Σd and Σd·x̂.
VITRUVIAN_CLONES void interleaved_backward_sums(const float* x, const float* grad, std::int64_t first, std::int64_t last,
                                                std::int64_t lanes, const float* mean, const float* inverse_std,
                                                const float* scale, const float* shift, float negative, double* sum_d,
                                                double* sum_d_xhat) {
  interleaved_lane_sums(
      first, last, lanes,
      [&](std::int64_t i, std::int64_t j, float& d, float& d_xhat) {
        const float xv = x[i * lanes + j];
        const float z = xv * scale[j] + shift[j];
        d = z > 0 ? grad[i * lanes + j] : grad[i * lanes + j] * negative;
        d_xhat = d * ((xv - mean[j]) * inverse_std[j]);
      },
      sum_d, sum_d_xhat);
}

/// dx = scale · (d − mean(d) − x̂·mean(d·x̂)) per lane.
VITRUVIAN_CLONES void interleaved_backward_apply(const float* __restrict x, const float* __restrict grad, float* __restrict dx,
                                                 std::int64_t first, std::int64_t last, std::int64_t lanes, const float* mean,
                                                 const float* inverse_std, const float* scale, const float* shift, float negative,
                                                 const float* mean_d, const float* mean_d_xhat) {
  for (std::int64_t i = first; i < last; ++i) {
    for (std::int64_t j = 0; j < lanes; ++j) {
      const float xv = x[i * lanes + j];
      const float z = xv * scale[j] + shift[j];
      const float d = z > 0 ? grad[i * lanes + j] : grad[i * lanes + j] * negative;
      dx[i * lanes + j] = scale[j] * (d - mean_d[j] - ((xv - mean[j]) * inverse_std[j]) * mean_d_xhat[j]);
    }
  }
}

/// Runs body(p, first, last) over every plane's chunks of kLaneBlock voxels, in parallel.
template <typename Body>
void for_each_chunk(std::int64_t planes, std::int64_t voxels, Body&& body) {
  const std::int64_t chunks = (voxels + kernels::kLaneBlock - 1) / kernels::kLaneBlock;
  at::parallel_for(0, planes * chunks, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t t = begin; t < end; ++t) {
      const std::int64_t first = (t % chunks) * kernels::kLaneBlock;
      body(t / chunks, t % chunks, first, std::min(voxels, first + kernels::kLaneBlock));
    }
  });
}

/// Two per-lane sums over each plane ([planes][lanes] each): chunk_sums(p, first, last, a, b)
/// sums one chunk into a[lanes] and b[lanes]; chunks are added in order, so the result does not
/// depend on the thread count.
template <typename ChunkSums>
void plane_lane_sums(std::int64_t planes, std::int64_t voxels, std::int64_t lanes, ChunkSums&& chunk_sums, std::vector<double>& a,
                     std::vector<double>& b) {
  const std::int64_t chunks = (voxels + kernels::kLaneBlock - 1) / kernels::kLaneBlock;
  std::vector<double> pa(static_cast<std::size_t>(planes * chunks * lanes)), pb(pa.size());
  for_each_chunk(planes, voxels, [&](std::int64_t p, std::int64_t c, std::int64_t first, std::int64_t last) {
    const auto at = static_cast<std::size_t>((p * chunks + c) * lanes);
    chunk_sums(p, first, last, pa.data() + at, pb.data() + at);
  });
  a.assign(static_cast<std::size_t>(planes * lanes), 0.0);
  b.assign(a.size(), 0.0);
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t c = 0; c < chunks; ++c) {
      for (std::int64_t j = 0; j < lanes; ++j) {
        a[static_cast<std::size_t>(p * lanes + j)] += pa[static_cast<std::size_t>((p * chunks + c) * lanes + j)];
        b[static_cast<std::size_t>(p * lanes + j)] += pb[static_cast<std::size_t>((p * chunks + c) * lanes + j)];
      }
    }
  }
}

/// Per lane of each interleaved plane ([planes][voxels][lanes]): mean, 1/std, scale and shift
/// ([planes][lanes] each), with gamma and beta of lane j of plane p at (p % groups)·lanes + j.
struct LaneStatistics {
  std::vector<float> mean, inverse_std, scale, shift;
};
LaneStatistics interleaved_statistics(const float* data, std::int64_t planes, std::int64_t groups, std::int64_t voxels,
                                      std::int64_t lanes, const float* gamma, const float* beta, double eps) {
  const auto n = static_cast<std::size_t>(planes * lanes);
  std::vector<float> k(n);  // each lane shifted by its first value
  for (std::int64_t p = 0; p < planes; ++p) std::copy(data + p * voxels * lanes, data + p * voxels * lanes + lanes, k.begin() + p * lanes);
  std::vector<double> sums, squares;
  plane_lane_sums(
      planes, voxels, lanes,
      [&](std::int64_t p, std::int64_t first, std::int64_t last, double* a, double* b) {
        interleaved_sums(data + p * voxels * lanes, first, last, lanes, k.data() + p * lanes, a, b);
      },
      sums, squares);
  LaneStatistics st{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
  for (std::size_t i = 0; i < n; ++i) {
    const auto lane = static_cast<std::size_t>((static_cast<std::int64_t>(i) / lanes % groups) * lanes + static_cast<std::int64_t>(i) % lanes);
    double mean = 0, inverse_std = 0;
    affine_from_sums(k[i], sums[i], squares[i], voxels, gamma[lane], beta[lane], eps, mean, inverse_std, st.scale[i], st.shift[i]);
    st.mean[i] = static_cast<float>(mean);
    st.inverse_std[i] = static_cast<float>(inverse_std);
  }
  return st;
}

/// Out of place; stats = mean, 1/std, scale, shift (what the backward needs).
VITRUVIAN_CLONES void norm_act_plane_float(const float* __restrict in, float* __restrict out, std::int64_t n, float gamma,
                                           float beta, double eps, float negative, float* stats) {
  double mean = 0, inverse_std = 0;
  float scale = 0, shift = 0;
  plane_statistics(in, n, gamma, beta, eps, mean, inverse_std, scale, shift);
  affine_act(in, out, n, scale, shift, negative);
  stats[0] = static_cast<float>(mean);
  stats[1] = static_cast<float>(inverse_std);
  stats[2] = scale;
  stats[3] = shift;
}

/// The backward of one plane. With x̂ = (x − mean)/std, z = x·scale + shift (the forward's
/// pre-activation, recomputed exactly) and d = dL/dz (dL/dout through the LeakyReLU, slope 1
/// where z > 0): returns Σd and Σd·x̂ (for beta's and gamma's gradients) and writes
/// dx = scale · (d − Σd/n − x̂·Σd·x̂/n), scale = gamma/std.
VITRUVIAN_CLONES void norm_act_backward_plane(const float* __restrict x, const float* __restrict grad, float* __restrict dx,
                                              std::int64_t n, float mean,
                                              float inverse_std, float scale, float shift, float negative,
                                              double& sum_d, double& sum_d_xhat) {
  kernels::lane_sums(
      n,
      [&](std::int64_t i, float& d, float& dx_hat) {
        const float z = x[i] * scale + shift;
        d = z > 0 ? grad[i] : grad[i] * negative;
        dx_hat = d * ((x[i] - mean) * inverse_std);
      },
      sum_d, sum_d_xhat);
  const auto mean_d = static_cast<float>(sum_d / static_cast<double>(n));
  const auto mean_d_xhat = static_cast<float>(sum_d_xhat / static_cast<double>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const float xv = x[i];
    const float z = xv * scale + shift;
    const float d = z > 0 ? grad[i] : grad[i] * negative;
    dx[i] = scale * (d - mean_d - ((xv - mean) * inverse_std) * mean_d_xhat);
  }
}

/// A 5-D tensor laid out channels-last (and not also plain, as a single channel is).
bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 5 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast3d);
}

/// Training's instance norm + LeakyReLU: saves the input and four floats per plane (mean, 1/std,
/// scale, shift; the output is saved by the next convolution, as with LibTorch's ops), and
/// computes the backward in two passes.
class NormAct : public torch::autograd::Function<NormAct> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, double slope) {
    const std::int64_t channels = x.size(1), planes = x.size(0) * channels, plane = x.numel() / planes;
    const at::Tensor gamma = weight.to(at::kFloat).contiguous(), beta = bias.to(at::kFloat).contiguous();
    at::Tensor out = at::empty_like(x);  // the same memory format
    at::Tensor stats = at::empty({planes, 4}, x.options().dtype(at::kFloat));  // mean, 1/std, scale, shift
    const float* in = x.data_ptr<float>();
    float* o = out.data_ptr<float>();
    float* st = stats.data_ptr<float>();
    const float* g = gamma.data_ptr<float>();
    const float* b = beta.data_ptr<float>();
    if (is_channels_last(x)) {
      const LaneStatistics s = interleaved_statistics(in, x.size(0), 1, plane, channels, g, b, eps);
      for_each_chunk(x.size(0), plane, [&](std::int64_t n, std::int64_t, std::int64_t first, std::int64_t last) {
        const std::int64_t at = n * channels;
        interleaved_affine_act(in + n * plane * channels, o + n * plane * channels, first, last, channels, s.scale.data() + at,
                               s.shift.data() + at, static_cast<float>(slope));
      });
      for (std::int64_t p = 0; p < planes; ++p) {
        const auto i = static_cast<std::size_t>(p);
        st[4 * p] = s.mean[i];
        st[4 * p + 1] = s.inverse_std[i];
        st[4 * p + 2] = s.scale[i];
        st[4 * p + 3] = s.shift[i];
      }
    } else {
      at::parallel_for(0, planes, 1, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t p = first; p < last; ++p) {
          const std::int64_t c = p % channels;
          norm_act_plane_float(in + p * plane, o + p * plane, plane, g[c], b[c], eps, static_cast<float>(slope), st + 4 * p);
        }
      });
    }
    ctx->save_for_backward({x, stats});
    ctx->saved_data["slope"] = slope;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& stats = saved[1];
    const auto slope = static_cast<float>(ctx->saved_data["slope"].toDouble());
    const bool interleaved = is_channels_last(x);
    const at::Tensor grad = interleaved ? grads[0].contiguous(at::MemoryFormat::ChannelsLast3d) : grads[0].contiguous();
    const std::int64_t channels = x.size(1), planes = x.size(0) * channels, plane = x.numel() / planes;
    at::Tensor dx = at::empty_like(x);
    std::vector<double> sum_d(static_cast<std::size_t>(planes)), sum_d_xhat(static_cast<std::size_t>(planes));
    const float* xs = x.data_ptr<float>();
    const float* gs = grad.data_ptr<float>();
    float* dxs = dx.data_ptr<float>();
    const float* st = stats.data_ptr<float>();
    if (interleaved) {
      // The four statistics per plane, as lanes of each sample.
      const at::Tensor lanes = stats.t().contiguous();  // [4, N·C]
      const float* mean = lanes[0].data_ptr<float>();
      const float* inverse_std = lanes[1].data_ptr<float>();
      const float* scale = lanes[2].data_ptr<float>();
      const float* shift = lanes[3].data_ptr<float>();
      const std::int64_t batch = x.size(0), stride = plane * channels;
      plane_lane_sums(
          batch, plane, channels,
          [&](std::int64_t n, std::int64_t first, std::int64_t last, double* a, double* b) {
            const std::int64_t at = n * channels;
            interleaved_backward_sums(xs + n * stride, gs + n * stride, first, last, channels, mean + at, inverse_std + at,
                                      scale + at, shift + at, slope, a, b);
          },
          sum_d, sum_d_xhat);
      std::vector<float> mean_d(sum_d.size()), mean_d_xhat(sum_d.size());
      for (std::size_t i = 0; i < sum_d.size(); ++i) {
        mean_d[i] = static_cast<float>(sum_d[i] / static_cast<double>(plane));
        mean_d_xhat[i] = static_cast<float>(sum_d_xhat[i] / static_cast<double>(plane));
      }
      for_each_chunk(batch, plane, [&](std::int64_t n, std::int64_t, std::int64_t first, std::int64_t last) {
        const std::int64_t at = n * channels;
        interleaved_backward_apply(xs + n * stride, gs + n * stride, dxs + n * stride, first, last, channels, mean + at,
                                   inverse_std + at, scale + at, shift + at, slope, mean_d.data() + at, mean_d_xhat.data() + at);
      });
    } else {
      at::parallel_for(0, planes, 1, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t p = first; p < last; ++p) {
          const float* s = st + 4 * p;
          norm_act_backward_plane(xs + p * plane, gs + p * plane, dxs + p * plane, plane, s[0], s[1], s[2], s[3], slope,
                                  sum_d[static_cast<std::size_t>(p)], sum_d_xhat[static_cast<std::size_t>(p)]);
        }
      });
    }
    // Per channel, summed over the batch in a fixed order.
    std::vector<double> dgamma(static_cast<std::size_t>(channels)), dbeta(static_cast<std::size_t>(channels));
    for (std::int64_t p = 0; p < planes; ++p) {
      dgamma[static_cast<std::size_t>(p % channels)] += sum_d_xhat[static_cast<std::size_t>(p)];
      dbeta[static_cast<std::size_t>(p % channels)] += sum_d[static_cast<std::size_t>(p)];
    }
    const auto to_tensor = [&](const std::vector<double>& v) {
      return at::tensor(at::ArrayRef<double>(v), x.options().dtype(at::kDouble)).to(at::kFloat);
    };
    return {dx, to_tensor(dgamma), to_tensor(dbeta), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void instance_norm_act_(at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, std::optional<double> slope) {
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const bool interleaved = !bf16 && is_channels_last(x);
  TORCH_CHECK(x.dim() >= 3 && (x.is_contiguous() || interleaved) && (x.scalar_type() == at::kFloat || bf16) && x.device().is_cpu(),
              "instance_norm_act_: expected a float32 or bfloat16 CPU tensor [N, C, ...], contiguous (or channels-last float32)");
  const std::int64_t channels = x.size(1), planes = x.size(0) * channels, plane = x.numel() / std::max<std::int64_t>(planes, 1);
  TORCH_CHECK(weight.numel() == channels && bias.numel() == channels, "instance_norm_act_: expected ", channels,
              " weights and biases");
  if (plane == 0) return;
  const at::Tensor w = weight.to(at::kFloat).contiguous(), b = bias.to(at::kFloat).contiguous();
  const float* gamma = w.data_ptr<float>();
  const float* beta = b.data_ptr<float>();
  const auto negative = static_cast<float>(slope.value_or(1.0));  // 1: no activation
  if (interleaved) {  // one lane per channel
    instance_norm_act_blocked_(x.data_ptr<float>(), x.size(0), channels, channels, plane, gamma, beta, eps, negative);
    return;
  }
  static_assert(sizeof(c10::BFloat16) == sizeof(std::uint16_t));
  void* data = x.data_ptr();
  at::parallel_for(0, planes, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t p = first; p < last; ++p) {
      const std::int64_t c = p % channels;
      if (bf16) {
        norm_act_plane_in_place_bfloat16(static_cast<std::uint16_t*>(data) + p * plane, plane, gamma[c], beta[c], eps,
                                         negative);
      } else {
        norm_act_plane_in_place_float(static_cast<float*>(data) + p * plane, plane, gamma[c], beta[c], eps, negative);
      }
    }
  });
}

at::Tensor instance_norm_act(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                             std::optional<double> slope) {
  TORCH_CHECK(x.dim() >= 3 && x.numel() > 0 && (x.is_contiguous() || is_channels_last(x)) && x.scalar_type() == at::kFloat &&
                  x.device().is_cpu(),
              "instance_norm_act: expected a non-empty float32 CPU tensor [N, C, ...], contiguous or channels-last");
  TORCH_CHECK(weight.numel() == x.size(1) && bias.numel() == x.size(1), "instance_norm_act: expected ", x.size(1),
              " weights and biases");
  return NormAct::apply(x, weight, bias, eps, slope.value_or(1.0));  // slope 1: no activation
}

void instance_norm_act_blocked_(float* data, std::int64_t batch, std::int64_t channels, std::int64_t block,
                                std::int64_t voxels, const float* weight, const float* bias, double eps, float slope) {
  TORCH_CHECK(block >= 1 && block <= 4096, "instance_norm_act_blocked_: block ", block, "; expected 1 to 4096");
  if (voxels == 0 || batch == 0 || channels == 0) return;
  const std::int64_t groups = (channels + block - 1) / block, planes = batch * groups, plane = voxels * block;
  if (block == 1) {
    at::parallel_for(0, planes, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t p = first; p < last; ++p) {
        const std::int64_t c = p % channels;
        norm_act_plane_in_place_float(data + p * plane, voxels, weight[c], bias[c], eps, slope);
      }
    });
    return;
  }
  // Padded lanes get gamma = beta = 0: they stay zero, as oneDNN expects of its padding.
  const auto lanes = static_cast<std::size_t>(block);
  std::vector<float> gamma(static_cast<std::size_t>(groups) * lanes, 0.F), beta(gamma.size(), 0.F);
  std::copy(weight, weight + channels, gamma.begin());
  std::copy(bias, bias + channels, beta.begin());
  const LaneStatistics s = interleaved_statistics(data, planes, groups, voxels, block, gamma.data(), beta.data(), eps);
  for_each_chunk(planes, voxels, [&](std::int64_t p, std::int64_t, std::int64_t first, std::int64_t last) {
    interleaved_affine_act(data + p * plane, first, last, block, s.scale.data() + p * block, s.shift.data() + p * block, slope);
  });
}

}  // namespace vitruvian::models
