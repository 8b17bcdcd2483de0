// The plain U-Net's inference forward on the CPU as a chain of oneDNN primitives called
// directly, its activations kept in the layout oneDNN picks for them (channels-last ndhwc for
// its brgconv kernels on AVX-512, nCdhw8c on AVX2) from the first convolution to the last head.
// LibTorch's convolutions reorder every input and output between its plain NCDHW tensors and
// that layout, per call; here only the network's input and its logits are plain
// (docs/PERFORMANCE.md, Inference).
//
// Convolutions and the decoder's transposed convolutions are oneDNN primitives; the skip
// concatenations are row copies on channels-last (oneDNN's primitive on blocked layouts);
// instance norm + LeakyReLU runs in place on the activations (instance_norm_act_blocked_).
// Activation buffers are planned once per input shape from the chain's liveness and reused, so
// a forward allocates only its output. Each shape's plan keeps its own copy of the weights in
// the primitives' layouts (a few MB).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace vitruvian::models {

class UNetImpl;

class OneDnnUNet {
 public:
  /// The engine for `net`'s current weights (a copy: later changes to `net` are not seen), or
  /// nullptr with the reason in *why: when `net` has residual or selective-kernel encoder blocks,
  /// parameters that are not float32 on the CPU, or when oneDNN picks no channel-blocked layout
  /// on this CPU (nothing to gain) or this build has no oneDNN headers.
  static std::unique_ptr<OneDnnUNet> create(const UNetImpl& net, std::string* why = nullptr);
  ~OneDnnUNet();
  OneDnnUNet(const OneDnnUNet&) = delete;
  OneDnnUNet& operator=(const OneDnnUNet&) = delete;

  /// Whether forward takes `x`: a float32 CPU tensor [N, in_channels, D, H, W] whose sizes every
  /// stage's stride divides. The first call for a shape builds and keeps its plan (primitives,
  /// weights in oneDNN's layout, activation buffers); false, with the reason in *why, when x or
  /// the plan does not qualify.
  bool accepts(const at::Tensor& x, std::string* why = nullptr);

  /// The full-resolution logits [N, num_classes, D, H, W] (float32, contiguous): what
  /// net->forward(x)[0] gives in eval mode, within float rounding. InputError unless accepts(x).
  at::Tensor forward(const at::Tensor& x);

  /// Bytes of the activation buffers kept for the shapes planned so far (one pool shared by
  /// every shape).
  std::int64_t buffer_bytes() const;

 private:
  struct Impl;
  explicit OneDnnUNet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vitruvian::models
