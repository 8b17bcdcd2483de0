// Training losses: soft Dice + cross-entropy at equal weight, and its deep-supervision form
// over a network's outputs at decreasing resolution.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace vitruvian::models {

/// Soft Dice + cross-entropy of `logits` [N, C, D, H, W] against `target` [N, D, H, W] (int64,
/// classes 0..C−1): Dice over the foreground classes, per sample and class, averaged; CE
/// averaged over voxels; loss = CE + (1 − mean Dice). The mean over samples makes it additive
/// over a batch split across ranks.
at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, double smooth = 1e-5);

/// What dice_ce_loss runs for CPU float32 logits with at least two classes (targets checked
/// there): one autograd function, two passes over the logits forward and backward, no
/// probability maps kept (models/dice_ce_cpu.cpp).
at::Tensor dice_ce_loss_fused(const at::Tensor& logits, const at::Tensor& target, double smooth);

/// Deep supervision: outputs[0] at full resolution, then coarser; the target is reduced to
/// each output's size (nearest); weights 1, 1/2, 1/4, … normalised to sum to 1.
at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target);

/// The deep-supervision weights for `levels` outputs.
std::vector<double> deep_supervision_weights(std::size_t levels);

}  // namespace vitruvian::models
