// The 3D U-Net family: a plain-convolution U-Net in the nnU-Net manner, a residual-encoder U-Net
// and a selective-kernel U-Net, built from one options class. Any number of input channels and
// classes, per-stage pooling per axis (anisotropic data), deep-supervision heads.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <optional>
#include <cstdint>
#include <string>
#include <vector>

namespace vitruvian::models {

/// Per-axis sizes [z, y, x] of every stage.
using StageAxes = std::vector<std::array<std::int64_t, 3>>;

enum class BlockType {
  kPlain,           ///< two 3×3×3 conv + instance norm + LeakyReLU per stage
  kResidual,        ///< residual blocks in the encoder (ResEnc U-Net)
  kSelectiveKernel  ///< parallel 3×3×3 and dilated 3×3×3 branches fused by channel attention
};

/// "plain", "residual", "selective_kernel"; ConfigError naming `source` otherwise.
BlockType block_type_from_name(const std::string& name, const std::string& source);
std::string block_type_name(BlockType type);

/// Options of a UNet (fluent setters). Stage s has features()[s] channels and is reached by a
/// strided convolution of strides()[s] (stage 0: all 1); the decoder mirrors the encoder with
/// transposed convolutions. Checked by UNetImpl's constructor.
class UNetOptions {
 public:
  UNetOptions(std::int64_t in_channels, std::int64_t num_classes) : in_channels_(in_channels), num_classes_(num_classes) {}

  /// nnU-Net's defaults for `stages` stages: features 32 doubling up to 320, strides 2 on every
  /// axis from stage 1, 3×3×3 kernels, two convolutions per stage.
  static UNetOptions standard(std::int64_t in_channels, std::int64_t num_classes, int stages);

#define VITRUVIAN_OPTION(type, name)   \
  UNetOptions& name(type value) {      \
    name##_ = std::move(value);        \
    return *this;                      \
  }                                    \
  const type& name() const noexcept { return name##_; }
  VITRUVIAN_OPTION(std::int64_t, in_channels)
  VITRUVIAN_OPTION(std::int64_t, num_classes)
  /// Channels per stage.
  VITRUVIAN_OPTION(std::vector<std::int64_t>, features)
  /// Per stage [z, y, x] downsampling factor into that stage (stage 0: {1, 1, 1}).
  VITRUVIAN_OPTION(StageAxes, strides)
  /// Per stage [z, y, x] odd kernel sizes (1 along an axis too coarse to convolve early on).
  VITRUVIAN_OPTION(StageAxes, kernels)
  VITRUVIAN_OPTION(int, convs_per_stage)
  VITRUVIAN_OPTION(BlockType, block)
  VITRUVIAN_OPTION(bool, deep_supervision)
  VITRUVIAN_OPTION(double, negative_slope)
#undef VITRUVIAN_OPTION

  int stages() const noexcept { return static_cast<int>(features_.size()); }

 private:
  std::int64_t in_channels_, num_classes_;
  std::vector<std::int64_t> features_;
  StageAxes strides_;
  StageAxes kernels_;
  int convs_per_stage_ = 2;
  BlockType block_ = BlockType::kPlain;
  bool deep_supervision_ = true;
  double negative_slope_ = 0.01;
};

class UNetImpl : public torch::nn::Module {
 public:
  /// Throws ConfigError naming the bad option and value (stage counts that disagree, even
  /// kernels, strides < 1, channels < 1, ...).
  explicit UNetImpl(UNetOptions options);

  /// x [N, in_channels, D, H, W] (any size ≥ 1; odd sizes are fine) → logits
  /// [N, num_classes, D, H, W], followed, with deep supervision in training mode, by the
  /// lower-resolution heads' logits (each stage coarser, down to stage 1).
  std::vector<at::Tensor> forward(const at::Tensor& x);

  const UNetOptions& options() const noexcept { return options_; }

  /// Whether float32 forward passes on the CPU (training and evaluation) run their convolutions
  /// on oneDNN directly, activations channels-last between layers (models/onednn_ops.h). On
  /// only where onednn_channels_last() holds; returns what was set. Off by default.
  bool use_onednn(bool on);
  bool uses_onednn() const noexcept { return onednn_; }

 private:
  UNetOptions options_;
  bool onednn_ = false;
  torch::nn::ModuleList encoder_, upsample_, decoder_, heads_;
};
TORCH_MODULE(UNet);

/// Multiply-adds ×2 of one forward pass on an input of [1, in_channels, D, H, W] (convolutions
/// and transposed convolutions; norms and activations ignored), divided by D·H·W.
double forward_flops_per_voxel(UNet& net, const std::array<std::int64_t, 3>& patch_zyx);

/// A transposed convolution whose kernel equals its stride (no overlapping windows), as one
/// pointwise convolution to Cout·kz·ky·kx channels and a reshuffle: x [N, Cin, D, H, W], weight
/// [Cin, Cout, kz, ky, kx] →
/// [N, Cout, D·kz, H·ky, W·kx], equal to conv_transpose3d(x, weight, stride = kernel).
at::Tensor upsample_by_product(const at::Tensor& x, const at::Tensor& weight);

/// Instance normalisation with affine `weight`/`bias` [C] and, when `slope` is given, LeakyReLU,
/// in place on a contiguous float32 or bfloat16 CPU tensor [N, C, ...] (or a channels-last
/// float32 one, through instance_norm_act_blocked_), in two passes over each
/// channel (float arithmetic, sums in double, then normalise-scale-activate; a bfloat16 result
/// rounded once): what InstanceNorm3d + leaky_relu_ compute
/// in four, for inference (no autograd). Equal to them within float rounding.
void instance_norm_act_(at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps, std::optional<double> slope);

/// Instance normalisation + LeakyReLU (none without `slope`) as one autograd function, for
/// training on the CPU: x a contiguous float32 CPU tensor [N, C, ...], gradients for x, weight and
/// bias. Keeps x and four floats per plane for the backward, and runs two vectorised passes each
/// way. Equal to InstanceNorm3d + leaky_relu within float rounding.
at::Tensor instance_norm_act(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                             std::optional<double> slope);

/// instance_norm_act_ (LeakyReLU slope `slope`, 1: none) on float32 activations laid out as
/// [batch][ceil(channels/block)][voxels][block], channels padded with zeros to a multiple of
/// block: oneDNN's layouts, nCdhw16c (block 16), nCdhw8c (8), ndhwc (block = channels) and
/// ncdhw (1). Padding lanes stay zero. weight and bias hold `channels` values. The same values
/// for any thread count.
void instance_norm_act_blocked_(float* data, std::int64_t batch, std::int64_t channels, std::int64_t block,
                                std::int64_t voxels, const float* weight, const float* bias, double eps, float slope);

/// Trainable parameters.
std::int64_t parameter_count(const torch::nn::Module& module);

}  // namespace vitruvian::models
