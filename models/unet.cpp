// Encoder stages (plain, residual, selective-kernel), the transposed-convolution decoder with
// skip connections, deep-supervision heads, and FLOP counting by instrumented convolutions.
#include "models/unet.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>

#include "core/errors.h"
#include "models/onednn_ops.h"
#include "models/precision.h"

namespace vitruvian::models {
namespace {

namespace nn = torch::nn;

/// Set while forward_flops_per_voxel runs a forward pass; convolutions add their FLOPs.
thread_local double* g_flops = nullptr;
/// Set while a UNet whose CPU engine is oneDNN runs its forward pass: convolutions given
/// channels-last float32 CPU inputs call oneDNN directly (models/onednn_ops.h).
thread_local bool g_onednn = false;

bool onednn_input(const at::Tensor& x) {
  return g_onednn && x.dim() == 5 && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
         x.is_contiguous(at::MemoryFormat::ChannelsLast3d);
}

/// op() on oneDNN, or nothing when oneDNN refuses the geometry (no fast kernel): the caller runs
/// LibTorch's op instead. Said once per process.
template <typename Op>
std::optional<at::Tensor> on_onednn(Op&& op) {
  try {
    return op();
  } catch (const InternalError& e) {
    static std::once_flag said;
    std::call_once(said, [&] { spdlog::warn("{}; such layers run on LibTorch's ops", e.detail()); });
    return std::nullopt;
  }
}

using Axes = std::array<std::int64_t, 3>;
const Axes kOnes{1, 1, 1};

std::vector<std::int64_t> vec(const Axes& a) { return {a[0], a[1], a[2]}; }

/// conv → instance norm → LeakyReLU (or no activation).
class ConvNormActImpl : public nn::Module {
 public:
  ConvNormActImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> kernel, std::array<std::int64_t, 3> stride,
                  std::int64_t dilation, double slope, bool activate)
      : slope_(slope), activate_(activate), stride_(stride), dilation_(dilation) {
    std::vector<std::int64_t> padding;
    for (std::size_t a = 0; a < 3; ++a) padding_[a] = dilation * (kernel[a] / 2);
    for (const auto k : kernel) padding.push_back(dilation * (k / 2));
    conv_ = register_module("conv", nn::Conv3d(nn::Conv3dOptions(in, out, vec(kernel))
                                                    .stride(vec(stride))
                                                    .padding(padding)
                                                    .dilation(dilation)));
    norm_ = register_module("norm", nn::InstanceNorm3d(nn::InstanceNorm3dOptions(out).affine(true)));
    macs_per_output_ = in * kernel[0] * kernel[1] * kernel[2];
  }
  at::Tensor forward(const at::Tensor& x) {
    std::optional<at::Tensor> fast;
    if (onednn_input(x)) fast = on_onednn([&] { return onednn_conv3d(x, conv_->weight, conv_->bias, stride_, padding_, dilation_); });
    const bool onednn = fast.has_value();
    at::Tensor y = onednn ? *fast : conv_->forward(x);
    if (g_flops != nullptr) *g_flops += 2.0 * static_cast<double>(y.numel()) * static_cast<double>(macs_per_output_);
    const std::optional<double> slope = activate_ ? std::optional<double>(slope_) : std::nullopt;
    // The fused kernels take plain tensors, and channels-last float32 ones (the oneDNN path's).
    const bool fused_layout = y.is_contiguous() || (onednn && y.scalar_type() == at::kFloat);
    // Inference: the fused two-pass kernel (no autograd graph to keep).
    if ((onednn || !is_training()) && !at::GradMode::is_enabled() && y.device().is_cpu() &&
        (y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16) && fused_layout) {
      instance_norm_act_(y, norm_->weight, norm_->bias, norm_->options.eps(), slope);
      return y;
    }
    // Training on the CPU: the fused autograd function (four vectorised passes instead of
    // about nine).
    if (y.device().is_cpu() && y.scalar_type() == at::kFloat && fused_layout && y.numel() > 0) {
      return instance_norm_act(y, norm_->weight, norm_->bias, norm_->options.eps(), slope);
    }
    y = norm_->forward(y);
    if (activate_) at::leaky_relu_(y, slope_);
    return y;
  }

 private:
  nn::Conv3d conv_{nullptr};
  nn::InstanceNorm3d norm_{nullptr};
  double slope_;
  bool activate_;
  Axes stride_, padding_{};
  std::int64_t dilation_;
  std::int64_t macs_per_output_ = 0;
};
TORCH_MODULE(ConvNormAct);

/// A stage: anything mapping [N, Cin, ...] to [N, Cout, ...].
class StageImpl : public nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x) = 0;
};

/// convs_per_stage × ConvNormAct, the first strided.
class PlainStageImpl : public StageImpl {
 public:
  PlainStageImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> kernel, std::array<std::int64_t, 3> stride,
                 int convs, double slope) {
    for (int c = 0; c < convs; ++c) {
      convs_.push_back(register_module(fmt::format("conv{}", c), ConvNormAct(c == 0 ? in : out, out, kernel,
                                                                             c == 0 ? stride : kOnes,
                                                                             1, slope, true)));
    }
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor y = x;
    for (auto& conv : convs_) y = conv->forward(y);
    return y;
  }

 private:
  std::vector<ConvNormAct> convs_;
};

/// Two convolutions with an identity (or strided 1×1 projection) shortcut.
class ResidualBlockImpl : public nn::Module {
 public:
  ResidualBlockImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> kernel, std::array<std::int64_t, 3> stride,
                    double slope)
      : slope_(slope) {
    first_ = register_module("conv1", ConvNormAct(in, out, kernel, stride, 1, slope, true));
    second_ = register_module("conv2", ConvNormAct(out, out, kernel, kOnes, 1, slope, false));
    if (in != out || stride != kOnes) {
      shortcut_ = register_module("shortcut", ConvNormAct(in, out, kOnes, stride, 1, slope, false));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor skip = shortcut_ ? shortcut_->forward(x) : x;
    at::Tensor y = second_->forward(first_->forward(x)) + skip;
    return at::leaky_relu_(y, slope_);
  }

 private:
  ConvNormAct first_{nullptr}, second_{nullptr}, shortcut_{nullptr};
  double slope_;
};
TORCH_MODULE(ResidualBlock);

class ResidualStageImpl : public StageImpl {
 public:
  ResidualStageImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> kernel, std::array<std::int64_t, 3> stride,
                    int blocks, double slope) {
    for (int b = 0; b < blocks; ++b) {
      blocks_.push_back(register_module(fmt::format("block{}", b),
                                        ResidualBlock(b == 0 ? in : out, out, kernel,
                                                      b == 0 ? stride : kOnes, slope)));
    }
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor y = x;
    for (auto& block : blocks_) y = block->forward(y);
    return y;
  }

 private:
  std::vector<ResidualBlock> blocks_;
};

/// Selective kernel: a plain and a dilated (×2) branch, mixed per channel by attention weights
/// computed from their pooled sum; added to the input.
class SelectiveKernelBlockImpl : public nn::Module {
 public:
  SelectiveKernelBlockImpl(std::int64_t channels, std::array<std::int64_t, 3> kernel, double slope) : channels_(channels) {
    near_ = register_module("branch1", ConvNormAct(channels, channels, kernel, kOnes, 1, slope, true));
    far_ = register_module("branch2", ConvNormAct(channels, channels, kernel, kOnes, 2, slope, true));
    const std::int64_t hidden = std::max<std::int64_t>(channels / 4, 8);
    squeeze_ = register_module("squeeze", nn::Linear(channels, hidden));
    excite_ = register_module("excite", nn::Linear(hidden, 2 * channels));
  }
  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor a = near_->forward(x), b = far_->forward(x);
    const at::Tensor pooled = (a + b).mean({2, 3, 4});                                  // [N, C]
    const at::Tensor weights = excite_->forward(at::relu(squeeze_->forward(pooled)));   // [N, 2C]
    const at::Tensor w = weights.view({-1, 2, channels_}).softmax(1).unsqueeze(-1).unsqueeze(-1).unsqueeze(-1);
    return x + w.select(1, 0) * a + w.select(1, 1) * b;
  }

 private:
  ConvNormAct near_{nullptr}, far_{nullptr};
  nn::Linear squeeze_{nullptr}, excite_{nullptr};
  std::int64_t channels_;
};
TORCH_MODULE(SelectiveKernelBlock);

class SelectiveKernelStageImpl : public StageImpl {
 public:
  SelectiveKernelStageImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> kernel,
                           std::array<std::int64_t, 3> stride, int convs, double slope) {
    entry_ = register_module("entry", ConvNormAct(in, out, kernel, stride, 1, slope, true));
    for (int b = 1; b < convs; ++b) {
      blocks_.push_back(register_module(fmt::format("sk{}", b), SelectiveKernelBlock(out, kernel, slope)));
    }
  }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor y = entry_->forward(x);
    for (auto& block : blocks_) y = block->forward(y);
    return y;
  }

 private:
  ConvNormAct entry_{nullptr};
  std::vector<SelectiveKernelBlock> blocks_;
};

/// `up` cropped or zero-padded to `like`'s spatial size (odd sizes halve to the ceiling).
at::Tensor match_size(const at::Tensor& up, const at::Tensor& like) {
  at::Tensor out = up;
  std::vector<std::int64_t> pad;
  for (int d = 4; d >= 2; --d) {
    const std::int64_t want = like.size(d);
    if (out.size(d) > want) out = out.narrow(d, 0, want);
    pad.push_back(0);
    pad.push_back(std::max<std::int64_t>(0, want - out.size(d)));
  }
  for (const auto p : pad) {
    if (p > 0) return at::constant_pad_nd(out, pad, 0);
  }
  return out;
}

/// Transposed convolution with kernel = stride (the decoder's upsampling). Its windows do not
/// overlap, so on CPU it runs as a pointwise convolution and a reshuffle (upsample_by_product):
/// LibTorch 1.13's CPU conv_transpose3d takes the im2col path, 1.5x slower forward and backward
/// (docs/PERFORMANCE.md). Same weights and result.
class TransposedImpl : public nn::Module {
 public:
  TransposedImpl(std::int64_t in, std::int64_t out, std::array<std::int64_t, 3> stride) {
    conv_ = register_module("conv", nn::ConvTranspose3d(nn::ConvTranspose3dOptions(in, out, vec(stride)).stride(vec(stride)).bias(false)));
    macs_per_input_ = out * stride[0] * stride[1] * stride[2];
  }
  at::Tensor forward(const at::Tensor& x) {
    if (g_flops != nullptr) *g_flops += 2.0 * static_cast<double>(x.numel()) * static_cast<double>(macs_per_input_);
    if (x.is_cuda()) return conv_->forward(x);  // cuDNN's transposed convolution is fast
    if (onednn_input(x)) {
      if (auto y = on_onednn([&] { return onednn_conv_transpose3d(x, conv_->weight); })) return *y;
    }
    // In bf16 oneDNN's pointwise convolution is slow to hand its many output channels back in
    // LibTorch's layout (12 ms against 3 ms in fp32 for 32 -> 16 channels at 24^3): fp32 inside.
    if (x.scalar_type() == at::kBFloat16) return upsample_by_product(x.to(at::kFloat), conv_->weight.to(at::kFloat)).to(at::kBFloat16);
    return upsample_by_product(x, conv_->weight);
  }

 private:
  nn::ConvTranspose3d conv_{nullptr};
  std::int64_t macs_per_input_ = 0;
};
TORCH_MODULE(Transposed);

class HeadImpl : public nn::Module {
 public:
  HeadImpl(std::int64_t in, std::int64_t classes) : in_(in) {
    conv_ = register_module("conv", nn::Conv3d(nn::Conv3dOptions(in, classes, 1)));
  }
  at::Tensor forward(const at::Tensor& x) {
    std::optional<at::Tensor> fast;
    if (onednn_input(x)) fast = on_onednn([&] { return onednn_conv3d(x, conv_->weight, conv_->bias, kOnes, {0, 0, 0}, 1); });
    at::Tensor y = fast ? *fast : conv_->forward(x);
    if (g_flops != nullptr) *g_flops += 2.0 * static_cast<double>(y.numel()) * static_cast<double>(in_);
    return y;
  }

 private:
  nn::Conv3d conv_{nullptr};
  std::int64_t in_;
};
TORCH_MODULE(Head);

void check_options(const UNetOptions& o) {
  auto bad = [](const std::string& what) { throw ConfigError("model", what); };
  if (o.in_channels() < 1) bad(fmt::format("in_channels {}; expected at least 1", o.in_channels()));
  if (o.num_classes() < 2) bad(fmt::format("num_classes {}; expected at least 2 (background and one structure)", o.num_classes()));
  const int stages = o.stages();
  if (stages < 2) bad(fmt::format("{} stages; expected at least 2", stages));
  if (static_cast<int>(o.strides().size()) != stages || static_cast<int>(o.kernels().size()) != stages) {
    bad(fmt::format("{} feature counts, {} strides and {} kernels; expected one of each per stage", stages, o.strides().size(),
                    o.kernels().size()));
  }
  for (int s = 0; s < stages; ++s) {
    if (o.features()[s] < 1) bad(fmt::format("stage {} has {} features; expected at least 1", s, o.features()[s]));
    for (int a = 0; a < 3; ++a) {
      if (o.strides()[s][a] < 1) bad(fmt::format("stage {} stride {} along axis {}; expected >= 1", s, o.strides()[s][a], a));
      if (o.kernels()[s][a] < 1 || o.kernels()[s][a] % 2 == 0) {
        bad(fmt::format("stage {} kernel {} along axis {}; expected an odd size", s, o.kernels()[s][a], a));
      }
    }
  }
  if (o.strides()[0] != kOnes) bad("stage 0 must have stride 1 along every axis");
  if (o.convs_per_stage() < 1) bad(fmt::format("{} convolutions per stage; expected at least 1", o.convs_per_stage()));
}

std::shared_ptr<StageImpl> make_stage(const UNetOptions& o, BlockType type, std::int64_t in, std::int64_t out, int s,
                                      std::array<std::int64_t, 3> stride) {
  switch (type) {
    case BlockType::kResidual:
      return std::make_shared<ResidualStageImpl>(in, out, o.kernels()[s], stride, o.convs_per_stage(), o.negative_slope());
    case BlockType::kSelectiveKernel:
      return std::make_shared<SelectiveKernelStageImpl>(in, out, o.kernels()[s], stride, o.convs_per_stage(), o.negative_slope());
    case BlockType::kPlain:
      break;
  }
  return std::make_shared<PlainStageImpl>(in, out, o.kernels()[s], stride, o.convs_per_stage(), o.negative_slope());
}

}  // namespace

BlockType block_type_from_name(const std::string& name, const std::string& source) {
  if (name == "plain") return BlockType::kPlain;
  if (name == "residual") return BlockType::kResidual;
  if (name == "selective_kernel") return BlockType::kSelectiveKernel;
  throw ConfigError(source, "'" + name + "' is not a block type; expected plain, residual or selective_kernel");
}

std::string block_type_name(BlockType type) {
  switch (type) {
    case BlockType::kResidual:
      return "residual";
    case BlockType::kSelectiveKernel:
      return "selective_kernel";
    case BlockType::kPlain:
      break;
  }
  return "plain";
}

UNetOptions UNetOptions::standard(std::int64_t in_channels, std::int64_t num_classes, int stages) {
  UNetOptions o(in_channels, num_classes);
  for (int s = 0; s < stages; ++s) {
    o.features_.push_back(std::min<std::int64_t>(32LL << s, 320));
    o.strides_.push_back(s == 0 ? kOnes : Axes{2, 2, 2});
    o.kernels_.push_back({3, 3, 3});
  }
  return o;
}

UNetImpl::UNetImpl(UNetOptions options) : options_(std::move(options)) {
  check_options(options_);
  const auto& o = options_;
  const int stages = o.stages();
  encoder_ = register_module("encoder", nn::ModuleList());
  upsample_ = register_module("upsample", nn::ModuleList());
  decoder_ = register_module("decoder", nn::ModuleList());
  heads_ = register_module("heads", nn::ModuleList());
  for (int s = 0; s < stages; ++s) {
    encoder_->push_back(make_stage(o, o.block(), s == 0 ? o.in_channels() : o.features()[s - 1], o.features()[s], s, o.strides()[s]));
  }
  // Decoder level j rebuilds stage s = stages − 2 − j from stage s + 1; the decoder is plain.
  for (int s = stages - 2; s >= 0; --s) {
    upsample_->push_back(Transposed(o.features()[s + 1], o.features()[s], o.strides()[s + 1]));
    decoder_->push_back(make_stage(o, BlockType::kPlain, 2 * o.features()[s], o.features()[s], s, kOnes));
    if (o.deep_supervision() || s == 0) heads_->push_back(Head(o.features()[s], o.num_classes()));
  }
}

std::vector<at::Tensor> UNetImpl::forward(const at::Tensor& x) {
  if (x.dim() != 5 || x.size(1) != options_.in_channels()) {
    throw InputError("UNet", fmt::format("input of shape {}; expected [N, {}, D, H, W]", fmt::join(x.sizes(), "x"),
                                         options_.in_channels()));
  }
  // The oneDNN engine's layout, for the whole pass (restored however it ends).
  struct Engine {
    bool previous = g_onednn;
    explicit Engine(bool on) { g_onednn = on; }
    ~Engine() { g_onednn = previous; }
  } engine(onednn_ && x.device().is_cpu() && x.scalar_type() == at::kFloat);
  std::vector<at::Tensor> skips;
  at::Tensor h = g_onednn ? channels_last_3d(x) : x;
  for (std::size_t s = 0; s < encoder_->size(); ++s) {
    h = encoder_[s]->as<StageImpl>()->forward(h);
    skips.push_back(h);
  }
  const std::size_t levels = decoder_->size();
  const bool all_heads = options_.deep_supervision() && is_training();
  std::vector<at::Tensor> outputs;  // coarsest first while decoding
  for (std::size_t j = 0; j < levels; ++j) {
    const at::Tensor& skip = skips[levels - 1 - j];
    const at::Tensor up = match_size(upsample_[j]->as<TransposedImpl>()->forward(h), skip);
    h = decoder_[j]->as<StageImpl>()->forward(at::cat({skip, up}, 1));
    const bool last = j + 1 == levels;
    if (last || all_heads) {
      const std::size_t head = options_.deep_supervision() ? j : 0;
      outputs.push_back(heads_[head]->as<HeadImpl>()->forward(h));
    }
  }
  std::reverse(outputs.begin(), outputs.end());
  if (g_onednn) {
    for (auto& o : outputs) o = o.contiguous();  // a few channels: the plain layout the losses and stitching take
  }
  return outputs;
}

bool UNetImpl::use_onednn(bool on) {
  onednn_ = on && onednn_channels_last();
  return onednn_;
}

at::Tensor upsample_by_product(const at::Tensor& x, const at::Tensor& weight) {
  const std::int64_t n = x.size(0), in = x.size(1), d = x.size(2), h = x.size(3), w = x.size(4);
  const std::int64_t out = weight.size(1), kz = weight.size(2), ky = weight.size(3), kx = weight.size(4);
  // Every output channel and kernel offset as a 1×1×1 convolution (oneDNN), then interleaved.
  const at::Tensor pointwise = weight.permute({1, 2, 3, 4, 0}).reshape({out * kz * ky * kx, in, 1, 1, 1});
  return at::conv3d(x, pointwise)
      .view({n, out, kz, ky, kx, d, h, w})
      .permute({0, 1, 5, 2, 6, 3, 7, 4})
      .reshape({n, out, d * kz, h * ky, w * kx});
}

double forward_flops_per_voxel(UNet& net, const std::array<std::int64_t, 3>& patch_zyx) {
  // Counting on for one eval-mode forward pass; training mode and the counter restored however it ends.
  struct Counting {
    UNet& net;
    bool was_training;
    double flops = 0;
    explicit Counting(UNet& n) : net(n), was_training(n->is_training()) {
      net->eval();
      g_flops = &flops;
    }
    ~Counting() {
      g_flops = nullptr;
      net->train(was_training);
    }
  } counting(net);
  torch::NoGradGuard no_grad;
  net->forward(at::zeros({1, net->options().in_channels(), patch_zyx[0], patch_zyx[1], patch_zyx[2]}));
  return counting.flops / static_cast<double>(patch_zyx[0] * patch_zyx[1] * patch_zyx[2]);
}

std::int64_t parameter_count(const torch::nn::Module& module) {
  std::int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace vitruvian::models
