// Soft Dice + cross-entropy fused on the CPU (float32 logits): one autograd function whose forward
// reads the logits once (per voxel: softmax, the per-class sums Dice needs, the log-likelihood of
// the target) and whose backward reads them once more and writes the gradient, with no
// probability, one-hot or log-probability maps kept. LibTorch's op sequence takes about ten
// passes and keeps three maps. Used by dice_ce_loss (models/losses.cpp) for contiguous CPU
// float32 logits.
//
// Voxels go in chunks of 16 lanes (the loops over a chunk vectorise; the loops are cloned for
// AVX-512 and AVX2 and chosen at load time); lane sums are carried in double every 1024 voxels,
// so results do not depend on the instruction set (no fused multiply-adds either).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/kernels/cpu_clones.h"
#include "core/kernels/exp_nonpositive.h"
#include "models/losses.h"

namespace vitruvian::models {
namespace {

using kernels::kLanes;
constexpr int kChunksPerBlock = static_cast<int>(kernels::kLaneBlock / kLanes);  // chunks between carries into double

using kernels::exp_nonpositive;

/// One chunk of kLanes voxels of a sample's logits [C, V] and targets [V], from voxel `first`:
/// z[c·stride + j] the logits; target[j] the target class as a float (−1 past the end), weight[j] 1 or
/// (past the end) 0. A partial last chunk is copied into padded buffers.
struct Chunk {
  const float* z;
  std::int64_t stride;
  float target[kLanes], weight[kLanes];
  int valid;
};

VITRUVIAN_INLINE void load_chunk(const float* z, const std::int64_t* t, std::int64_t voxels, int classes, std::int64_t first,
                                 float* padded, Chunk& chunk) {
  chunk.valid = static_cast<int>(std::min<std::int64_t>(kLanes, voxels - first));
  if (chunk.valid == kLanes) {
    chunk.z = z + first;
    chunk.stride = voxels;
  } else {
    for (int c = 0; c < classes; ++c) {
      for (int j = 0; j < kLanes; ++j) padded[c * kLanes + j] = j < chunk.valid ? z[c * voxels + first + j] : 0.0f;
    }
    chunk.z = padded;
    chunk.stride = kLanes;
  }
  for (int j = 0; j < kLanes; ++j) {
    chunk.target[j] = j < chunk.valid ? static_cast<float>(t[first + j]) : -1.0f;
    chunk.weight[j] = j < chunk.valid ? 1.0f : 0.0f;
  }
}

/// The softmax of one chunk: top[j] the maximum logit, e[c·kLanes + j] = exp(z − top),
/// sum[j] = Σc e, inverse[j] = 1 / sum[j].
VITRUVIAN_INLINE void chunk_softmax(const Chunk& chunk, int classes, float* __restrict top, float* __restrict e,
                                    float* __restrict sum, float* __restrict inverse) {
  const float* z = chunk.z;
  const std::int64_t stride = chunk.stride;
  for (int j = 0; j < kLanes; ++j) top[j] = z[j];
  for (int c = 1; c < classes; ++c) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = z[c * stride + j];
      top[j] = v > top[j] ? v : top[j];
    }
  }
  for (int j = 0; j < kLanes; ++j) sum[j] = 0;
  for (int c = 0; c < classes; ++c) {
    for (int j = 0; j < kLanes; ++j) {
      const float x = exp_nonpositive(z[c * stride + j] - top[j]);
      e[c * kLanes + j] = x;
      sum[j] += x;
    }
  }
  for (int j = 0; j < kLanes; ++j) inverse[j] = 1.0f / sum[j];
}

/// One sample's sums: per class Σp over voxels (probability), Σp where the target is the class
/// (overlap), the class's voxel count; and Σ −log p(target) (cross_entropy).
struct SampleSums {
  std::vector<double> probability, overlap, count;
  double cross_entropy = 0;
};

/// One sample's sums, into `out`.
VITRUVIAN_CLONES void sample_sums(const float* z, const std::int64_t* t, std::int64_t voxels, int classes, SampleSums& out) {
  const std::int64_t lanes = static_cast<std::int64_t>(classes) * kLanes;
  out.probability.assign(static_cast<std::size_t>(classes), 0.0);
  out.overlap.assign(static_cast<std::size_t>(classes), 0.0);
  out.count.assign(static_cast<std::size_t>(classes), 0.0);
  double* probability = out.probability.data();
  double* overlap = out.overlap.data();
  double* count = out.count.data();
  // Per class and lane: exp, and the running sums of p, of p at the target, of target hits.
  std::vector<float> e(static_cast<std::size_t>(lanes)), lane_p(e.size(), 0.0f), lane_o(e.size(), 0.0f),
      lane_c(e.size(), 0.0f), padded(e.size());
  float top[kLanes], sum[kLanes], inverse[kLanes], lane_linear[kLanes] = {}, product[kLanes];
  double log_sum = 0, linear = 0;
  // Σ log(Σ e) as the log of products over several chunks: each Σ e lies in [1, C], so a
  // product of up to `span` of them stays inside float's range.
  const int span = std::clamp(static_cast<int>(120.0 / std::log2(std::max(classes, 2))), 1, kChunksPerBlock);
  for (float& p : product) p = 1.0f;
  int chunks = 0, in_product = 0;
  Chunk chunk{};
  for (std::int64_t first = 0; first < voxels; first += kLanes) {
    load_chunk(z, t, voxels, classes, first, padded.data(), chunk);
    chunk_softmax(chunk, classes, top, e.data(), sum, inverse);
    for (int c = 0; c < classes; ++c) {
      float* lp = lane_p.data() + c * kLanes;
      float* lo = lane_o.data() + c * kLanes;
      float* lc = lane_c.data() + c * kLanes;
      const float* ec = e.data() + c * kLanes;
      const auto cf = static_cast<float>(c);
      for (int j = 0; j < kLanes; ++j) {
        const float p = ec[j] * inverse[j] * chunk.weight[j];
        const float hit = chunk.target[j] == cf ? 1.0f : 0.0f;
        lp[j] += p;
        lo[j] += hit * p;
        lc[j] += hit;
      }
    }
    for (int j = 0; j < chunk.valid; ++j) {
      lane_linear[j] += chunk.z[static_cast<std::int64_t>(chunk.target[j]) * chunk.stride + j] - top[j];
    }
    for (int j = 0; j < kLanes; ++j) product[j] *= chunk.weight[j] > 0 ? sum[j] : 1.0f;
    if (++in_product == span) {
      for (float& p : product) {
        log_sum += std::log(static_cast<double>(p));
        p = 1.0f;
      }
      in_product = 0;
    }
    if (++chunks == kChunksPerBlock || first + kLanes >= voxels) {
      for (std::size_t k = 0; k < e.size(); ++k) {
        probability[k / kLanes] += lane_p[k];
        overlap[k / kLanes] += lane_o[k];
        count[k / kLanes] += lane_c[k];
        lane_p[k] = lane_o[k] = lane_c[k] = 0.0f;
      }
      for (float& l : lane_linear) {
        linear += l;
        l = 0.0f;
      }
      chunks = 0;
    }
  }
  for (const float p : product) log_sum += std::log(static_cast<double>(p));
  out.cross_entropy = log_sum - linear;
}

/// The gradient of one sample's logits: dL/dz_k = g_ce (p_k − [t = k]) + p_k (q_k − Σc p_c q_c),
/// q_c = coef_c (2[t = c] − dice_c).
VITRUVIAN_CLONES void sample_gradient(const float* z, const std::int64_t* t, std::int64_t voxels, int classes, const float* coef,
                                      const float* dice, float g_ce, float* out) {
  std::vector<float> e(static_cast<std::size_t>(classes) * kLanes), padded(e.size());
  float top[kLanes], sum[kLanes], inverse[kLanes], s_all[kLanes];
  Chunk chunk{};
  for (std::int64_t first = 0; first < voxels; first += kLanes) {
    load_chunk(z, t, voxels, classes, first, padded.data(), chunk);
    chunk_softmax(chunk, classes, top, e.data(), sum, inverse);
    // Σc p_c q_c = Σc p_c coef_c (2[t = c] − dice_c).
    for (int j = 0; j < kLanes; ++j) s_all[j] = 0.0f;
    for (int c = 0; c < classes; ++c) {
      const float cc = coef[c], dc = dice[c];
      const auto cf = static_cast<float>(c);
      for (int j = 0; j < kLanes; ++j) {
        const float p = e[static_cast<std::size_t>(c * kLanes + j)] * inverse[j];
        const float hit = chunk.target[j] == cf ? 1.0f : 0.0f;
        s_all[j] += p * (cc * (2 * hit - dc));
      }
    }
    for (int c = 0; c < classes; ++c) {
      const float cc = coef[c], dc = dice[c];
      const auto cf = static_cast<float>(c);
      float* oc = out + c * voxels + first;
      float g[kLanes];
      for (int j = 0; j < kLanes; ++j) {
        const float p = e[static_cast<std::size_t>(c * kLanes + j)] * inverse[j];
        const float hit = chunk.target[j] == cf ? 1.0f : 0.0f;
        g[j] = g_ce * (p - hit) + p * (cc * (2 * hit - dc) - s_all[j]);
      }
      if (chunk.valid == kLanes) {
        for (int j = 0; j < kLanes; ++j) oc[j] = g[j];
      } else {
        for (int j = 0; j < chunk.valid; ++j) oc[j] = g[j];
      }
    }
  }
}

class DiceCE : public torch::autograd::Function<DiceCE> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                            double smooth) {
    const std::int64_t samples = logits.size(0), voxels = target[0].numel();
    const auto classes = static_cast<int>(logits.size(1));
    std::vector<SampleSums> sums(static_cast<std::size_t>(samples));
    const float* z = logits.data_ptr<float>();
    const std::int64_t* t = target.data_ptr<std::int64_t>();
    at::parallel_for(0, samples, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t s = first; s < last; ++s) {
        sample_sums(z + s * classes * voxels, t + s * voxels, voxels, classes, sums[static_cast<std::size_t>(s)]);
      }
    });
    // Dice per sample and foreground class, and its denominator (what the backward needs).
    at::Tensor dice = at::empty({samples, classes, 2}, at::kDouble);
    double* d = dice.data_ptr<double>();
    double cross_entropy = 0, dice_sum = 0;
    for (std::int64_t s = 0; s < samples; ++s) {
      const SampleSums& m = sums[static_cast<std::size_t>(s)];
      cross_entropy += m.cross_entropy;
      for (int c = 0; c < classes; ++c) {
        const double denominator = m.probability[static_cast<std::size_t>(c)] + m.count[static_cast<std::size_t>(c)] + smooth;
        const double value = (2 * m.overlap[static_cast<std::size_t>(c)] + smooth) / denominator;
        d[(s * classes + c) * 2] = value;
        d[(s * classes + c) * 2 + 1] = denominator;
        if (c > 0) dice_sum += value;
      }
    }
    const double loss = cross_entropy / static_cast<double>(samples * voxels) +
                        (1 - dice_sum / static_cast<double>(samples * (classes - 1)));
    ctx->save_for_backward({logits, target, dice});
    return at::scalar_tensor(loss, logits.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& logits = saved[0];
    const at::Tensor& target = saved[1];
    const double* d = saved[2].data_ptr<double>();
    const double g = grads[0].item<double>();
    const std::int64_t samples = logits.size(0), voxels = target[0].numel();
    const auto classes = static_cast<int>(logits.size(1));
    at::Tensor out = at::empty_like(logits);
    const float* z = logits.data_ptr<float>();
    const std::int64_t* t = target.data_ptr<std::int64_t>();
    float* o = out.data_ptr<float>();
    // dL/dz_k = g(p_k − [t = k])/(N·V) + p_k(q_k − Σc p_c q_c), with q_c = dL/dp_c =
    // coef_c (2[t = c] − dice_c), coef_c = −g / (N (C − 1) denominator_c) for foreground classes.
    const auto g_ce = static_cast<float>(g / static_cast<double>(samples * voxels));
    at::parallel_for(0, samples, 1, [&](std::int64_t first, std::int64_t last) {
      const auto n = static_cast<std::size_t>(classes);
      std::vector<float> coef(n), dice(n);
      for (std::int64_t s = first; s < last; ++s) {
        for (int c = 0; c < classes; ++c) {
          dice[static_cast<std::size_t>(c)] = static_cast<float>(d[(s * classes + c) * 2]);
          coef[static_cast<std::size_t>(c)] =
              c == 0 ? 0.0f
                     : static_cast<float>(-g / (static_cast<double>(samples * (classes - 1)) * d[(s * classes + c) * 2 + 1]));
        }
        sample_gradient(z + s * classes * voxels, t + s * voxels, voxels, classes, coef.data(), dice.data(), g_ce,
                        o + s * classes * voxels);
      }
    });
    return {out, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor dice_ce_loss_fused(const at::Tensor& logits, const at::Tensor& target, double smooth) {
  return DiceCE::apply(logits, target, smooth);
}

}  // namespace vitruvian::models
